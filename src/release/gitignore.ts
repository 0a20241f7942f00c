/**
 * .gitignore files outside a git work tree, with git's own semantics, matched by the `ignore`
 * package. Rules of nested .gitignore files are rebased onto the source root so that one matcher
 * holds them all, in walk order: a deeper file's rules come later and so win (the last matching
 * rule decides, as in git), and they only ever match paths below their own folder.
 */
import ignore, { type Ignore } from 'ignore';

/**
 * A matcher with git's defaults on Linux: case-sensitive. Odd but legal names (`...`) are
 * matched rather than refused as "not relative".
 */
export function gitMatcher(patterns: string | readonly string[] = []): Ignore {
  return ignore({ ignorecase: false, allowRelativePaths: true }).add(patterns);
}

/** The text of a .gitignore-style file as git reads it (a leading byte order mark is skipped). */
export function ignoreFileText(text: string): string {
  return text.replace(/^\uFEFF/, '');
}

/**
 * The rules of `dir/.gitignore` (`dir` relative to the root, POSIX separators, not empty),
 * rewritten relative to the root:
 * - a pattern with a slash at its start or in its middle is relative to `dir`: `dir/PATTERN`;
 * - any other matches at any depth below `dir`: `dir/**\/PATTERN`;
 * - a negation stays one, and comments, blank lines and unescaped trailing spaces go.
 */
export function rebaseIgnoreRules(text: string, dir: string): string[] {
  const prefix = `${escapeGlob(dir)}/`;
  const out: string[] = [];
  for (const line of ignoreFileText(text).split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const negative = line.startsWith('!');
    let body = negative ? line.slice(1) : line;
    while (body.endsWith(' ') && !body.endsWith('\\ ')) body = body.slice(0, -1);
    const core = body.endsWith('/') ? body.slice(0, -1) : body;
    if (core === '' || core === '/') continue;
    const anchored = core.includes('/');
    out.push(`${negative ? '!' : ''}${prefix}${anchored ? body.replace(/^\//, '') : `**/${body}`}`);
  }
  return out;
}

/** A path taken literally inside a gitignore pattern. */
function escapeGlob(p: string): string {
  return p.replace(/[\\*?[\]!#]/g, '\\$&');
}
