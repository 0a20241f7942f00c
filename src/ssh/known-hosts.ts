/**
 * OpenSSH known_hosts, read-only: plain names, `[host]:port` for other ports, comma lists,
 * `*`/`?` wildcards and `!` negation, hashed `|1|salt|hmac` entries, and the @revoked marker.
 * ssh2 checks nothing by itself, so this is what stands between a deploy and a spoofed server.
 */
import { createHash, createHmac } from 'node:crypto';

export interface KnownKey {
  type: string;
  /** base64 of the key blob, as in the file. */
  key: string;
  revoked: boolean;
}

/** The name known_hosts uses for a host on a port. */
export function hostToken(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function wildcardMatch(pattern: string, name: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return re.test(name);
}

function hostFieldMatches(field: string, token: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(token).digest('base64');
    return mac === hash;
  }
  let matched = false;
  for (const pattern of field.split(',')) {
    if (pattern.startsWith('!')) {
      if (wildcardMatch(pattern.slice(1), token)) return false;
    } else if (wildcardMatch(pattern, token)) matched = true;
  }
  return matched;
}

/** Keys listed for `host` on `port`. @cert-authority lines are skipped: certificates are not supported. */
export function knownKeysFor(text: string, host: string, port: number): KnownKey[] {
  const token = hostToken(host, port);
  const out: KnownKey[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    let revoked = false;
    if (fields[0]!.startsWith('@')) {
      const marker = fields.shift();
      if (marker === '@cert-authority') continue;
      revoked = marker === '@revoked';
    }
    const [hosts, type, key] = fields;
    if (!hosts || !type || !key) continue;
    if (hostFieldMatches(hosts, token)) out.push({ type, key, revoked });
  }
  return out;
}

/** OpenSSH's fingerprint: SHA256, base64 without padding. */
export function fingerprint(keyBase64: string): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(keyBase64, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named inside an SSH key blob (its first length-prefixed string). */
export function keyTypeOf(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

export type HostKeyVerdict =
  | { status: 'match'; source: string }
  | { status: 'unknown' }
  | { status: 'changed'; source: string; expected: string[] }
  | { status: 'revoked'; source: string };

/**
 * Decides about the key a server presented. A key pinned in the inventory is the whole truth for
 * that host; otherwise known_hosts decides. A key of another type than the ones on record counts
 * as changed, as OpenSSH treats it, so a downgrade cannot slip through as "unknown".
 */
export function judgeHostKey(presented: Buffer, pinned: string | undefined, knownHosts: { file: string; keys: KnownKey[] }[]): HostKeyVerdict {
  const b64 = presented.toString('base64');
  if (pinned) {
    const [, key] = pinned.split(' ');
    return key === b64
      ? { status: 'match', source: 'inventory host_key' }
      : { status: 'changed', source: 'inventory host_key', expected: [fingerprint(key ?? '')] };
  }
  for (const { file, keys } of knownHosts) {
    if (keys.some((k) => k.revoked && k.key === b64)) return { status: 'revoked', source: file };
  }
  const all = knownHosts.flatMap(({ file, keys }) => keys.filter((k) => !k.revoked).map((k) => ({ file, ...k })));
  const hit = all.find((k) => k.key === b64);
  if (hit) return { status: 'match', source: hit.file };
  if (all.length > 0) return { status: 'changed', source: all[0]!.file, expected: all.map((k) => fingerprint(k.key)) };
  return { status: 'unknown' };
}
