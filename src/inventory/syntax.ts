/**
 * YAML syntax errors, placed where a person would look. The parser reports some errors where it
 * noticed them (the end of the file for an unclosed quote, the next line for an unclosed `{`);
 * this moves them back to the line that caused them.
 */
import { isMap, isScalar, visit, type Document, type LineCounter, type YAMLError } from 'yaml';

export interface SyntaxProblem {
  line: number;
  column: number;
  message: string;
}

function unbalanced(line: string, open: string, close?: string): boolean {
  let depth = 0;
  let quote: string | null = null;
  for (const ch of line) {
    if (quote) {
      if (ch === quote) quote = null;
      continue;
    }
    if (ch === '#') break;
    if ((ch === '"' || ch === "'") && !close) {
      depth ^= ch === open ? 1 : 0;
      if (ch !== open) quote = ch;
      continue;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if (ch === open) depth++;
    else if (close && ch === close) depth--;
  }
  return depth > 0;
}

/**
 * Places each of a document's syntax errors. The source is split into lines once, not per
 * error: a broken file can have thousands of errors.
 */
export function syntaxPlacer(source: string, lines: LineCounter): (e: YAMLError) => SyntaxProblem {
  let text: string[] | undefined;
  // Per kind of search, the last one: how many lines it covered and the match it found. Errors
  // come in file order, so the next search only has to look at the lines since; searching back
  // to the first line for each of thousands of errors would be quadratic.
  const last = new Map<string, { upTo: number; line: number | null }>();
  return (e) => placeSyntaxError(e, (text ??= source.split('\n')), lines, last);
}

function placeSyntaxError(e: YAMLError, text: readonly string[], lines: LineCounter, last: Map<string, { upTo: number; line: number | null }>): SyntaxProblem {
  const pos = lines.linePos(e.pos[0]);
  const message = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  /** The last line before the error's (1-based, the error's own included) that passes `test`. */
  const findBack = (kind: string, test: (l: string) => boolean) => {
    const upTo = Math.min(pos.line, text.length);
    const before = last.get(kind);
    const stop = before && before.upTo <= upTo ? before.upTo : 0;
    let line: number | null = null;
    for (let i = upTo - 1; i >= stop; i--) {
      if (test(text[i]!)) {
        line = i + 1;
        break;
      }
    }
    if (line === null && stop > 0) line = before!.line;
    last.set(kind, { upTo, line });
    return line;
  };
  if (e.code === 'RESOURCE_EXHAUSTION') {
    // The parser ran out of stack: collections nested thousands deep.
    return { line: pos.line, column: pos.col, message: 'values are nested too deeply here; an inventory needs only a few levels' };
  }
  if (e.code === 'MISSING_CHAR' && /quote/.test(message)) {
    const line = findBack('quote', (l) => unbalanced(l, '"') || unbalanced(l, "'"));
    if (line) return { line, column: 1, message: 'a quote is opened on this line and never closed' };
  }
  if (e.code === 'BAD_INDENT' && /Flow (map|sequence)/.test(message)) {
    const map = message.includes('map');
    const line = findBack(map ? 'map' : 'seq', (l) => (map ? unbalanced(l, '{', '}') : unbalanced(l, '[', ']')));
    if (line) return { line, column: 1, message: `a ${map ? '{' : '['} is opened on this line and not closed with ${map ? '}' : ']'} on the same line` };
  }
  if (e.code === 'BLOCK_AS_IMPLICIT_KEY' || e.code === 'MULTILINE_IMPLICIT_KEY') {
    const indent = (l: string) => l.length - l.trimStart().length;
    const here = text[pos.line - 1] ?? '';
    for (let i = pos.line; i < text.length; i++) {
      const next = text[i]!;
      if (!next.trim() || next.trimStart().startsWith('#')) continue;
      if (indent(next) > indent(here))
        return { line: i + 1, column: indent(next) + 1, message: 'this line is indented more than the line above; line it up with the keys next to it' };
      break;
    }
  }
  return { line: pos.line, column: pos.col, message };
}

/**
 * Keys repeated within one mapping, each with the line it first appeared on. Parse with
 * `uniqueKeys: false` and call this instead: yaml's own check compares each key with every key
 * before it in the mapping, which is quadratic.
 */
export function repeatedKeys(doc: Document, lines: LineCounter): { offset: number; key: string; firstLine: number }[] {
  const out: { offset: number; key: string; firstLine: number }[] = [];
  visit(doc, {
    Map(_, map) {
      if (!isMap(map) || map.items.length < 2) return;
      // Compared as yaml compares them, by value: 1 and "1" are different keys.
      const seen = new Map<unknown, number>();
      for (const pair of map.items) {
        if (!isScalar(pair.key) || !pair.key.range) continue;
        const first = seen.get(pair.key.value);
        if (first === undefined) seen.set(pair.key.value, pair.key.range[0]);
        else out.push({ offset: pair.key.range[0], key: JSON.stringify(String(pair.key.value)), firstLine: lines.linePos(first).line });
      }
    },
  });
  return out;
}
