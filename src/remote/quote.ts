/**
 * The one quoting function for anything that reaches a remote POSIX shell (Debian's dash).
 * Single quotes keep every byte literal; a single quote itself is closed, escaped and reopened.
 */
export function shQuote(value: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** A command line from words, each quoted as needed. */
export function shCommand(...words: string[]): string {
  return words.map(shQuote).join(' ');
}
