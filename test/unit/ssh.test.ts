/** known_hosts matching, host key verdicts and `ssh -G` parsing: pure code, table-driven. */
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint, hostToken, judgeHostKey, knownKeysFor } from '../../src/ssh/known-hosts.js';
import { parseJump, parseSshG } from '../../src/ssh/config.js';

// A real ed25519 public key blob (type string + 32 bytes), base64.
function blob(seed: number): string {
  const type = Buffer.from('ssh-ed25519');
  const key = Buffer.alloc(32, seed);
  const buf = Buffer.alloc(4 + type.length + 4 + 32);
  buf.writeUInt32BE(type.length, 0);
  type.copy(buf, 4);
  buf.writeUInt32BE(32, 4 + type.length);
  key.copy(buf, 8 + type.length);
  return buf.toString('base64');
}
const A = blob(1);
const B = blob(2);

function hashed(token: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(token).digest('base64')}`;
}

describe('known_hosts', () => {
  it.each([
    ['plain name', `example.org ssh-ed25519 ${A}`, 'example.org', 22, 1],
    ['comma list', `other,example.org,1.2.3.4 ssh-ed25519 ${A}`, '1.2.3.4', 22, 1],
    ['other port needs [host]:port', `example.org ssh-ed25519 ${A}`, 'example.org', 2222, 0],
    ['[host]:port entry', `[example.org]:2222 ssh-ed25519 ${A}`, 'example.org', 2222, 1],
    ['[host]:port does not match port 22', `[example.org]:2222 ssh-ed25519 ${A}`, 'example.org', 22, 0],
    ['wildcard', `*.example.org ssh-ed25519 ${A}`, 'web1.example.org', 22, 1],
    ['negated wildcard', `*.example.org,!db.example.org ssh-ed25519 ${A}`, 'db.example.org', 22, 0],
    ['hashed entry', `${hashed('example.org')} ssh-ed25519 ${A}`, 'example.org', 22, 1],
    ['hashed entry with port', `${hashed('[example.org]:2200')} ssh-ed25519 ${A}`, 'example.org', 2200, 1],
    ['hashed entry for another host', `${hashed('example.net')} ssh-ed25519 ${A}`, 'example.org', 22, 0],
    ['cert-authority lines are skipped', `@cert-authority *.example.org ssh-ed25519 ${A}`, 'a.example.org', 22, 0],
    ['comments and blank lines', `# c\n\nexample.org ssh-ed25519 ${A} comment here`, 'example.org', 22, 1],
  ])('%s', (_, text, host, port, count) => {
    expect(knownKeysFor(text, host, port)).toHaveLength(count);
  });

  it('names non-default ports the way OpenSSH does', () => {
    expect(hostToken('h', 22)).toBe('h');
    expect(hostToken('h', 2222)).toBe('[h]:2222');
  });
});

describe('host key verdicts', () => {
  const presented = Buffer.from(A, 'base64');
  it.each([
    ['pinned and equal', `ssh-ed25519 ${A}`, [], 'match'],
    ['pinned and different', `ssh-ed25519 ${B}`, [], 'changed'],
    ['pinned wins over known_hosts', `ssh-ed25519 ${B}`, [{ file: 'k', keys: [{ type: 'ssh-ed25519', key: A, revoked: false }] }], 'changed'],
    ['known_hosts match', undefined, [{ file: 'k', keys: [{ type: 'ssh-ed25519', key: A, revoked: false }] }], 'match'],
    ['known_hosts has another key', undefined, [{ file: 'k', keys: [{ type: 'ssh-ed25519', key: B, revoked: false }] }], 'changed'],
    ['nothing on record', undefined, [], 'unknown'],
    ['revoked', undefined, [{ file: 'k', keys: [{ type: 'ssh-ed25519', key: A, revoked: true }] }], 'revoked'],
  ] as const)('%s -> %s', (_, pinned, known, status) => {
    expect(judgeHostKey(presented, pinned, known as never).status).toBe(status);
  });

  it('prints fingerprints as OpenSSH does (SHA256, unpadded base64)', () => {
    expect(fingerprint(A)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});

describe('ssh -G', () => {
  const out = `host web\nhostname 203.0.113.5\nuser alice\nport 2200\nidentityfile ~/.ssh/id_ed25519\nidentityfile /keys/deploy\nproxyjump bastion@jump.example.org:2222\nuserknownhostsfile ~/.ssh/known_hosts ~/.ssh/known_hosts2\nconnecttimeout 7\n`;
  it('reads address, user, port, keys, jump hosts and known_hosts files', () => {
    const s = parseSshG(out, 'root', '/home/me');
    expect(s).toMatchObject({
      hostname: '203.0.113.5',
      user: 'alice',
      port: 2200,
      identityFiles: ['/home/me/.ssh/id_ed25519', '/keys/deploy'],
      proxyJump: ['bastion@jump.example.org:2222'],
      knownHostsFiles: ['/home/me/.ssh/known_hosts', '/home/me/.ssh/known_hosts2'],
      connectTimeout: 7,
      userFromConfig: true,
      portFromConfig: true,
    });
  });

  it('tells defaults from configured values', () => {
    const s = parseSshG('hostname h\nuser root\nport 22\nproxyjump none\n', 'root', '/root');
    expect(s.userFromConfig).toBe(false);
    expect(s.portFromConfig).toBe(false);
    expect(s.proxyJump).toEqual([]);
  });

  it.each([
    ['jump.example.org', { host: 'jump.example.org' }],
    ['bob@jump:2222', { user: 'bob', host: 'jump', port: 2222 }],
    ['[2001:db8::1]:22', { host: '2001:db8::1', port: 22 }],
  ])('ProxyJump %s', (spec, want) => {
    expect(parseJump(spec)).toMatchObject(want);
  });
});
