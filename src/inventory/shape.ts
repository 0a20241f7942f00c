/**
 * Checks that run before the schema: where the schema wants a mapping and the file has a list,
 * text or nothing, one clear error instead of a cascade (valibot lets arrays through its object
 * checks); and key names JavaScript treats specially, which would otherwise vanish silently.
 */
import { isPair, isScalar, isSeq, visit, type Document } from 'yaml';
import type { FieldPath } from './locate.js';

export interface ShapeProblem {
  path: FieldPath;
  message: string;
  keyOf?: boolean;
}

type SchemaNode = {
  type?: string;
  message?: string;
  wrapped?: SchemaNode;
  options?: SchemaNode[];
  entries?: Record<string, SchemaNode>;
  value?: SchemaNode;
  item?: SchemaNode;
};

const MAPPINGS = new Set(['strict_object', 'object', 'record']);
const RESERVED_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'empty';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return `text (${JSON.stringify(value)})`;
}

export function shapeProblems(value: unknown, schema: SchemaNode | undefined, path: FieldPath = []): ShapeProblem[] {
  let s = schema;
  let nullable = false;
  while (s && (s.type === 'optional' || s.type === 'nullable')) {
    if (s.type === 'nullable') nullable = true;
    s = s.wrapped;
  }
  // `worker: null` in an environment removes an inherited entry: a value, not a missing mapping.
  if (!s || (nullable && value === null)) return [];
  if (s.type === 'union') {
    // Only a union with a mapping option has a shape to check, and only when the value is
    // trying to be that mapping.
    const mapping = s.options?.find((o) => MAPPINGS.has(o.type ?? ''));
    if (!mapping || value === null || typeof value !== 'object') return [];
    if (Array.isArray(value)) return [{ path, message: s.message ?? 'must be a mapping (key: value), not a list' }];
    return shapeProblems(value, mapping, path);
  }
  if (MAPPINGS.has(s.type ?? '')) {
    if (value === undefined) return [];
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return [{ path, message: s.message ?? `must be a mapping of keys to values, but it is ${kindOf(value)}` }];
    }
    const out: ShapeProblem[] = [];
    for (const [key, v] of Object.entries(value)) {
      const child = s.type === 'record' ? s.value : s.entries?.[key];
      out.push(...shapeProblems(v, child, [...path, key]));
    }
    return out;
  }
  if (s.type === 'array' && Array.isArray(value)) return value.flatMap((v, i) => shapeProblems(v, s.item, [...path, i]));
  return [];
}

/** Keys such as `__proto__` anywhere in the document. */
export function reservedKeyProblems(doc: Document): ShapeProblem[] {
  const out: ShapeProblem[] = [];
  visit(doc, {
    Pair(_, pair, ancestry) {
      if (!isPair(pair) || !isScalar(pair.key) || !RESERVED_KEYS.has(String(pair.key.value))) return;
      const path: (string | number)[] = [];
      ancestry.forEach((node, i) => {
        if (isPair(node) && isScalar(node.key)) path.push(String(node.key.value));
        else if (isSeq(node)) path.push(node.items.indexOf(ancestry[i + 1] as never));
      });
      path.push(String(pair.key.value));
      out.push({ path, message: `"${String(pair.key.value)}" is a reserved name and cannot be used as a key; rename it`, keyOf: true });
    },
  });
  return out;
}
