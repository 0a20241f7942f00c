/**
 * The deploy lock end to end without a server: runWithLock's scripts run under dash through
 * LocalShell, with the lock directory in a temporary folder. Taking, refusing, clearing a stale
 * lock and giving it back are the same code paths a deploy takes on a server.
 */
import { mkdtempSync, writeFileSync, existsSync, readFileSync, utimesSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOCK_LEASE_SECONDS, releaseLockScript, runWithLock } from '../../src/apply/lock.js';
import { LockHeldError } from '../../src/errors.js';
import { releasesFact } from '../../src/facts/releases.js';
import { lockRequest, type LockRequest } from '../../src/facts/lock.js';
import { LocalShell } from '../../src/ssh/local-shell.js';
import type { Layout } from '../../src/views/layout.js';

const lines: string[] = [];
const progress = { step() {}, end() {}, line: (t: string) => lines.push(t), interrupt() {} };

function setup(): { shell: LocalShell; lock: (token: string, o?: Partial<LockRequest['holder']>) => LockRequest; fact: ReturnType<typeof releasesFact> } {
  const root = mkdtempSync(path.join(tmpdir(), 'stack-lock-'));
  const shell = new LocalShell(root);
  const lock = (token: string, holder: Partial<LockRequest['holder']> = {}) => {
    const r = { ...lockRequest('blog', { dryRun: false, by: 'dev@laptop', command: 'deploy prod', token, since: new Date() }), dir: `${root}/lib/blog.lock` };
    return { ...r, holder: { ...r.holder, ...holder } };
  };
  return { shell, lock, fact: releasesFact({ current: `${root}/current`, releases: `${root}/releases` } as Layout) };
}

describe('runWithLock over a local shell', () => {
  it('takes a free lock with the fact in the same round trip, and the token gives it back', async () => {
    const { shell, lock, fact } = setup();
    const mine = lock('one');
    const round = await runWithLock(shell, mine, fact, { progress, host: 'h', env: 'prod' });
    expect(round).toEqual({ value: [], acquired: true, holder: null });
    expect(shell.execCount).toBe(1);
    expect(readFileSync(`${mine.dir}/token`, 'utf8')).toBe('one');
    // Someone else's token leaves it alone; ours removes it.
    await shell.sudoScript(releaseLockScript(mine.dir, 'other'));
    expect(existsSync(mine.dir)).toBe(true);
    await shell.sudoScript(releaseLockScript(mine.dir, 'one'));
    expect(existsSync(mine.dir)).toBe(false);
  });

  it('refuses while another live deploy holds it, naming the holder and how to clear it', async () => {
    const { shell, lock, fact } = setup();
    await runWithLock(shell, lock('one', { who: 'alice@ci' }), fact, { progress, host: 'h', env: 'prod' });
    const error = await runWithLock(shell, lock('two'), fact, { progress, host: 'h', env: 'prod' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockHeldError);
    expect(String((error as Error).message)).toMatch(/another deploy holds the lock: alice@ci \(deploy prod, pid \d+ on /);
    expect((error as LockHeldError).hint).toMatch(/stack lock release prod/);
  });

  it('reports the holder to a dry run without taking the lock', async () => {
    const { shell, lock, fact } = setup();
    await runWithLock(shell, lock('one'), fact, { progress, host: 'h', env: 'prod' });
    const round = await runWithLock(shell, { ...lock('two'), mode: 'report' }, fact, { progress, host: 'h', env: 'prod' });
    expect(round.acquired).toBe(false);
    expect(round.holder?.token).toBe('one');
  });

  it('clears a lock whose process on this machine is gone, then takes it', async () => {
    const { shell, lock, fact } = setup();
    // A pid that cannot run: above the kernel's limit.
    const stale = lock('one', { pid: 2 ** 22 + 1, client: hostname() });
    await runWithLock(shell, stale, fact, { progress, host: 'h', env: 'prod' });
    lines.length = 0;
    const round = await runWithLock(shell, lock('two'), fact, { progress, host: 'h', env: 'prod' });
    expect(round.acquired).toBe(true);
    expect(lines.join('\n')).toMatch(/clearing a stale deploy lock .*that process no longer runs/);
    expect(readFileSync(`${stale.dir}/token`, 'utf8')).toBe('two');
  });

  it('clears a lock from another machine only after the lease without a sign of life', async () => {
    const { shell, lock, fact } = setup();
    const other = lock('one', { client: 'elsewhere' });
    await runWithLock(shell, other, fact, { progress, host: 'h', env: 'prod' });
    await expect(runWithLock(shell, lock('two'), fact, { progress, host: 'h', env: 'prod' })).rejects.toBeInstanceOf(LockHeldError);
    const then = new Date(Date.now() - (LOCK_LEASE_SECONDS + 60) * 1000);
    writeFileSync(`${other.dir}/active`, '');
    utimesSync(`${other.dir}/active`, then, then);
    const round = await runWithLock(shell, lock('two'), fact, { progress, host: 'h', env: 'prod' });
    expect(round.acquired).toBe(true);
  });
});
