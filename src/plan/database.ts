/**
 * What provisioning must do so that the app has its database: PostgreSQL running, the app's
 * role with exactly the attributes it needs, the database owned by it, and the app's lines
 * first in pg_hba.conf. Planned from the facts alone (pure), so `--dry-run` shows it like file
 * changes; a database that would silently come up empty (a renamed `database.name`) is refused.
 */
import { createTwoFilesPatch } from 'diff';
import { UsageError } from '../errors.js';
import type { DatabaseFacts, RoleAttributes } from '../facts/database.js';
import type { ResolvedDatabase } from '../inventory/resolve.js';
import { hbaBlock } from '../views/database.js';

/**
 * The database of an environment whose app and worker hosts are elsewhere (src/views/topology.ts):
 * the addresses they connect from, where PostgreSQL listens, and the role's password file.
 */
export interface SharedDatabase extends ResolvedDatabase {
  clients: string[];
  listen: string;
  passwordFile: string;
}

function shared(db: ResolvedDatabase): SharedDatabase | null {
  return 'clients' in db ? (db as SharedDatabase) : null;
}

export interface DatabasePlan {
  /** Shared with other hosts: PostgreSQL listens on these addresses, the role's password comes from this file. */
  listen?: string;
  passwordFile?: string;
  role: string;
  name: string;
  locale: string;
  /** Create the role, or set its attributes (which ones are wrong, for the plan's text). */
  roleAction: { kind: 'create' } | { kind: 'alter'; wrong: (keyof RoleAttributes)[] } | null;
  createDatabase: boolean;
  /** Only the owner (and postgres) may connect: taken from PUBLIC on an existing database. */
  revokePublic: boolean;
  /** The app's pg_hba lines, when they are not those already there; diff against what is. */
  hba: { block: string; diff: string; file: string | null } | null;
}

/** The attributes the app's role must have: it logs in, and may do nothing beyond its own database. */
const WANTED: Record<keyof RoleAttributes, boolean> = {
  login: true,
  super: false,
  createdb: false,
  createrole: false,
  replication: false,
  bypassrls: false,
  password: false,
};

const ATTRIBUTE_TEXT: Record<keyof RoleAttributes, [string, string]> = {
  login: ['LOGIN', 'NOLOGIN'],
  super: ['SUPERUSER', 'NOSUPERUSER'],
  createdb: ['CREATEDB', 'NOCREATEDB'],
  createrole: ['CREATEROLE', 'NOCREATEROLE'],
  replication: ['REPLICATION', 'NOREPLICATION'],
  bypassrls: ['BYPASSRLS', 'NOBYPASSRLS'],
  password: ['a password', 'no password'],
};

export interface DatabasePlanInput {
  db: ResolvedDatabase;
  role: string;
  facts: DatabaseFacts | null;
  host: string;
  env: string;
}

export function planDatabase({ db, role, facts, host, env }: DatabasePlanInput): DatabasePlan | null {
  // Installed but not answering: who owns what cannot be checked, so nothing is done to it.
  if (facts?.server === 'down') {
    throw new UsageError(`${host}: PostgreSQL is installed but does not answer, so the app's role and database cannot be checked`, {
      hint: 'start it on the server (sudo systemctl start postgresql; its journal says why it stopped), then run the command again',
    });
  }
  const up = facts?.server === 'up';
  const cluster = shared(db);
  const block = hbaBlock(role, db.name, cluster?.clients);
  // Hosts elsewhere log in with a password; alone, the role has none (peer authentication).
  const wanted: Record<keyof RoleAttributes, boolean> = { ...WANTED, password: cluster !== null };
  if (up && facts) {
    const owner = facts.database?.owner;
    if (owner !== undefined && owner !== role) {
      throw new UsageError(`${host}: the database ${db.name} exists and belongs to ${owner}, not to the app's role ${role}`, {
        hint: `stack will not take over a database it did not make. Give it to the app (sudo -u postgres psql -c 'ALTER DATABASE "${db.name}" OWNER TO "${role}"') or set database.name to another name in the inventory (environment ${env})`,
      });
    }
    if (!facts.database && facts.owned.length > 0) {
      const other = facts.owned[0]!;
      throw new UsageError(
        `${host}: the app's role ${role} owns the database ${other}, but the inventory names ${db.name}; stack will not create an empty database beside the one with the data`,
        {
          hint: `to keep using ${other}, set database.name: ${other}. To rename it, stop the app (stack maintenance ${env} on helps), then on the server: sudo -u postgres psql -c 'ALTER DATABASE "${other}" RENAME TO "${db.name}"', and deploy`,
        },
      );
    }
  }
  const wrong = up && facts?.role ? (Object.keys(wanted) as (keyof RoleAttributes)[]).filter((k) => facts.role![k] !== wanted[k]) : [];
  const roleAction: DatabasePlan['roleAction'] = !up || !facts?.role ? { kind: 'create' } : wrong.length > 0 ? { kind: 'alter', wrong } : null;
  const createDatabase = !up || !facts?.database;
  const revokePublic = !createDatabase && facts?.database?.publicConnect === true;
  const current = up ? (facts?.hba?.block ?? '') : '';
  const hba =
    current === block
      ? null
      : { block, file: facts?.hba?.file ?? null, diff: createTwoFilesPatch('pg_hba.conf', 'pg_hba.conf', current, block, '', '', { context: 3 }) };
  if (!roleAction && !createDatabase && !revokePublic && !hba) return null;
  return {
    ...(cluster ? { listen: cluster.listen, passwordFile: cluster.passwordFile } : {}),
    role,
    name: db.name,
    locale: db.locale,
    roleAction,
    createDatabase,
    revokePublic,
    hba,
  };
}

/** The plan's database work as lines for a person (`--dry-run`). */
export function describeDatabase(p: DatabasePlan): string[] {
  const out: string[] = [];
  if (p.roleAction?.kind === 'create')
    out.push(`  create PostgreSQL role ${p.role} (LOGIN, no superuser, no CREATEDB/CREATEROLE, no password: peer authentication)`);
  if (p.roleAction?.kind === 'alter') {
    const fix = p.roleAction.wrong.map((k) => `${ATTRIBUTE_TEXT[k][WANTED[k] ? 1 : 0]} -> ${ATTRIBUTE_TEXT[k][WANTED[k] ? 0 : 1]}`);
    out.push(`  set the attributes of PostgreSQL role ${p.role}: ${fix.join(', ')}`);
  }
  if (p.createDatabase) out.push(`  create database ${p.name} owned by ${p.role} (UTF8, locale ${p.locale}, only its owner may connect)`);
  if (p.revokePublic) out.push(`  only ${p.role} may connect to ${p.name} (revoke CONNECT from PUBLIC)`);
  if (p.hba) out.push(`  pg_hba.conf${p.hba.file ? ` (${p.hba.file})` : ''}: the app's lines, first`, p.hba.diff);
  if (p.listen) out.push(`  PostgreSQL listens on ${p.listen} (the app and worker hosts elsewhere connect with the password in ${p.passwordFile})`);
  return out;
}

/** Each part of the database's work counts as a change. */
export function databaseChanges(p: DatabasePlan | null): number {
  if (!p) return 0;
  return (p.roleAction ? 1 : 0) + (p.createDatabase ? 1 : 0) + (p.revokePublic ? 1 : 0) + (p.hba ? 1 : 0);
}

/** A backup's id: its UTC time to the second and how it was made (`20261201T031500Z-deploy`). */
export function backupId(created: Date | string, kind: 'deploy' | 'manual' | 'restore' | 'timer'): string {
  const iso = (typeof created === 'string' ? new Date(created) : created).toISOString();
  return `${iso.slice(0, 19).replace(/[-:]/g, '')}Z-${kind}`;
}

/**
 * The server hooks of a new release that can change the database (a migration), whose effect a
 * rollback to an earlier release does not undo: those that run as the app's user. Build hooks
 * run as the build user, whom PostgreSQL does not let in.
 */
export function hooksRun(hooks: { before_activate: string[]; after_activate: string[] }): string[] {
  return [...hooks.before_activate, ...hooks.after_activate];
}

/**
 * Whether a deploy backs the database up before its hooks: with `before_deploy_backup`, when a
 * new release runs hooks on a server that already has a live release (before the first one there
 * is nothing of the app's to keep).
 */
export function backsUpBeforeDeploy(db: ResolvedDatabase | null, hooks: string[], hasLive: boolean): boolean {
  return db?.before_deploy_backup === true && hooks.length > 0 && hasLive;
}
