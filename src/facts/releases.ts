/** The releases on a host, each with its manifest and whether it can be rolled back to. */
import { shCommand } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import { fromBase64, records, type Fact } from './fact.js';
import type { ReleaseManifest } from './host.js';

export interface ReleaseEntry {
  id: string;
  manifest: (ReleaseManifest & { git_commit?: string | null; code_from?: string }) | null;
  /** The configuration it went live with is recorded (it can be rolled back to). */
  hasConfig: boolean;
  live: boolean;
}

export function releasesFact(layout: Layout): Fact<ReleaseEntry[]> {
  return { what: 'list releases', lines: [shCommand('fact_releases', layout.current, layout.releases)], parse: parseReleases };
}

export function parseReleases(output: string): ReleaseEntry[] {
  const live = records(output, 'live')[0]?.[0] ?? '';
  const rows = records(output, 'release')
    .filter(([id]) => id)
    .map(([id, manifest, config]) => ({ id: id!, manifest: parseManifest(manifest), hasConfig: config === '1' }));
  return rows.sort((x, y) => x.id.localeCompare(y.id)).map((r) => ({ ...r, live: r.id === live }));
}

function parseManifest(b64: string | undefined): ReleaseEntry['manifest'] {
  if (!b64 || b64 === '-') return null;
  try {
    return JSON.parse(fromBase64(b64));
  } catch {
    return null;
  }
}

/** The release `stack rollback` goes to by default: the newest complete one before the live one. */
export function previousRelease(releases: ReleaseEntry[]): ReleaseEntry | undefined {
  const liveIndex = releases.findIndex((r) => r.live);
  const before = liveIndex < 0 ? releases : releases.slice(0, liveIndex);
  return [...before].reverse().find((r) => r.manifest && r.hasConfig);
}
