/**
 * Just enough reading of Python source for `stack init` to understand a settings module or a
 * Flask app: the top-level assignments, string literals, calls that read the environment, and
 * path expressions built from `__file__`. It never runs the project's code (importing settings
 * would need its dependencies and could do anything); what it cannot read with certainty it
 * reports as unknown, and init then says so in the inventory instead of guessing.
 */

/** The text with comments removed and strings kept, so `#` inside a string survives. */
export function stripComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === '#') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (ch === '"' || ch === "'") {
      const end = stringEnd(text, i);
      out += text.slice(i, end);
      i = end;
      continue;
    }
    out += ch;
    i++;
  }
  return out;
}

/** Index just past the string literal that starts at `start` (a quote character). */
function stringEnd(text: string, start: number): number {
  const q = text[start]!;
  const triple = text.startsWith(q.repeat(3), start);
  const close = triple ? q.repeat(3) : q;
  let i = start + close.length;
  while (i < text.length) {
    if (text[i] === '\\') {
      i += 2;
      continue;
    }
    if (!triple && text[i] === '\n') return i;
    if (text.startsWith(close, i)) return i + close.length;
    i++;
  }
  return i;
}

/**
 * `NAME = expression` statements at the module's top level (column 0), in order, each with its
 * whole expression even when brackets or a backslash carry it over several lines. Assignments
 * inside `if`, functions or classes are indented and so left out: which branch runs is unknown.
 */
export function topLevelAssignments(text: string): Map<string, string> {
  const source = stripComments(text);
  const out = new Map<string, string>();
  const lines = source.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*[^=]+)?=(?!=)(.*)$/.exec(lines[n]!);
    if (!m) continue;
    let expr = m[2]!;
    while (n + 1 < lines.length && (depth(expr) > 0 || /\\\s*$/.test(expr))) expr = `${expr.replace(/\\\s*$/, '')}\n${lines[++n]}`;
    out.set(m[1]!, expr.trim());
  }
  return out;
}

/** Open brackets minus closed ones, outside strings. */
function depth(expr: string): number {
  let d = 0;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (ch === '"' || ch === "'") i = stringEnd(expr, i) - 1;
    else if ('([{'.includes(ch)) d++;
    else if (')]}'.includes(ch)) d--;
  }
  return d;
}

/** Splits at `sep` where it is outside brackets and strings (`/` never splits `//`). */
export function splitTopLevel(expr: string, sep: ',' | '/'): string[] {
  const parts: string[] = [];
  let d = 0;
  let last = 0;
  for (let i = 0; i < expr.length; i++) {
    const ch = expr[i]!;
    if (ch === '"' || ch === "'") i = stringEnd(expr, i) - 1;
    else if ('([{'.includes(ch)) d++;
    else if (')]}'.includes(ch)) d--;
    else if (ch === sep && d === 0) {
      if (sep === '/' && (expr[i + 1] === '/' || expr[i - 1] === '/')) continue;
      parts.push(expr.slice(last, i).trim());
      last = i + 1;
    }
  }
  parts.push(expr.slice(last).trim());
  return parts;
}

/** The value of a plain string literal ('x', "x", r'x'), or undefined for anything else. */
export function stringLiteral(expr: string): string | undefined {
  const m = /^[rRuU]?(['"])((?:(?!\1)[^\\\n])*)\1$/.exec(expr.trim());
  return m ? m[2] : undefined;
}

/** `f(args)` when `expr` is exactly one call of a function named by `callee` (a regex source). */
export function callArgs(expr: string, callee: string): string[] | undefined {
  const e = expr.trim();
  const m = new RegExp(`^(?:${callee})\\s*\\(`).exec(e);
  if (!m) return undefined;
  // The call's own closing bracket must be the last character: `f(x).y()` is not one call of f.
  let d = 0;
  for (let i = m[0].length - 1; i < e.length; i++) {
    const ch = e[i]!;
    if (ch === '"' || ch === "'") i = stringEnd(e, i) - 1;
    else if ('([{'.includes(ch)) d++;
    else if (')]}'.includes(ch) && --d === 0) {
      if (i !== e.length - 1) return undefined;
      const body = e.slice(m[0].length, i).trim();
      return body === '' ? [] : splitTopLevel(body, ',').filter((a) => a !== '');
    }
  }
  return undefined;
}

/** The expression of `key` in a dict literal's text (`{"NAME": BASE_DIR / "db.sqlite3", ...}`), the first one found. */
export function dictValue(dict: string, key: string): string | undefined {
  const m = new RegExp(`(['"])${key}\\1\\s*:`).exec(dict);
  if (!m) return undefined;
  let d = 0;
  const start = m.index + m[0].length;
  for (let i = start; i < dict.length; i++) {
    const ch = dict[i]!;
    if (ch === '"' || ch === "'") i = stringEnd(dict, i) - 1;
    else if ('([{'.includes(ch)) d++;
    else if (')]}'.includes(ch)) {
      if (d === 0) return dict.slice(start, i).trim();
      d--;
    } else if (ch === ',' && d === 0) return dict.slice(start, i).trim();
  }
  return dict.slice(start).trim();
}

/** How a piece of code reads one environment variable. */
export interface EnvRead {
  name: string;
  /** `os.environ["X"]`: the code fails without it. `.get`/`getenv` with or without a default: optional. */
  required: boolean;
  /** The expression used when the variable is unset, if one is given. */
  fallback?: string;
}

const ENV_CALLS = String.raw`os\.environ\.get|os\.getenv|environ\.get|getenv|env(?:\.(?:str|bool|int|float|list|path|db_url|db|url|json))?`;

/** The variable `expr` reads, when the whole expression is one read of the environment. */
export function envReadOf(expr: string): EnvRead | undefined {
  const e = expr.trim();
  const index = /^(?:os\.)?environ\s*\[\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\1\s*\]$/.exec(e);
  if (index) return { name: index[2]!, required: true };
  const args = callArgs(e, ENV_CALLS);
  if (!args || args.length === 0) return undefined;
  const name = stringLiteral(args[0]!);
  if (!name || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) return undefined;
  const rest = args.slice(1).map((a) => a.replace(/^default\s*=\s*/, ''));
  // django-environ's env("X") without a default fails when X is unset, like os.environ["X"].
  const djangoEnviron = /^env(\.|\s*\()/.test(e);
  return { name, required: djangoEnviron && rest.length === 0, ...(rest[0] ? { fallback: rest[0] } : {}) };
}

/** Every variable the text reads from the environment, in order of first use. */
export function envReads(text: string): EnvRead[] {
  const source = stripComments(text);
  const found = new Map<string, EnvRead>();
  const patterns = [
    /(?:os\.)?environ\s*\[\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\1\s*\]/g,
    /(?<![\w.])(?:os\.environ\.get|os\.getenv|environ\.get|getenv)\s*\(\s*(['"])([A-Za-z_][A-Za-z0-9_]*)\1/g,
  ];
  const hits: { at: number; read: EnvRead }[] = [];
  for (const [i, re] of patterns.entries()) {
    for (const m of source.matchAll(re)) hits.push({ at: m.index, read: { name: m[2]!, required: i === 0 } });
  }
  for (const { read } of hits.sort((a, b) => a.at - b.at)) {
    const seen = found.get(read.name);
    if (!seen) found.set(read.name, read);
    else if (read.required) seen.required = true;
  }
  return [...found.values()];
}

/**
 * A path as Python code builds it, resolved against the project's source folder (the release on
 * the server): `rel` is posix and relative to it ('.' for the folder itself), `absolute` names a
 * fixed place, `env` one read from the environment (with what it falls back to).
 */
export type PathValue =
  | { kind: 'rel'; rel: string }
  | { kind: 'absolute'; path: string }
  | { kind: 'env'; read: EnvRead; fallback?: PathValue }
  | { kind: 'unknown' };

export interface PathContext {
  /** The Python file, relative to the source folder, e.g. mysite/settings.py. */
  file: string;
  /** Its top-level assignments, for names such as BASE_DIR. */
  names: ReadonlyMap<string, string>;
  /** Where each name was set, when some come from another file (`from .base import *`). */
  fileOf?: ReadonlyMap<string, string>;
}

const UNKNOWN: PathValue = { kind: 'unknown' };

/** Evaluates a path expression such as `BASE_DIR / "staticfiles"` or `os.path.join(BASE_DIR, 'static')`. */
export function evalPath(expr: string, ctx: PathContext, seen: ReadonlySet<string> = new Set()): PathValue {
  const e = expr.trim();
  if (e === '') return UNKNOWN;
  if (/^\(.*\)$/s.test(e) && callArgs(`f${e}`, 'f')?.length === 1) return evalPath(e.slice(1, -1), ctx, seen);

  const wrapped = callArgs(e, String.raw`str|os\.fspath|Path|pathlib\.Path|os\.path\.abspath|os\.path\.realpath|os\.path\.normpath`);
  if (wrapped?.length === 1 && wrapped[0]!.trim() !== '__file__') return evalPath(wrapped[0]!, ctx, seen);
  // Path(BASE_DIR, "static") joins like os.path.join.
  const pathJoin = callArgs(e, String.raw`Path|pathlib\.Path`);
  if (pathJoin && pathJoin.length > 1) return join(evalPath(pathJoin[0]!, ctx, seen), pathJoin.slice(1));

  const read = envReadOf(e);
  if (read) return { kind: 'env', read, ...(read.fallback ? { fallback: evalPath(read.fallback, ctx, seen) } : {}) };

  const literal = stringLiteral(e);
  if (literal !== undefined) return literal.startsWith('/') ? { kind: 'absolute', path: literal } : joinRel('.', [literal]);

  const fromFile = fileAnchored(e, ctx);
  if (fromFile) return fromFile;

  const slash = splitTopLevel(e, '/');
  if (slash.length > 1) return join(evalPath(slash[0]!, ctx, seen), slash.slice(1));

  const joined = callArgs(e, String.raw`os\.path\.join`);
  if (joined && joined.length > 0) return join(evalPath(joined[0]!, ctx, seen), joined.slice(1));

  const method = /^(.*)\.joinpath\s*\((.*)\)$/s.exec(e);
  if (method) return join(evalPath(method[1]!, ctx, seen), splitTopLevel(method[2]!, ','));

  const resolved = /^(.*?)((?:\.(?:resolve|absolute)\(\))+)$/.exec(e);
  if (resolved?.[1] && !resolved[1].includes('__file__')) return evalPath(resolved[1], ctx, seen);

  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(e) && ctx.names.has(e) && !seen.has(e)) {
    // BASE_DIR set in base.py counts its parents from base.py.
    return evalPath(ctx.names.get(e)!, { ...ctx, file: ctx.fileOf?.get(e) ?? ctx.file }, new Set([...seen, e]));
  }
  return UNKNOWN;
}

function join(base: PathValue, parts: string[]): PathValue {
  const literals = parts.map(stringLiteral);
  if (literals.some((p) => p === undefined)) return UNKNOWN;
  if (base.kind === 'rel') return joinRel(base.rel, literals as string[]);
  if (base.kind === 'absolute') return { kind: 'absolute', path: [base.path, ...(literals as string[])].join('/').replace(/\/+/g, '/') };
  return UNKNOWN;
}

/** Joins and normalizes; a path that climbs above the source folder is unknown (not shipped). */
function joinRel(base: string, parts: string[]): PathValue {
  const out: string[] = base === '.' ? [] : base.split('/');
  for (const part of parts.flatMap((p) => p.split('/'))) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) return UNKNOWN;
      out.pop();
    } else out.push(part);
  }
  return { kind: 'rel', rel: out.length ? out.join('/') : '.' };
}

/**
 * Folders derived from the file's own location: `Path(__file__).resolve().parent.parent`,
 * `.parents[1]`, or `os.path.dirname(os.path.dirname(os.path.abspath(__file__)))`.
 */
function fileAnchored(e: string, ctx: PathContext): PathValue | undefined {
  const dir = ctx.file.split('/').slice(0, -1);
  const up = (levels: number): PathValue => {
    // Level 1 is the file's own folder.
    if (levels < 1 || levels - 1 > dir.length) return UNKNOWN;
    const kept = dir.slice(0, dir.length - (levels - 1));
    return { kind: 'rel', rel: kept.length ? kept.join('/') : '.' };
  };
  const pathlib = /^(?:pathlib\.)?Path\(\s*__file__\s*\)((?:\.(?:resolve|absolute)\([^)]*\))*)((?:\.parent|\.parents\[\d+\])+)$/.exec(e);
  if (pathlib) {
    let levels = 0;
    for (const step of pathlib[2]!.matchAll(/\.parent(?:s\[(\d+)\])?/g)) levels += step[1] === undefined ? 1 : Number(step[1]) + 1;
    return up(levels);
  }
  let inner = e;
  let levels = 0;
  for (;;) {
    const args = callArgs(inner, String.raw`os\.path\.dirname`);
    if (args?.length !== 1) break;
    levels++;
    inner = args[0]!;
  }
  if (levels > 0 && /^(?:os\.path\.(?:abspath|realpath)\(\s*__file__\s*\)|__file__)$/.test(inner.trim())) return up(levels);
  return undefined;
}

/** The dotted module of a Python file relative to the source: pkg/mod.py -> pkg.mod, pkg/__init__.py -> pkg. */
export function moduleOf(file: string): string {
  return file
    .replace(/\.py$/, '')
    .replace(/\/__init__$/, '')
    .split('/')
    .join('.');
}
