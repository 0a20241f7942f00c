/** `stack releases ENV`: the releases on each host, the live one marked. */
import pc from 'picocolors';
import type { GlobalOptions } from '../cli/main.js';
import { selectEnvironment } from '../cli/environment.js';
import { forEachHost } from '../cli/hosts.js';
import { StackError } from '../errors.js';
import { listReleasesScript, parseReleases, type ReleaseEntry } from '../release/list.js';
import { layoutFor } from '../views/layout.js';

export function formatReleases(releases: ReleaseEntry[]): string {
  if (releases.length === 0) return '  no releases yet: run `stack deploy`';
  return releases
    .map((r) => {
      const m = r.manifest;
      const source = m ? (m.git_commit ? `git ${m.git_commit.slice(0, 10)}` : `source ${m.source_hash.slice(0, 10)}`) : 'incomplete';
      const detail = m
        ? `${m.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}  ${m.by}  ${source}${m.code_from ? `  (code of ${m.code_from})` : ''}`
        : 'incomplete (never went live)';
      return `${r.live ? pc.green('* ') : '  '}${r.id}  ${detail}${r.live ? pc.green('  live') : ''}`;
    })
    .join('\n');
}

export async function runReleases(envName: string | undefined, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const layout = layoutFor(env.app, env.gateway);
  await forEachHost(inventory, env, globals, async (shell, host) => {
    const r = await shell.sudoScript(listReleasesScript(layout));
    if (r.code !== 0) throw new StackError(`${shell.label}: could not list releases: ${r.stderr.trim()}`);
    process.stdout.write(`${pc.bold(host.address)}\n${formatReleases(parseReleases(r.stdout))}\n`);
  });
}
