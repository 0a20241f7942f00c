/**
 * `stack trust ENV`: first contact with a server. Shows each host's key fingerprint and, once
 * confirmed, pins the key in the inventory (comments and all else kept). A pinned key is never
 * replaced without --replace.
 */
import pc from 'picocolors';
import type { GlobalOptions } from './options.js';
import { connectTimeoutMs, selectEnvironment } from './environment.js';
import { HostKeyError, UsageError, StackError } from '../errors.js';
import { updateInventory } from '../inventory/edit.js';
import { connectHost } from '../ssh/connect.js';
import { fingerprint } from '../ssh/known-hosts.js';

export interface TrustOptions {
  yes?: boolean;
  replace?: boolean;
}

export async function runTrust(envName: string | undefined, options: TrustOptions, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const pins: { index: number; key: string }[] = [];
  for (const [index, host] of env.hosts.entries()) {
    let presented: string | undefined;
    try {
      const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals), captureHostKey: (k) => (presented = k) });
      await shell.close();
    } catch (err) {
      // The key arrives before authentication: a login failure still tells us the key.
      if (!presented) throw err;
    }
    const key = presented!;
    const fp = fingerprint(key.split(' ')[1]!);
    if (host.host_key === key) {
      process.stdout.write(`${host.address}: ${fp} is already pinned\n`);
      continue;
    }
    if (host.host_key && !options.replace) {
      throw new HostKeyError(
        `${host.address}: HOST KEY CHANGED. The server presents ${fp}, the inventory pins ${fingerprint(host.host_key.split(' ')[1] ?? '')}; nothing was changed`,
        fp,
        key,
        { hint: 'if the server was rebuilt and you verified the new fingerprint, run `stack trust ENV --replace`' },
      );
    }
    process.stdout.write(`${host.address}: ${key.split(' ')[0]} key ${pc.bold(fp)}\n`);
    if (!options.yes) {
      if (!process.stdin.isTTY)
        throw new UsageError('confirming a host key needs a terminal', { hint: "compare the fingerprint with the server's, then run again with --yes" });
      const { confirm } = await import('@inquirer/prompts');
      if (!(await confirm({ message: `Pin this key for ${host.address}? Compare it with the fingerprint your provider shows.`, default: false }))) {
        throw new StackError('not pinned; nothing was changed');
      }
    }
    pins.push({ index, key });
  }
  if (pins.length === 0) return;
  await updateInventory(globals.inventory, (doc) => {
    for (const { index, key } of pins) doc.setIn(['environments', env.name, 'hosts', index, 'host_key'], key);
  });
  process.stdout.write(`pinned ${pins.length} host key${pins.length === 1 ? '' : 's'} in ${inventory.file}\n`);
}
