/**
 * Commands that act on each host of an environment over its own connection: the hosts
 * `--limit` picks, `--parallel` of them at a time (all by default), each with a progress of its
 * own. Results come back in the inventory's order; a host that fails does not stop the others,
 * and the error at the end names every host that failed.
 */
import { eachHost, settle } from '../apply/fleet.js';
import { UsageError } from '../errors.js';
import { hostRoles, type Environment } from '../inventory/resolve.js';
import type { Inventory } from '../inventory/load.js';
import type { Host, HostRole } from '../inventory/schema.js';
import { connectHost, type RemoteShell } from '../ssh/connect.js';
import type { Progress } from '../ui/progress.js';
import { connectTimeoutMs, parallelHosts, targetHosts } from './environment.js';
import type { GlobalOptions } from './options.js';

export interface EachHostOptions {
  /** What the command is called in the error naming failed hosts. */
  what?: string;
  /** One host at a time whatever --parallel says: the command asks questions on the terminal. */
  oneAtATime?: boolean;
  /** Only the hosts with this role (the database's commands: the db host). */
  role?: HostRole;
}

export async function forEachHost<T>(
  inventory: Inventory,
  env: Environment,
  globals: GlobalOptions,
  fn: (shell: RemoteShell, host: Host, progress: Progress) => Promise<T>,
  options: EachHostOptions = {},
): Promise<T[]> {
  const hosts = targetHosts(env, globals.limit).filter((h) => !options.role || hostRoles(h).includes(options.role));
  if (hosts.length === 0)
    throw new UsageError(
      `${options.what ?? 'the command'}: ${globals.limit ? `--limit ${globals.limit} picks` : `environment ${env.name} has`} no ${options.role} host`,
      {
        hint: 'pick the host that has the role in the inventory',
      },
    );
  const parallel = options.oneAtATime ? 1 : parallelHosts(globals, hosts.length);
  const root = globals.output.progress;
  const outcomes = await eachHost(hosts, parallel, async (host) => {
    const progress = hosts.length > 1 ? root.scope() : root;
    const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
    try {
      return await fn(shell, host, progress);
    } finally {
      await shell.close();
    }
  });
  return settle(outcomes, options.what ?? 'the command');
}
