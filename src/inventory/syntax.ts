/**
 * YAML syntax errors, placed where a person would look. The parser reports some errors where it
 * noticed them (the end of the file for an unclosed quote, the next line for an unclosed `{`);
 * this moves them back to the line that caused them.
 */
import type { LineCounter, YAMLError } from 'yaml';

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
  return (e) => placeSyntaxError(e, (text ??= source.split('\n')), lines);
}

function placeSyntaxError(e: YAMLError, text: readonly string[], lines: LineCounter): SyntaxProblem {
  const pos = lines.linePos(e.pos[0]);
  const message = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  const findBack = (test: (l: string) => boolean) => {
    for (let i = Math.min(pos.line, text.length) - 1; i >= 0; i--) if (test(text[i]!)) return i + 1;
    return null;
  };
  if (e.code === 'RESOURCE_EXHAUSTION') {
    // The parser ran out of stack: collections nested thousands deep.
    return { line: pos.line, column: pos.col, message: 'values are nested too deeply here; an inventory needs only a few levels' };
  }
  if (e.code === 'MISSING_CHAR' && /quote/.test(message)) {
    const line = findBack((l) => unbalanced(l, '"') || unbalanced(l, "'"));
    if (line) return { line, column: 1, message: 'a quote is opened on this line and never closed' };
  }
  if (e.code === 'BAD_INDENT' && /Flow (map|sequence)/.test(message)) {
    const map = message.includes('map');
    const line = findBack((l) => (map ? unbalanced(l, '{', '}') : unbalanced(l, '[', ']')));
    if (line) return { line, column: 1, message: `a ${map ? '{' : '['} is opened on this line and not closed with ${map ? '}' : ']'} on the same line` };
  }
  if (e.code === 'BLOCK_AS_IMPLICIT_KEY' || e.code === 'MULTILINE_IMPLICIT_KEY') {
    const indent = (l: string) => l.length - l.trimStart().length;
    const here = text[pos.line - 1] ?? '';
    for (let i = pos.line; i < text.length; i++) {
      const next = text[i]!;
      if (!next.trim() || next.trimStart().startsWith('#')) continue;
      if (indent(next) > indent(here)) return { line: i + 1, column: indent(next) + 1, message: 'this line is indented more than the line above; line it up with the keys next to it' };
      break;
    }
  }
  return { line: pos.line, column: pos.col, message };
}
