/**
 * The deploy lock as a fact: taken (or only reported, for dry runs and `lock status`) in the
 * same round trip as the first facts of a command. The shell is lock_take / lock_report in
 * src/remote/sh/facts.sh; the request is built the same way by every command that takes it.
 */
import { hostname } from 'node:os';
import { shCommand } from '../remote/quote.js';
import { fromBase64, records, type Fact } from './fact.js';

/** The deploy lock as the facts script found (or took) it. */
export type LockState =
  | { state: 'acquired' }
  | { state: 'free' }
  /** age: seconds since the holder last showed life (a script of it started or ended). */
  | { state: 'held'; holder: LockHolder | null; scriptRunning: boolean; age: number | null }
  /** The lock could not be taken at all (a full disk): no deploy holds it. */
  | { state: 'error'; message: string };

export interface LockHolder {
  token: string;
  who: string;
  client: string;
  pid: number;
  since: string;
  command: string;
}

export interface LockRequest {
  /** acquire: take it if free (deploy, setup, rollback); report: only say who holds it (dry run). */
  mode: 'acquire' | 'report';
  dir: string;
  token: string;
  holder: Omit<LockHolder, 'token'>;
}

export function lockDir(app: string): string {
  return `/var/lib/stack/${app}.lock`;
}

/** The request every locking command makes: a dry run only reports, anything else takes it. */
export function lockRequest(app: string, o: { dryRun: boolean; by: string; command: string; token: string; since: Date }): LockRequest {
  return {
    mode: o.dryRun ? 'report' : 'acquire',
    dir: lockDir(app),
    token: o.token,
    holder: { who: o.by, client: hostname(), pid: process.pid, since: o.since.toISOString(), command: o.command },
  };
}

export function describeHolder(h: LockHolder | null): string {
  if (!h) return 'another deploy (no details recorded)';
  return `${h.who} (${h.command}, pid ${h.pid} on ${h.client}, since ${h.since})`;
}

export function parseLockInfo(text: string): LockHolder | null {
  const fields = new Map(text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
  if (!fields.get('token')) return null;
  return {
    token: fields.get('token')!,
    who: fields.get('who') ?? '?',
    client: fields.get('client') ?? '?',
    pid: Number(fields.get('pid') ?? 0),
    since: fields.get('since') ?? '?',
    command: fields.get('command') ?? '?',
  };
}

/** The lock record of any output that carries one; free when there is none. */
export function parseLock(output: string): LockState {
  const f = records(output, 'lock').at(-1);
  if (!f) return { state: 'free' };
  switch (f[0]) {
    case 'acquired':
      return { state: 'acquired' };
    case 'held':
      return { state: 'held', holder: parseLockInfo(fromBase64(f[1])), scriptRunning: f[2] === '1', age: f[3] && /^-?\d+$/.test(f[3]) ? Number(f[3]) : null };
    case 'error':
      return { state: 'error', message: f[1] ?? 'the deploy lock could not be taken' };
    default:
      return { state: 'free' };
  }
}

export function lockFact(lock: LockRequest): Fact<LockState> {
  const { holder } = lock;
  const info = [
    `token=${lock.token}`,
    `who=${holder.who}`,
    `client=${holder.client}`,
    `pid=${holder.pid}`,
    `since=${holder.since}`,
    `command=${holder.command}`,
  ].join('\n');
  return {
    what: lock.mode === 'report' ? 'read the deploy lock' : 'take the deploy lock',
    lines: [lock.mode === 'report' ? shCommand('lock_report', lock.dir) : shCommand('lock_take', lock.dir, lock.token, info)],
    parse: parseLock,
  };
}
