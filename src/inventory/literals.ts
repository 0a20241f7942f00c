/**
 * Numbers and booleans as they are written. YAML turns `0x1F` into 31, `1e21` into 1e21,
 * `.inf` into Infinity, `True` into true and `12345678901234567890` into 12345678901234567000;
 * the configs stack writes would then hold something other than what the user wrote. The parsed
 * value cannot tell, so each scalar's source text is checked against the rule of its field.
 */
import { isAlias, isMap, isScalar, isSeq, type Alias, type Document, type Node } from 'yaml';
import { childSchema, InventorySchema, literalRuleOf, type LiteralRule } from './schema.js';
import type { FieldPath } from './locate.js';

export interface LiteralProblem {
  path: FieldPath;
  /** Offset in the source of the value as the user wrote it (for an alias, the alias). */
  offset: number;
  message: string;
}

/** A whole number in plain decimal digits, as every numeric field takes it. */
const PLAIN_INTEGER = /^(0|-?[1-9]\d*)$/;
/** An env value may also be a plain decimal fraction, if it is printed back the same. */
const PLAIN_DECIMAL = /^-?(0|[1-9]\d*)(\.\d+)?$/;

export function literalProblems(doc: Document, source: string, targets: Map<Alias, Node>): LiteralProblem[] {
  const problems: LiteralProblem[] = [];
  // Only along the schema: a value under an unknown key is refused anyway, and the walk stays
  // as shallow as the schema however deeply the YAML nests.
  const walk = (node: unknown, schema: unknown, path: (string | number)[], offset: number | undefined): void => {
    if (isAlias(node)) {
      walk(targets.get(node), schema, path, offset ?? node.range?.[0]);
      return;
    }
    if (isScalar(node)) {
      const rule = literalRuleOf(schema);
      if (!rule || !node.range) return;
      const message = judge(rule, node.value, source.slice(node.range[0], node.range[1]), path);
      if (message) problems.push({ path, offset: offset ?? node.range[0], message });
      return;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        if (!isScalar(pair.key)) continue;
        if (typeof pair.key.value === 'symbol') {
          // A YAML 1.1 merge (`<<: *base`): the pairs of the mapping(s) it names join this one.
          const merged = isAlias(pair.value) ? targets.get(pair.value) : pair.value;
          for (const source of isSeq(merged) ? merged.items : [merged]) walk(source, schema, path, undefined);
          continue;
        }
        const key = String(pair.key.value);
        const child = childSchema(schema, key);
        if (child) walk(pair.value, child, [...path, key], undefined);
      }
      return;
    }
    if (isSeq(node)) {
      const child = childSchema(schema, 0);
      if (child) {
        for (const [i, item] of node.items.entries()) walk(item, child, [...path, i], undefined);
      }
    }
  };
  walk(doc.contents, InventorySchema, [], undefined);
  return problems;
}

function judge(rule: LiteralRule, value: unknown, text: string, path: FieldPath): string | undefined {
  if (rule.kind === 'env') {
    const key = String(path[path.length - 1]);
    const quoted = `${key}: ${JSON.stringify(text)}`;
    if (typeof value === 'number' || typeof value === 'bigint') {
      const written = String(value);
      if (PLAIN_DECIMAL.test(text) && written === text && (!Number.isInteger(value) || Number.isSafeInteger(value))) return undefined;
      return `${text} is read as a number and would be written to the env file as ${written}; quote it to keep the text exactly: ${quoted}`;
    }
    if (typeof value === 'boolean') {
      if (text === String(value)) return undefined;
      return `${text} is read as ${String(value)} and would be written to the env file as ${String(value)}; quote it to keep the text exactly: ${quoted}`;
    }
    return undefined;
  }
  if (typeof value !== 'number' && typeof value !== 'bigint') return undefined;
  if (PLAIN_INTEGER.test(text) && Number.isSafeInteger(Number(value))) return undefined;
  return `${rule.what} must be a whole number from ${rule.min} to ${rule.max}${rule.hint}, written in plain decimal digits (not ${text})`;
}
