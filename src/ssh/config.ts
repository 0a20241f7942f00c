/**
 * What OpenSSH would use to reach a host: `ssh -G` resolves ~/.ssh/config completely (Include,
 * Match, tokens), so stack connects where `ssh` would, with the same keys and jump hosts.
 */
import { homedir, userInfo } from 'node:os';
import { runLocal } from '../local.js';

export interface SshSettings {
  hostname: string;
  port: number;
  user: string;
  identityFiles: string[];
  /** `user@host:port` hops, outermost first. */
  proxyJump: string[];
  knownHostsFiles: string[];
  connectTimeout?: number;
  /** Whether ~/.ssh/config set these itself (otherwise the inventory's defaults apply). */
  userFromConfig: boolean;
  portFromConfig: boolean;
}

/** Parses `ssh -G` output. Pure. */
export function parseSshG(output: string, localUser: string, home: string): SshSettings {
  const values = new Map<string, string[]>();
  for (const line of output.split('\n')) {
    const m = line.match(/^(\S+)\s+(.*)$/);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    values.set(key, [...(values.get(key) ?? []), m[2]!.trim()]);
  }
  const one = (k: string) => values.get(k)?.[0];
  const expand = (p: string) => p.replace(/^~(?=\/|$)/, home);
  const jump = one('proxyjump');
  const timeout = one('connecttimeout');
  const user = one('user') ?? localUser;
  const port = Number(one('port') ?? 22);
  return {
    hostname: one('hostname') ?? '',
    port,
    user,
    identityFiles: (values.get('identityfile') ?? []).map(expand),
    proxyJump: jump && jump !== 'none' ? jump.split(',').map((s) => s.trim()) : [],
    knownHostsFiles: (values.get('userknownhostsfile') ?? []).flatMap((v) => v.split(/\s+/)).map(expand),
    connectTimeout: timeout && timeout !== 'none' ? Number(timeout) : undefined,
    userFromConfig: user !== localUser,
    portFromConfig: port !== 22,
  };
}

/** STACK_SSH_CONFIG names another config file, as `ssh -F` would take it. */
export async function sshSettings(host: string): Promise<SshSettings> {
  const file = process.env.STACK_SSH_CONFIG;
  const r = await runLocal('ssh', file ? ['-G', '-F', file, host] : ['-G', host]);
  const local = userInfo().username;
  if (r.code !== 0) {
    // No OpenSSH client: fall back to plain defaults (no ~/.ssh/config to honour then).
    return parseSshG(
      `hostname ${host}\nuser ${local}\nport 22\nidentityfile ~/.ssh/id_ed25519\nidentityfile ~/.ssh/id_rsa\nuserknownhostsfile ~/.ssh/known_hosts`,
      local,
      homedir(),
    );
  }
  return parseSshG(r.stdout, local, homedir());
}

/** `user@host:port` as in ProxyJump. */
export function parseJump(spec: string): { user?: string; host: string; port?: number } {
  const m = spec.match(/^(?:([^@]+)@)?(\[[^\]]+\]|[^:]+)(?::(\d+))?$/);
  if (!m) return { host: spec };
  return { user: m[1], host: m[2]!.replace(/^\[|\]$/g, ''), port: m[3] ? Number(m[3]) : undefined };
}
