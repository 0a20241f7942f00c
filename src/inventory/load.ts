/**
 * Reading an inventory: YAML with positions, validation that reports every problem at once
 * (file:line:column, field, how to fix it), then one resolved view per environment.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import * as v from 'valibot';
import { InventoryError, UsageError, type InventoryProblem } from '../errors.js';
import { InventorySchema, knownKeys, type InventoryDocument } from './schema.js';
import { formatPath, locate, type FieldPath } from './locate.js';
import { didYouMean } from './suggest.js';
import { reservedKeyProblems, shapeProblems } from './shape.js';
import { repeatedKeys, syntaxPlacer } from './syntax.js';
import { resolveEnvironment, type Environment } from './resolve.js';
import { aliasProblems, dropUnusedAnchors, findAliases, firstNestedAlias, MAX_ALIASES } from './aliases.js';
import { literalProblems } from './literals.js';

/**
 * An inventory describes one app and its servers in a few kilobytes. The limit keeps a wrong
 * file (a log, a dump) from being parsed at all, and bounds the time and memory loading takes.
 */
export const MAX_INVENTORY_BYTES = 1024 * 1024;

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
  let read: Awaited<ReturnType<typeof readCapped>>;
  try {
    read = await readCapped(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `${file}: no such inventory file` : `${file}: cannot read it (${code ?? String(err)})`, {
      hint: code === 'ENOENT' ? 'run `stack init` to write one, or pass -i FILE' : undefined,
    });
  }
  if (read.tooLarge) throw new InventoryError([sizeProblem(file, read.size)]);
  return parseInventory(read.text, file);
}

export function parseInventory(source: string, file: string): Inventory {
  // No string of at most a third of the limit in UTF-16 units can be over it in UTF-8 bytes.
  if (source.length > MAX_INVENTORY_BYTES / 3 && Buffer.byteLength(source, 'utf8') > MAX_INVENTORY_BYTES) {
    throw new InventoryError([sizeProblem(file, Buffer.byteLength(source, 'utf8'))]);
  }
  const lines = new LineCounter();
  // Each syntax error yaml finds is an Error, and capturing its stack trace (never shown) cost
  // more than the parsing itself in a broken file with 100,000 of them.
  const traceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  let doc: Document;
  try {
    // Repeated keys are found below: yaml's own check compares each key with all keys before it.
    doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  } finally {
    Error.stackTraceLimit = traceLimit;
  }
  const at = (offset: number) => {
    const pos = lines.linePos(offset);
    return { file, line: pos.line, column: pos.col };
  };
  const place = syntaxPlacer(source, lines);
  const yamlProblems: InventoryProblem[] = [
    ...doc.errors.map((e) => {
      const p = place(e);
      return { file, line: p.line, column: p.column, field: '', message: `YAML syntax error: ${p.message}` };
    }),
    ...repeatedKeys(doc, lines).map((r) => ({
      ...at(r.offset),
      field: '',
      message: `YAML syntax error: Map keys must be unique; ${r.key} is already set on line ${r.firstLine}: remove one of them`,
    })),
  ];
  if (yamlProblems.length > 0) throw new InventoryError(dedupe(yamlProblems));

  const aliases = findAliases(doc);
  const aliasTrouble = aliasProblems(aliases);
  if (aliasTrouble.length > 0) throw new InventoryError(aliasTrouble.map((a) => ({ ...at(a.offset), field: '', message: `YAML alias: ${a.message}` })));
  dropUnusedAnchors(aliases);
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    // yaml's own alias limit, or an alias before its anchor. Not expected past the checks
    // above, but it is still the file's fault, and reported as such.
    const message = err instanceof Error ? err.message : String(err);
    throw new InventoryError([{ ...at(firstNestedAlias(aliases)), field: '', message: `YAML alias: ${message}; write the values out instead` }]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InventoryError([
      { file, line: 1, column: 1, field: '', message: 'the inventory must be a mapping with app: and environments:; run `stack init` for a starting point' },
    ]);
  }
  // Numbers written in a way the configs would not reproduce. They replace what the schema says
  // about the same field, which sees only the parsed number.
  const literals = literalProblems(doc, source, aliases.targets).map((p) => ({ ...at(p.offset), field: formatPath(p.path), message: p.message }));
  const literalFields = new Set(literals.map((p) => p.field));
  const shape = [...reservedKeyProblems(doc), ...shapeProblems(raw, InventorySchema as never)];
  if (shape.length > 0) {
    throw new InventoryError(
      dedupe([
        ...literals,
        ...shape.map((p) => {
          const pos = locate(doc, lines, p.path, p.keyOf);
          return { file, line: pos.line, column: pos.column, field: formatPath(p.path), message: p.message };
        }),
      ]),
    );
  }
  // One problem per field: the first rule a value breaks says what to fix.
  const result = v.safeParse(InventorySchema, raw, { abortPipeEarly: true });
  if (!result.success) {
    const issues = problemsFromIssues(result.issues, doc, lines, file).filter((p) => !literalFields.has(p.field));
    throw new InventoryError(dedupe([...literals, ...issues]));
  }
  const data = result.output;
  const problems: InventoryProblem[] = [...literals];
  const environments: Record<string, Environment> = {};
  for (const name of Object.keys(data.environments)) {
    const resolved = resolveEnvironment(data, name);
    if (resolved.ok) environments[name] = resolved.environment;
    else {
      for (const p of resolved.problems) {
        // A problem that comes from a top-level value is reported once, not once per environment.
        const envPath: FieldPath = ['environments', name, ...p.path];
        const where = p.exact ? p.path : locate(doc, lines, envPath).found ? envPath : p.path;
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

/** Reads at most one byte past the limit, so a huge file (or a device) is never read whole. */
async function readCapped(file: string): Promise<{ tooLarge: false; text: string } | { tooLarge: true; size: number | undefined }> {
  const handle = await open(file, 'r');
  try {
    const stat = await handle.stat();
    if (stat.isFile() && stat.size > MAX_INVENTORY_BYTES) return { tooLarge: true, size: stat.size };
    const buffer = Buffer.alloc(MAX_INVENTORY_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_INVENTORY_BYTES) return { tooLarge: true, size: undefined };
    }
    return { tooLarge: false, text: buffer.toString('utf8', 0, length) };
  } finally {
    await handle.close();
  }
}

export function sizeProblem(file: string, size: number | undefined): InventoryProblem {
  const bytes = (n: number) => `${n.toLocaleString('en-US')} bytes`;
  const what = size === undefined ? 'more than 1 MiB' : `${(size / 1024 / 1024).toFixed(1)} MiB (${bytes(size)})`;
  return {
    file,
    line: 1,
    column: 1,
    field: '',
    message: `the file is ${what}, over the limit of 1 MiB (${bytes(MAX_INVENTORY_BYTES)}) for an inventory; check that -i names the inventory, and keep anything that is not a setting out of it`,
  };
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
