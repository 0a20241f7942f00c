/**
 * What a rollback to a recorded release would restore, as a fact: a script that compares the
 * release's recorded configuration (and links) with what is live, and a parser of its output.
 * `stack rollback --dry-run` prints it; nothing is changed. Pure.
 */
import { createTwoFilesPatch } from 'diff';
import { shQuote as q } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';

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

/**
 * The comparison script. Contents come back only for files that differ and are not secret;
 * the caller redacts the env file's secret values before anything is printed.
 */
export function restoreFactsScript(layout: Layout, target: string, secretFiles: readonly string[]): string {
  const rel = `${layout.releases}/${target}`;
  const config = `${rel}/.stack/config`;
  const secret = secretFiles.map((p) => ` ${p} `).join('');
  return [
    `cd ${q(config)} 2>/dev/null || { echo 'no recorded configuration' >&2; exit 1; }`,
    'find . -type f | sed "s|^\\.||" | sort | while read -r p; do',
    `  src=${q(config)}"$p"`,
    `  want=$(printf '%o:root:%s' "$(( 0$(stat -c %a "$src") & ~022 ))" "$(stat -c %G "$src")")`,
    '  live=$(stat -c %a:%U:%G "$p" 2>/dev/null || echo -)',
    '  if cmp -s "$src" "$p"; then same=1; else same=0; fi',
    '  [ "$same" = 1 ] && [ "$want" = "$live" ] && continue',
    `  printf 'restore\\t%s\\t%s\\t%s\\t%s\\n' "$p" "$want" "$live" "$same"`,
    `  case ${q(secret)} in *" $p "*) continue ;; esac`,
    '  if [ "$same" = 0 ]; then',
    `    printf 'after\\t%s\\t' "$p"; base64 -w0 "$src"; printf '\\n'`,
    `    if [ -f "$p" ]; then printf 'before\\t%s\\t' "$p"; base64 -w0 "$p"; printf '\\n'; fi`,
    '  fi',
    'done',
    `while read -r l t; do now=$(readlink "$l" 2>/dev/null || echo -); [ "$now" = "$t" ] || printf 'link\\t%s\\t%s\\t%s\\n' "$l" "$now" "$t"; done < ${q(`${rel}/.stack/links`)}`,
    `printf 'link\\t%s\\t%s\\t%s\\n' ${q(layout.current)} "$(readlink ${q(layout.current)} 2>/dev/null || echo -)" ${q(`releases/${target}`)}`,
  ].join('\n');
}

export function parseRestore(target: string, output: string, redact: (path: string, text: string) => string): RestorePlan {
  const files = new Map<string, RestoreChange>();
  const links: RestorePlan['links'] = [];
  const text = (b64: string | undefined) => Buffer.from(b64 ?? '', 'base64').toString('utf8');
  for (const line of output.split('\n')) {
    const [kind, a, b, c, d] = line.split('\t');
    if (!a) continue;
    if (kind === 'restore')
      files.set(a, { path: a, attributes: b ?? '', live: c === '-' ? null : (c ?? null), before: null, after: null, contentChanged: d === '0' });
    else if (kind === 'after' && files.has(a)) files.get(a)!.after = redact(a, text(b));
    else if (kind === 'before' && files.has(a)) files.get(a)!.before = redact(a, text(b));
    else if (kind === 'link') links.push({ path: a, now: b === '-' ? null : (b ?? null), target: c ?? '' });
  }
  return { target, files: [...files.values()], links };
}

/** The dry run as a person reads it: a diff from live to recorded for each file, then links. */
export function formatRestore(plan: RestorePlan, label: string, colorDiff: (diff: string) => string): string {
  const out = [`${label}: rollback to ${plan.target} would restore ${plan.files.length} file${plan.files.length === 1 ? '' : 's'}`];
  for (const f of plan.files) {
    const [mode, owner, group] = f.attributes.split(':');
    const attrs = `${mode?.padStart(4, '0')} ${owner}:${group}`;
    if (!f.contentChanged) {
      out.push(`  set mode/owner of ${f.path}: ${f.live ?? 'absent'} -> ${f.attributes}`);
    } else if (f.after === null) {
      out.push(`  ${f.path} (${attrs}): only secret content differs; it is not shown`);
    } else {
      out.push(`  restore ${f.path} (${attrs})`);
      out.push(colorDiff(createTwoFilesPatch(f.path, f.path, f.before ?? '', f.after, 'live', `release ${plan.target}`, { context: 3 })));
    }
  }
  for (const l of plan.links) out.push(`  link ${l.path} -> ${l.target} (now ${l.now ?? 'absent'})`);
  out.push('  then: reload systemd units, restart the app, reload nginx, check health (everything put back if any of it fails)');
  return out.join('\n');
}
