/**
 * The deploy lock, taken in the same round trip as the first script of a command (mkdir is
 * atomic: exactly one deploy gets it). A lock left by a stack process of this machine that no
 * longer runs is cleared with a warning; any other holder is named, with how to clear it.
 */
import { hostname } from 'node:os';
import pc from 'picocolors';
import type { Progress } from '../ui/progress.js';
import { LockHeldError, StackError } from '../errors.js';
import { factScript, type Fact } from '../facts/fact.js';
import { describeHolder, lockFact, type LockHolder, type LockRequest } from '../facts/lock.js';
import { shCommand } from '../remote/quote.js';
import type { RemoteShell } from '../ssh/connect.js';
import { framed, LOCK_LIBRARY } from '../remote/script.js';

/**
 * The script that gives the lock back, unless another deploy holds it by now. Like every root
 * script, one function called on its last line: cut short in transit, it does nothing.
 */
export function releaseLockScript(dir: string, token: string): string {
  return lockScript(shCommand('release_lock', `${dir}/token`, token));
}

/** Clears a stale lock, only if it is still the one judged stale (a holder-less one has no token). */
function clearLockScript(dir: string, token: string | null): string {
  return lockScript(shCommand('clear_lock', `${dir}/token`, token ?? ''));
}

function lockScript(call: string): string {
  return framed([LOCK_LIBRARY, call]);
}

/**
 * A lock whose holder can no longer act sets no bound on anyone: nothing ever renews it. Every
 * server script of the holder marks the lock when it starts and ends, and the client's own gaps
 * between two scripts are short (planning, packing), so no sign of life for this long means
 * the client is gone (a cut connection, a machine that died).
 */
export const LOCK_LEASE_SECONDS = 600;

/**
 * Why a held lock is provably stale, or null while its holder may still act: never while one of
 * its scripts runs on the server; then when its stack process on this machine is gone, when it
 * was left without a holder (taking it never finished), or when its holder has shown no sign of
 * life for LOCK_LEASE_SECONDS.
 */
export function staleReason(lock: { holder: LockHolder | null; scriptRunning: boolean; age: number | null }, here = hostname()): string | null {
  if (lock.scriptRunning) return null;
  const { holder, age } = lock;
  if (!holder) return age !== null && age > 60 ? 'it was left without a holder' : null;
  if (holder.client === here && !processRuns(holder.pid)) return 'that process no longer runs';
  if (age !== null && age > LOCK_LEASE_SECONDS) return `nothing of it has run on the server for ${Math.floor(age / 60)} minutes`;
  return null;
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

export interface LockedRound<T> {
  value: T;
  acquired: boolean;
  holder: LockHolder | null;
}

/**
 * Asks `fact` (as root) together with taking (or, for dry runs, reporting) the lock, in one
 * round trip. The fact is returned once the lock is ours.
 */
export async function runWithLock<T>(
  shell: RemoteShell,
  lock: LockRequest,
  fact: Fact<T>,
  o: { progress: Progress; host: string; env: string; wait?: boolean },
): Promise<LockedRound<T>> {
  const locking = lockFact(lock);
  const deadline = Date.now() + 15 * 60_000;
  let waiting = false;
  for (;;) {
    o.progress.step(o.host, fact.what);
    const r = await shell.sudoScript(factScript(locking, fact));
    if (r.code !== 0) throw new StackError(`${shell.label}: ${fact.what} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    o.progress.end(true);
    const state = locking.parse(r.stdout);
    if (state.state === 'error')
      throw new StackError(`${shell.label}: cannot take the deploy lock: ${state.message}`, {
        hint: 'free some space on the server (old releases go with a lower `keep`), then deploy again',
      });
    if (state.state !== 'held') return { value: fact.parse(r.stdout), acquired: state.state === 'acquired', holder: null };
    if (lock.mode === 'report') return { value: fact.parse(r.stdout), acquired: false, holder: state.holder };
    const stale = staleReason(state);
    if (stale) {
      o.progress.line(pc.yellow(`${o.host}: clearing a stale deploy lock left by ${describeHolder(state.holder)}: ${stale}`));
      await shell.sudoScript(clearLockScript(lock.dir, state.holder?.token ?? null));
      continue;
    }
    if (!o.wait || Date.now() > deadline) {
      const finishing = state.scriptRunning ? '; its last step is still running on the server and releases the lock when done' : '';
      throw new LockHeldError(`${shell.label}: another deploy holds the lock: ${describeHolder(state.holder)}${finishing}`, {
        hint: `wait for it (or pass --wait); if no deploy is running any more, clear it with \`stack lock release ${o.env}\``,
      });
    }
    if (!waiting) o.progress.line(`${o.host}: waiting for the deploy lock held by ${describeHolder(state.holder)}`);
    waiting = true;
    await new Promise((r) => setTimeout(r, 2000));
  }
}
