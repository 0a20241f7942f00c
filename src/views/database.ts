/**
 * The database's view models: the backup timer's units and the pg_hba lines of the app. Pure.
 */
import { isIP } from 'node:net';
import type { Environment, ResolvedDatabase } from '../inventory/resolve.js';
import { BACKUP_PROGRAM, type Layout } from './layout.js';

export interface BackupView {
  app: string;
  db: string;
  dir: string;
  keep: number;
  on: string;
  program: string;
  backupUnit: string;
  failedUnit: string;
}

export function backupView(env: Environment, layout: Layout): BackupView {
  const db = databaseOf(env);
  return {
    app: env.app.name,
    db: db.name,
    dir: layout.backup_dir,
    keep: db.backups.keep,
    on: db.backups.on,
    program: BACKUP_PROGRAM,
    backupUnit: layout.backup_unit,
    failedUnit: layout.backup_failed_unit,
  };
}

/** The database of an environment whose role renders database files (it has one). */
function databaseOf(env: Environment): ResolvedDatabase {
  if (!env.database) throw new Error('the database role rendered for an environment without database:');
  return env.database;
}

/**
 * The app's lines in pg_hba.conf, placed before every other rule (the first match decides): the
 * app's user reaches its own database over the unix socket by peer authentication and nothing
 * else; nobody else reaches that database but postgres (backups, restores). Every other local
 * user is refused before Debian's `local all all peer` could let a same-named role in.
 */
export function hbaBlock(role: string, db: string, clients: readonly string[] = []): string {
  // `NAME/32` is no rule PostgreSQL takes (the inventory refuses a host name there, src/inventory/resolve.ts).
  const named = clients.find((a) => isIP(a) === 0);
  if (named) throw new Error(`pg_hba.conf: ${named} is not an IP address`);
  const rows = [
    ['local', db, role, '', 'peer'],
    ['local', db, 'postgres', '', 'peer'],
    // App and worker hosts elsewhere: the app's role, its database, their addresses alone, with
    // the password (scram-sha-256). Before the rejects below, which still refuse everyone else.
    ...clients.map((a) => ['host', db, role, a.includes(':') ? `${a}/128` : `${a}/32`, 'scram-sha-256']),
    ['local', 'all', role, '', 'reject'],
    ['host', 'all', role, 'all', 'reject'],
    ['local', db, 'all', '', 'reject'],
    ['host', db, 'all', 'all', 'reject'],
  ];
  return rows
    .map(
      (r) =>
        `${r
          .map((c, i) => (i < 4 ? c.padEnd(i === 0 ? 8 : 16) : c))
          .join('')
          .trimEnd()}\n`,
    )
    .join('');
}
