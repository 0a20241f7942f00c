/**
 * The database backups on a host (src/remote/sh/facts.sh fact_backups): each dump with how and
 * when it was made and how it was checked, the last failure the timer recorded, and the timer's
 * next and last run. `judgeBackups` says whether they can be trusted. Pure but for the question.
 */
import { shCommand } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import { fromBase64, records, type Fact } from './fact.js';

export interface BackupEntry {
  id: string;
  bytes: number;
  /** Seconds since the epoch. */
  created: number;
  kind: string;
  /** User tables counted in the scratch restore (null: only its table of contents was read). */
  tables: number | null;
  seconds: number;
}

export interface BackupFacts {
  /** Newest first. */
  backups: BackupEntry[];
  failure: { at: number; reason: string } | null;
  timer: { next: string | null; last: string | null; result: string } | null;
}

export function backupsFact(layout: Layout): Fact<BackupFacts> {
  return {
    what: 'list the database backups',
    lines: [shCommand('fact_backups', layout.backup_dir, layout.backup_unit)],
    parse: parseBackups,
  };
}

export function parseBackups(output: string): BackupFacts {
  const num = (s: string | undefined) => (s && /^\d+(\.\d+)?$/.test(s) ? Number(s) : null);
  const backups = records(output, 'backup')
    .filter(([id]) => id)
    .map(([id, bytes, created, kind, tables, seconds]) => ({
      id: id!,
      bytes: num(bytes) ?? 0,
      created: num(created) ?? 0,
      kind: kind ?? '?',
      tables: num(tables),
      seconds: num(seconds) ?? 0,
    }))
    .sort((a, b) => b.created - a.created || b.id.localeCompare(a.id));
  const fail = records(output, 'backupfail')[0];
  const timer = records(output, 'backuptimer')[0];
  const dash = (s: string | undefined) => (!s || s === '-' ? null : s);
  return {
    backups,
    failure: fail ? { at: num(fail[0]) ?? 0, reason: fromBase64(fail[1]).trim() } : null,
    timer: timer ? { next: dash(timer[0]), last: dash(timer[1]), result: timer[2] ?? '' } : null,
  };
}

export interface BackupVerdict {
  newest: { id: string; ageSeconds: number; kind: string } | null;
  /** The last recorded failure; `current` when no backup succeeded since. */
  failure: { at: string; reason: string; current: boolean } | null;
  next: string | null;
  ok: boolean;
  /** Why not ok, in a few words. */
  problem: string | null;
}

/**
 * Backups are trusted when the timer is scheduled and its last failure (only the timer records
 * one) came before its newest backup: a backup taken by hand or by a deploy since does not hide
 * a timer that keeps failing.
 */
export function judgeBackups(f: BackupFacts, now: Date): BackupVerdict {
  const newest = f.backups[0] ?? null;
  const newestTimer = f.backups.find((b) => b.kind === 'timer') ?? null;
  const failure = f.failure
    ? { at: new Date(f.failure.at * 1000).toISOString(), reason: f.failure.reason, current: !newestTimer || newestTimer.created <= f.failure.at }
    : null;
  const next = f.timer?.next ?? null;
  const problem = failure?.current ? `the last backup FAILED at ${failure.at}` : next === null ? 'the backup timer is not scheduled' : null;
  return {
    newest: newest ? { id: newest.id, kind: newest.kind, ageSeconds: Math.max(0, Math.round(now.getTime() / 1000 - newest.created)) } : null,
    failure,
    next,
    ok: problem === null,
    problem,
  };
}
