/**
 * What a rollback to a recorded release would restore: each recorded file that differs from the
 * live one (content or attributes) and each link that would move. Contents come back only for
 * files that differ and are not secret; `redact` blanks the env file's secret values before the
 * text goes anywhere else.
 */
import { shCommand } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import { fromBase64, records, type Fact } from './fact.js';

export interface RestoreChange {
  path: string;
  /** The recorded file's mode, owner and group as it would be restored (root's, go-w). */
  attributes: string;
  /** Live now: absent, or its mode, owner and group. */
  live: string | null;
  /** Contents, when they differ and may be shown; null for secret files (never sent). */
  before: string | null;
  after: string | null;
  contentChanged: boolean;
}

export interface RestorePlan {
  target: string;
  files: RestoreChange[];
  links: { path: string; now: string | null; target: string }[];
}

export function restoreFact(layout: Layout, target: string, secretFiles: readonly string[], redact: (path: string, text: string) => string): Fact<RestorePlan> {
  return {
    what: `compare release ${target} with what is live`,
    lines: [shCommand('fact_restore', `${layout.releases}/${target}`, layout.current, ...secretFiles)],
    parse: (output) => parseRestore(target, output, redact),
  };
}

export function parseRestore(target: string, output: string, redact: (path: string, text: string) => string): RestorePlan {
  const files = new Map<string, RestoreChange>();
  for (const [path, attributes, live, same] of records(output, 'restore')) {
    if (path)
      files.set(path, {
        path,
        attributes: attributes ?? '',
        live: live === '-' ? null : (live ?? null),
        before: null,
        after: null,
        contentChanged: same === '0',
      });
  }
  for (const [path, b64] of records(output, 'after')) if (path && files.has(path)) files.get(path)!.after = redact(path, fromBase64(b64));
  for (const [path, b64] of records(output, 'before')) if (path && files.has(path)) files.get(path)!.before = redact(path, fromBase64(b64));
  const links = records(output, 'link')
    .filter(([path]) => path)
    .map(([path, now, to]) => ({ path: path!, now: now === '-' ? null : (now ?? null), target: to ?? '' }));
  return { target, files: [...files.values()], links };
}
