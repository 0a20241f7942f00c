/** Fixture servers for plan tests: what the facts script prints for a host already converged. */
import { sha256 } from '../../src/plan/plan.js';
import type { DesiredState } from '../../src/state/desired.js';

/** The virtualenv of code whose requirements name nothing: the system's packages only, no index. */
export const SYSTEM_VENV = { digest: '0'.repeat(64), index: null, followsCode: false };

/** The facts output of a server in the desired state, live on `release` built from `sourceHash` (or without code). */
export function convergedFacts(d: DesiredState, live: { release: string; sourceHash: string } | null, changedFile?: string): string {
  const lines = ['nginx\t1.22.1', 'cpus\t2', 'os\tdebian 12', 'free\t10000000'];
  for (const f of d.files)
    lines.push(`file\t${f.path}\t${f.path === changedFile ? 'f'.repeat(64) : sha256(f.content)}\t${Number(f.mode).toString()}\t${f.owner}\t${f.group}`);
  for (const l of d.links) lines.push(`link\t${l.path}\t${l.target}`);
  for (const dir of d.dirs) lines.push(`dir\t${dir.path}\t${dir.mode.replace(/^0/, '')}\t${dir.owner}\t${dir.group}`);
  for (const p of d.packages) lines.push(`pkg\t${p}\tii `);
  lines.push('user\tblog\tblog', 'user\tblog-build\tblog-build', 'user\twww-data\twww-data');
  for (const s of d.services) lines.push(`service\t${s}\tenabled\tactive`);
  if (live) {
    const manifest = Buffer.from(JSON.stringify({ id: live.release, source_hash: live.sourceHash, created: '', by: '' })).toString('base64');
    lines.push(`current\treleases/${live.release}`, `manifest\t${manifest}`, `releases\t${live.release}`);
  }
  return lines.join('\n');
}
