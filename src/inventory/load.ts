/**
 * Reading an inventory: YAML with positions, validation that reports every problem at once
 * (file:line:column, field, how to fix it), then one resolved view per environment.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import * as v from 'valibot';
import { InventoryError, UsageError, type InventoryProblem } from '../errors.js';
import { InventorySchema, knownKeys, type InventoryDocument } from './schema.js';
import { formatPath, locate, type FieldPath } from './locate.js';
import { didYouMean } from './suggest.js';
import { reservedKeyProblems, shapeProblems } from './shape.js';
import { placeSyntaxError } from './syntax.js';
import { resolveEnvironment, type Environment } from './resolve.js';

export interface Inventory {
  /** Path as the user gave it, used in messages. */
  file: string;
  /** Directory the inventory's relative paths are resolved against. */
  dir: string;
  data: InventoryDocument;
  environments: Record<string, Environment>;
  /**
   * A problem found after loading (e.g. in a file the inventory names), placed at the field.
   * An environment's own value is preferred; else the top-level one it inherits.
   */
  problemAt: (path: FieldPath, message: string) => InventoryProblem;
}

export async function loadInventory(file: string): Promise<Inventory> {
  let source: string;
  try {
    source = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT' ? `${file}: no such inventory file` : `${file}: cannot read it (${code ?? String(err)})`,
      { hint: code === 'ENOENT' ? 'run `stack init` to write one, or pass -i FILE' : undefined },
    );
  }
  return parseInventory(source, file);
}

export function parseInventory(source: string, file: string): Inventory {
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new InventoryError(
      dedupe(
        doc.errors.map((e) => {
          const p = placeSyntaxError(e, source, lines);
          return { file, line: p.line, column: p.column, field: '', message: `YAML syntax error: ${p.message}` };
        }),
      ),
    );
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InventoryError([
      { file, line: 1, column: 1, field: '', message: 'the inventory must be a mapping with app: and environments:; run `stack init` for a starting point' },
    ]);
  }
  const shape = [...reservedKeyProblems(doc), ...shapeProblems(raw, InventorySchema as never)];
  if (shape.length > 0) {
    throw new InventoryError(
      dedupe(
        shape.map((p) => {
          const pos = locate(doc, lines, p.path, p.keyOf);
          return { file, line: pos.line, column: pos.column, field: formatPath(p.path), message: p.message };
        }),
      ),
    );
  }
  // One problem per field: the first rule a value breaks says what to fix.
  const result = v.safeParse(InventorySchema, raw, { abortPipeEarly: true });
  if (!result.success) {
    throw new InventoryError(problemsFromIssues(result.issues, doc, lines, file));
  }
  const data = result.output;
  const problems: InventoryProblem[] = [];
  const environments: Record<string, Environment> = {};
  for (const name of Object.keys(data.environments)) {
    const resolved = resolveEnvironment(data, name);
    if (resolved.ok) environments[name] = resolved.environment;
    else {
      for (const p of resolved.problems) {
        // A problem that comes from a top-level value is reported once, not once per environment.
        const envPath: FieldPath = ['environments', name, ...p.path];
        const where = locate(doc, lines, envPath).found ? envPath : p.path;
        const pos = locate(doc, lines, where);
        problems.push({ file, line: pos.line, column: pos.column, field: formatPath(where), message: p.message });
      }
    }
  }
  if (problems.length > 0) throw new InventoryError(dedupe(problems));
  const problemAt = (where: FieldPath, message: string): InventoryProblem => {
    const pos = locate(doc, lines, where);
    return { file, line: pos.line, column: pos.column, field: formatPath(where), message };
  };
  return { file, dir: path.dirname(path.resolve(file)), data, environments, problemAt };
}

function problemsFromIssues(issues: readonly v.BaseIssue<unknown>[], doc: Document, lines: LineCounter, file: string): InventoryProblem[] {
  const out: InventoryProblem[] = [];
  for (const issue of flattenIssues(issues)) {
    const fieldPath: (string | number)[] = (issue.path ?? []).map((p) => p.key as string | number);
    let message = issue.message;
    // A bad key of a mapping of names (an environment, an env variable) is pointed at itself.
    let keyOf = issue.path?.at(-1)?.origin === 'key';
    if (issue.type === 'strict_object' && issue.expected === 'never') {
      // An unknown key: point at the key itself and suggest the closest known one.
      keyOf = true;
      const key = String(fieldPath[fieldPath.length - 1]);
      const suggestion = didYouMean(key, knownKeys(fieldPath.slice(0, -1)));
      message = suggestion ? `unknown key; did you mean "${suggestion}"?` : `unknown key; allowed here: ${knownKeys(fieldPath.slice(0, -1)).join(', ')}`;
    } else if (issue.received === 'undefined' && (issue.type === 'strict_object' || issue.type === 'object')) {
      message = `is required but missing; add ${String(fieldPath[fieldPath.length - 1])}:`;
    }
    const pos = locate(doc, lines, fieldPath, keyOf);
    out.push({ file, line: pos.line, column: pos.column, field: formatPath(fieldPath), message });
  }
  return dedupe(out);
}

/**
 * A union's own message says only "none of these"; when the value had the right shape but broke
 * a rule (an injection character, a range), or is an object with a bad field, the inner issues
 * say what is actually wrong.
 */
function flattenIssues(issues: readonly v.BaseIssue<unknown>[]): v.BaseIssue<unknown>[] {
  const out: v.BaseIssue<unknown>[] = [];
  for (const issue of issues) {
    if (issue.type === 'union' && issue.issues?.length) {
      // Inner issues carry paths relative to the union's value.
      const inner = issue.issues
        .filter((i) => i.kind === 'validation' || (i.path?.length ?? 0) > 0)
        .map((i) => ({ ...i, path: [...(issue.path ?? []), ...(i.path ?? [])] }) as v.BaseIssue<unknown>);
      if (inner.length > 0) {
        out.push(...flattenIssues(inner));
        continue;
      }
    }
    out.push(issue);
  }
  return out;
}

function dedupe(problems: InventoryProblem[]): InventoryProblem[] {
  const seen = new Set<string>();
  return problems
    .filter((p) => {
      const key = `${p.line}:${p.column}:${p.field}:${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => a.line - b.line || a.column - b.column);
}

