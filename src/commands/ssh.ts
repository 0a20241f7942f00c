/**
 * `stack ssh ENV [--host H]`: an interactive shell on a server, through OpenSSH itself (a real
 * terminal, agent forwarding and escapes as users know them), with the host key stack checks:
 * the pinned `host_key` goes into a temporary known_hosts file that ssh must match strictly.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { StackError, UsageError } from '../errors.js';
import { hostRoles, type Environment } from '../inventory/resolve.js';
import type { Host, HostRole } from '../inventory/schema.js';
import { hostToken } from '../ssh/known-hosts.js';
import { selectEnvironment } from './environment.js';
import type { GlobalOptions } from './options.js';

/**
 * The host a one-host command acts on: the one `--host` names, or else the only one (of those
 * with `role`, when the command needs one: `db psql` the db host); `anyOne`: the first of them
 * (`run` on an app host, `schedule run` on a worker host).
 */
export function pickHost(env: Environment, address: string | undefined, role?: HostRole, anyOne = false): Host {
  if (address === undefined) {
    const candidates = role ? env.hosts.filter((h) => hostRoles(h).includes(role)) : env.hosts;
    // A one-off command (a management command, a job run by hand) runs the same on any of them.
    if (candidates.length === 1 || (anyOne && candidates.length > 1)) return candidates[0]!;
    throw new UsageError(`environment ${env.name} has ${candidates.length} ${role ? `${role} ` : ''}hosts; say which one with --host`, {
      hint: `one of: ${candidates.map((h) => h.address).join(', ')}`,
    });
  }
  const host = env.hosts.find((h) => h.address === address);
  if (!host) throw new UsageError(`environment ${env.name} has no host ${address}`, { hint: `hosts: ${env.hosts.map((h) => h.address).join(', ')}` });
  return host;
}

/**
 * The `ssh` arguments that reach `host` as stack does: its user, port and identity file from
 * the inventory (else ~/.ssh/config decides, as for stack's own connections), and, with a pinned
 * key, only that key accepted. `knownHostsFile` is where the pinned key is written.
 */
export function sshArguments(host: Host, baseDir: string, knownHostsFile: string | null): string[] {
  const args = ['-o', 'StrictHostKeyChecking=yes'];
  if (knownHostsFile) args.push('-o', `UserKnownHostsFile=${knownHostsFile}`, '-o', `HostKeyAlias=${host.address}`);
  if (host.port !== undefined) args.push('-p', String(host.port));
  if (host.identity_file) args.push('-i', path.resolve(baseDir, host.identity_file.replace(/^~(?=\/|$)/, homedir())), '-o', 'IdentitiesOnly=yes');
  if (host.user !== undefined) args.push('-l', host.user);
  return args;
}

/** The known_hosts line of a pinned key; HostKeyAlias makes ssh look it up by the address alone. */
export function pinnedKnownHostsLine(host: Host): string {
  return `${hostToken(host.address, 22)} ${host.host_key}\n`;
}

export async function runSsh(envName: string | undefined, options: { host?: string }, command: string[], globals: GlobalOptions): Promise<number> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const host = pickHost(env, options.host);
  const dir = host.host_key ? mkdtempSync(path.join(tmpdir(), 'stack-ssh-')) : null;
  try {
    const knownHosts = dir ? path.join(dir, 'known_hosts') : null;
    if (knownHosts) writeFileSync(knownHosts, pinnedKnownHostsLine(host), { mode: 0o600 });
    const args = [...sshArguments(host, inventory.dir, knownHosts), ...(command.length > 0 ? [] : ['-t']), host.address, ...command];
    return await new Promise<number>((resolve, reject) => {
      const child = spawn('ssh', args, { stdio: 'inherit' });
      // The terminal's Ctrl-C belongs to the remote shell; ssh itself decides what it means.
      const ignore = () => undefined;
      process.on('SIGINT', ignore);
      child.on('error', (err) => {
        process.off('SIGINT', ignore);
        reject(new StackError(`cannot run ssh: ${err.message}`, { hint: 'install the OpenSSH client (Debian: openssh-client)' }));
      });
      child.on('close', (code, signal) => {
        process.off('SIGINT', ignore);
        resolve(code ?? (signal ? 128 + 2 : 1));
      });
    });
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
