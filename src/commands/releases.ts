/** `stack releases ENV`: the releases on each host, the live one marked. */
import type { GlobalOptions } from './options.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import { ask } from '../facts/fact.js';
import { releasesFact } from '../facts/releases.js';
import type { ReleasesResult } from '../ui/results.js';
import { layoutFor } from '../views/layout.js';

export async function runReleases(envName: string | undefined, globals: GlobalOptions): Promise<ReleasesResult> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const layout = layoutFor(env.app, env.gateway);
  const result: ReleasesResult = { kind: 'releases', env: env.name, hosts: [] };
  result.hosts = await forEachHost(inventory, env, globals, async (shell, host) => {
    const part = { host: host.address, releases: await ask(shell, releasesFact(layout)) };
    globals.output.host({ kind: 'releases', ...part });
    return part;
  });
  return result;
}
