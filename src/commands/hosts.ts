/** Commands that act on each host of an environment over its own connection. */
import type { Environment } from '../inventory/resolve.js';
import type { Inventory } from '../inventory/load.js';
import type { Host } from '../inventory/schema.js';
import { connectHost, type RemoteShell } from '../ssh/connect.js';
import { connectTimeoutMs } from './environment.js';
import type { GlobalOptions } from './options.js';

export async function forEachHost(
  inventory: Inventory,
  env: Environment,
  globals: GlobalOptions,
  fn: (shell: RemoteShell, host: Host) => Promise<void>,
): Promise<void> {
  for (const host of env.hosts) {
    const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
    try {
      await fn(shell, host);
    } finally {
      await shell.close();
    }
  }
}
