/** The releases on a host: a script that lists them with their manifests, and its parser. Pure. */
import type { ReleaseManifest } from '../facts/gather.js';
import { shQuote as q } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';

export interface ReleaseEntry {
  id: string;
  manifest: (ReleaseManifest & { git_commit?: string | null; code_from?: string }) | null;
  /** The configuration it went live with is recorded (it can be rolled back to). */
  hasConfig: boolean;
  live: boolean;
}

export function listReleasesScript(layout: Layout): string {
  return [
    `cur=$(readlink ${q(layout.current)} 2>/dev/null | sed 's|^releases/||')`,
    `for d in ${q(layout.releases)}/*/; do [ -d "$d" ] || continue; r=$(basename "$d")`,
    `  if [ -f "$d.stack-release.json" ]; then m=$(base64 -w0 "$d.stack-release.json"); else m=-; fi`,
    `  if [ -d "$d.stack/config" ]; then c=1; else c=0; fi`,
    `  printf 'release\\t%s\\t%s\\t%s\\n' "$r" "$m" "$c"`,
    'done',
    `printf 'live\\t%s\\n' "$cur"`,
  ].join('\n');
}

export function parseReleases(output: string): ReleaseEntry[] {
  let live = '';
  const rows: Omit<ReleaseEntry, 'live'>[] = [];
  for (const line of output.split('\n')) {
    const [kind, a, b, c] = line.split('\t');
    if (kind === 'live') live = a ?? '';
    if (kind !== 'release' || !a) continue;
    let manifest = null;
    if (b && b !== '-') {
      try {
        manifest = JSON.parse(Buffer.from(b, 'base64').toString('utf8'));
      } catch {
        manifest = null;
      }
    }
    rows.push({ id: a, manifest, hasConfig: c === '1' });
  }
  return rows.sort((x, y) => x.id.localeCompare(y.id)).map((r) => ({ ...r, live: r.id === live }));
}

/** The release `stack rollback` goes to by default: the newest complete one before the live one. */
export function previousRelease(releases: ReleaseEntry[]): ReleaseEntry | undefined {
  const liveIndex = releases.findIndex((r) => r.live);
  const before = liveIndex < 0 ? releases : releases.slice(0, liveIndex);
  return [...before].reverse().find((r) => r.manifest && r.hasConfig);
}
