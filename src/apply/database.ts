/**
 * The root scripts of the database commands (`stack db backup`, `stack db restore`) and the
 * restore a rollback can include (`--restore-db`), built from values like every other script
 * (src/apply/scripts.ts); the work is db.sh's and lib.sh's.
 */
import { shQuote as q } from '../remote/quote.js';
import { assign, call, type RunContext, step, wrap } from '../remote/script.js';
import type { Layout } from '../views/layout.js';
import { type HealthCheck, healthConfig, healthLines } from './scripts.js';

export interface BackupTarget {
  dir: string;
  db: string;
  keep: number;
}

/**
 * A backup now. By hand (`stack db backup`) it is checked by restoring it into a scratch
 * database and counting its tables; the one a deploy takes before another host's hooks (a
 * migration) only has its table of contents read, like a single server's deploy backup.
 */
export function dbBackupScript(ctx: RunContext, b: BackupTarget & { id: string }, kind: 'manual' | 'deploy' = 'manual'): string {
  const check = kind === 'manual' ? 'full' : 'list';
  return wrap(
    ctx,
    [
      step(
        kind === 'manual'
          ? `back up database ${b.db} (pg_dump), then restore it into a scratch database to check it`
          : `back up database ${b.db} (pg_dump) before the hooks`,
      ),
      `${call('db_backup', b.dir, b.db, kind, String(b.keep), check, b.id)} || fail 'back up the database'`,
      "audit ok ''",
    ],
    { releaseLock: true },
  );
}

export interface RestoreTarget extends BackupTarget {
  role: string;
  locale: string;
  /** The backup to restore. */
  id: string;
  /** The backup of the database as it is now, taken first. */
  safetyId: string;
  /** The app's units, stopped while the database is swapped. */
  units: string[];
}

/**
 * The database as it is now is backed up; the app stops; the backup is restored into a fresh
 * database that then takes the live one's name (the live one stays as NAME__previous). `failed`
 * is how a failure before the swap ends, `undo` after it.
 */
export function restoreLines(r: RestoreTarget, failed: string): string[] {
  return [
    assign({ DB_NAME: r.db, DB_UNITS: r.units.join(' ') }),
    step(`back up database ${r.db} as it is now (${r.safetyId})`),
    `${call('db_backup', r.dir, r.db, 'restore', String(r.keep), 'list', r.safetyId)} || ${failed} 'back up the database before the restore'`,
    ...(r.units.length > 0 ? [step(`stop ${r.units.join(' ')}`), `stop_units || ${failed} 'stop the app'`] : []),
    step(`restore ${r.id} into a fresh database and swap it in (the one it replaces stays as ${r.db}__previous)`),
    `${call('db_restore', r.dir, r.db, r.role, r.locale, r.id)} || ${failed} ${q(`restore ${r.id}`)}`,
    'DB_SWAPPED=1',
  ];
}

/** `stack db restore`: the restore, then the app starts and must pass its health check, or the previous database comes back. */
export function dbRestoreScript(ctx: RunContext, health: HealthCheck | null, r: RestoreTarget): string {
  const lines = [
    ...(health ? [healthConfig(health)] : []),
    ...restoreLines(r, 'restore_failed'),
    ...(r.units.length > 0 ? [step(`start ${r.units.join(' ')}`), "start_units || undo_db_restore 'start the app'"] : []),
    ...(health ? healthLines({ ...health, static: undefined }, 'undo_db_restore') : []),
    "audit ok ''",
  ];
  return wrap(ctx, lines, { releaseLock: true });
}

/** The app's units a restore stops and starts: the socket first, so nothing starts the app meanwhile. */
export function appUnits(layout: Layout): string[] {
  return [`${layout.app}.socket`, layout.unit];
}
