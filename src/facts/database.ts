/**
 * PostgreSQL as the app needs it: whether the server runs, the app's role and its attributes,
 * the database and its owner, other databases the role owns (a renamed `database.name`), and
 * the app's block in pg_hba.conf. Asked with the host's facts (src/remote/sh/facts.sh
 * fact_database); parsed here, pure.
 */
import { shCommand } from '../remote/quote.js';
import { fromBase64, records } from './fact.js';

export interface RoleAttributes {
  super: boolean;
  createdb: boolean;
  createrole: boolean;
  login: boolean;
  password: boolean;
  replication: boolean;
  bypassrls: boolean;
}

export interface DatabaseFacts {
  server: 'absent' | 'down' | 'up';
  version: number | null;
  role: RoleAttributes | null;
  database: { owner: string; encoding: string; collate: string; publicConnect: boolean } | null;
  /** Other databases the role owns. */
  owned: string[];
  /** pg_hba.conf and the app's block in it ('' when there is none); null when the server is not up. */
  hba: { file: string; block: string } | null;
  /** A restore's replaced database is still there (NAME__previous). */
  previous: boolean;
}

export function databaseFactLine(role: string, db: string): string {
  return shCommand('fact_database', role, db);
}

/** The database's facts in a facts script's output; null when it was not asked. */
export function parseDatabase(output: string): DatabaseFacts | null {
  const pg = records(output, 'pg')[0];
  if (!pg) return null;
  const server = pg[0] === 'up' || pg[0] === 'down' ? pg[0] : 'absent';
  const version = pg[1] && /^\d+$/.test(pg[1]) ? Number(pg[1]) : null;
  const t = (s: string | undefined) => s === 't';
  const role = records(output, 'pgrole')[0];
  const db = records(output, 'pgdb')[0];
  const hba = records(output, 'pghba')[0];
  return {
    server,
    version,
    role:
      role && role[1] !== '-' && role.length >= 8
        ? {
            super: t(role[1]),
            createdb: t(role[2]),
            createrole: t(role[3]),
            login: t(role[4]),
            password: t(role[5]),
            replication: t(role[6]),
            bypassrls: t(role[7]),
          }
        : null,
    database: db && db[1] !== '-' && db.length >= 5 ? { owner: db[1]!, encoding: db[2]!, collate: db[3]!, publicConnect: t(db[4]) } : null,
    owned: records(output, 'pgowned').map((r) => r[0]!),
    hba: hba ? { file: hba[0]!, block: fromBase64(hba[1]) } : null,
    previous: records(output, 'pgprevious').length > 0,
  };
}
