/**
 * `database:`, the pure parts: the inventory's values and their errors, the env file, the app's
 * pg_hba lines, the facts a host reports (fact_database, fact_backups) and what they mean, the
 * plan of the role and database, when a deploy backs up, the rollback's choice about the
 * database, the root scripts built from all of it, and how status and `db backups` show it.
 * The real PostgreSQL is test/e2e/database.test.ts's.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { dbBackupScript, dbRestoreScript, type RestoreTarget, restoreLines } from '../../src/apply/database.js';
import { healthCheckFor } from '../../src/apply/deploy-host.js';
import { type ActivateOptions, activateScript, provisionLines, rollbackScript, type RunContext } from '../../src/apply/scripts.js';
import { databaseChoice, type RollbackOptions } from '../../src/commands/rollback.js';
import { statusOf } from '../../src/commands/status.js';
import { InventoryError, type InventoryProblem, UsageError } from '../../src/errors.js';
import { type BackupFacts, judgeBackups, parseBackups } from '../../src/facts/backups.js';
import { parseDatabase } from '../../src/facts/database.js';
import { parseFacts } from '../../src/facts/host.js';
import type { ReleaseEntry } from '../../src/facts/releases.js';
import type { StatusFacts } from '../../src/facts/status.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Environment, ResolvedDatabase } from '../../src/inventory/resolve.js';
import { backsUpBeforeDeploy, backupId, type DatabasePlan, databaseChanges, describeDatabase, hooksRun, planDatabase } from '../../src/plan/database.js';
import { type Plan, planDeploy } from '../../src/plan/plan.js';
import { migratedSince, type RollbackPlan } from '../../src/plan/rollback.js';
import { Secret } from '../../src/secrets/secret.js';
import { buildDesiredState, type DesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import type { HostRunResult } from '../../src/ui/results.js';
import { backupsText, statusText } from '../../src/ui/text.js';
import { hbaBlock } from '../../src/views/database.js';
import { databaseEnv, envFileContent } from '../../src/views/envfile.js';
import { convergedFacts, SYSTEM_VENV } from '../helpers/plans.js';

// ---------------------------------------------------------------------------------------------
// Inventories
// ---------------------------------------------------------------------------------------------

const FILE = 'inventory.yml';

/**
 * An inventory as text, so that every line number is known: `app` lines (indented two spaces)
 * after name and wsgi, a top-level `database` block, and lines added to environment prod
 * (indented four); a second environment, stage, sets nothing of its own.
 */
function inventoryText(o: { app?: string[]; database?: string[]; prod?: string[] } = {}): string {
  const environment = (name: string, own: string[]) => [`  ${name}:`, '    domains: [blog.example.com]', '    hosts:', '      - address: 203.0.113.10', ...own];
  return `${[
    'app:',
    '  name: blog',
    '  wsgi: blog.wsgi:application',
    ...(o.app ?? []),
    ...(o.database ? ['database:', ...o.database] : []),
    'environments:',
    ...environment('prod', o.prod ?? []),
    ...environment('stage', []),
  ].join('\n')}\n`;
}

const environmentsOf = (text: string) => parseInventory(text, FILE).environments;

/** The problems the loader reports for `text` (the path bad-inventories.test.ts tests); fails the test when it accepts it. */
function refusals(text: string): InventoryProblem[] {
  try {
    parseInventory(text, FILE);
  } catch (err) {
    if (!(err instanceof InventoryError)) throw err;
    expect(err.message).toContain(`${FILE}:`);
    return err.problems;
  }
  return expect.fail(`accepted, but it should be refused:\n${text}`);
}

/** The 1-based line of the one line of `text` that contains `marker`. */
function lineWith(text: string, marker: string): number {
  const hits = text.split('\n').flatMap((line, i) => (line.includes(marker) ? [i + 1] : []));
  expect(hits, `${marker} must be on exactly one line of:\n${text}`).toHaveLength(1);
  return hits[0]!;
}

describe('database: in the inventory', () => {
  it("fills every default of a minimal database: { engine: postgresql }, the name being the app's", () => {
    const { prod, stage } = environmentsOf(inventoryText({ database: ['  engine: postgresql'] }));
    const expected: ResolvedDatabase = {
      engine: 'postgresql',
      name: 'blog',
      locale: 'C.UTF-8',
      backups: { on: 'daily', keep: 7 },
      before_deploy_backup: true,
    };
    expect(prod!.database).toEqual(expected);
    expect(stage!.database).toEqual(expected);
  });

  it('is null without database:', () => {
    expect(environmentsOf(inventoryText()).prod!.database).toBeNull();
  });

  it("takes an environment's own values over the top-level ones, and an environment may add one the top does not have", () => {
    const overridden = environmentsOf(
      inventoryText({
        database: ['  name: blog_main', '  locale: en_US.UTF-8'],
        prod: ['    database:', '      name: blog_prod', '      before_deploy_backup: false'],
      }),
    );
    expect(overridden.prod!.database).toMatchObject({ name: 'blog_prod', locale: 'en_US.UTF-8', before_deploy_backup: false });
    expect(overridden.stage!.database).toMatchObject({ name: 'blog_main', locale: 'en_US.UTF-8', before_deploy_backup: true });

    const added = environmentsOf(inventoryText({ prod: ['    database: { backups: { keep: 3 } }'] }));
    expect(added.prod!.database).toEqual({
      engine: 'postgresql',
      name: 'blog',
      locale: 'C.UTF-8',
      backups: { on: 'daily', keep: 3 },
      before_deploy_backup: true,
    });
    expect(added.stage!.database).toBeNull();
  });

  // The environment's `backups` is partial too: its defaults must not overwrite the top's values.
  it.each([
    ['keep: 30', 'on', { on: 'weekly', keep: 30 }],
    ['on: hourly', 'keep', { on: 'hourly', keep: 14 }],
  ])("an environment's backups: { %s } keeps the top-level %s", (own, _kept, expected) => {
    const text = inventoryText({ database: ['  backups: { on: weekly, keep: 14 }'], prod: [`    database: { backups: { ${own} } }`] });
    const { prod, stage } = environmentsOf(text);
    expect(stage!.database!.backups).toEqual({ on: 'weekly', keep: 14 });
    expect(prod!.database!.backups).toEqual(expected);
  });

  // The role (PGUSER) is the environment's app; its database must not be another environment's.
  it('names the database after the app as the environment names it', () => {
    const { prod } = environmentsOf(inventoryText({ database: ['  engine: postgresql'], prod: ['    app:', '      name: blog-staging'] }));
    expect(prod!.app.name).toBe('blog-staging');
    expect(prod!.database!.name).toBe('blog-staging');
  });

  const BAD: [string, string, string][] = [
    ['engine: mysql', 'engine', 'must be postgresql'],
    ['name: Blog', 'name', '"Blog" is not a valid database name'],
    [`name: ${'b'.repeat(42)}`, 'name', 'at most 41 characters'],
    ['backups: { keep: 0 }', 'backups.keep', 'keep must be at least 1'],
    ['backups: { on: "25:00" }', 'backups.on', 'hour 25 is out of range'],
    ['before_deploy_backup: "yes"', 'before_deploy_backup', 'must be true or false'],
  ];

  it.each(BAD)('refuses %s at the top level: one problem, at its line, naming the field', (entry, field, text) => {
    const source = inventoryText({ database: [`  ${entry}`] });
    const problems = refusals(source);
    expect(problems).toEqual([
      { file: FILE, line: lineWith(source, entry), column: expect.any(Number), field: `database.${field}`, message: expect.stringContaining(text) },
    ]);
  });

  it.each(BAD)('refuses %s in an environment: one problem, at its line, naming the field', (entry, field, text) => {
    const source = inventoryText({ prod: ['    database:', `      ${entry}`] });
    const problems = refusals(source);
    expect(problems).toEqual([
      {
        file: FILE,
        line: lineWith(source, entry),
        column: expect.any(Number),
        field: `environments.prod.database.${field}`,
        message: expect.stringContaining(text),
      },
    ]);
  });

  it('takes a name of 41 characters, the most a suffix such as __restoring leaves room for', () => {
    const name = 'b'.repeat(41);
    expect(environmentsOf(inventoryText({ database: [`  name: ${name}`] })).prod!.database!.name).toBe(name);
  });

  const VARIABLES = ['DATABASE_URL', 'PGHOST', 'PGDATABASE', 'PGUSER'];
  const placements = VARIABLES.flatMap((name) => [
    { name, where: 'app.env', lines: ['  env:', `    ${name}: postgresql://elsewhere/blog`], field: `app.env.${name}` },
    { name, where: 'app.secrets', lines: ['  secrets:', '    - SECRET_KEY', `    - ${name}`], field: 'app.secrets[1]' },
  ]);

  it.each(placements)('refuses $name in $where with database:, at that entry', ({ name, lines, field }) => {
    const source = inventoryText({ app: lines, database: ['  engine: postgresql'] });
    const problems = refusals(source);
    // Both environments inherit it; the problem is the one entry, reported once.
    expect(problems).toEqual([
      {
        file: FILE,
        line: lineWith(source, name),
        column: expect.any(Number),
        field,
        message: expect.stringContaining(`${name}: stack sets it from database:`),
      },
    ]);
  });

  it.each(placements)('leaves $name in $where alone without database:', ({ name, lines }) => {
    const { prod } = environmentsOf(inventoryText({ app: lines }));
    expect([...Object.keys(prod!.app.env), ...prod!.app.secrets]).toContain(name);
    expect(prod!.database).toBeNull();
  });

  it('refuses an inherited DATABASE_URL only in the environment that adds database:, and at the line that sets it', () => {
    const source = inventoryText({ app: ['  env:', '    DATABASE_URL: postgresql://db.internal/blog'], prod: ['    database: { engine: postgresql }'] });
    const problems = refusals(source);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ line: lineWith(source, 'DATABASE_URL'), field: 'app.env.DATABASE_URL' });
  });

  it("refuses PGUSER set by an environment at the environment's line, and accepts an environment that removes an inherited one", () => {
    const own = inventoryText({ database: ['  engine: postgresql'], prod: ['    app:', '      env: { PGUSER: someone }'] });
    expect(refusals(own)).toEqual([expect.objectContaining({ line: lineWith(own, 'PGUSER'), field: 'environments.prod.app.env.PGUSER' })]);

    const removed = inventoryText({
      app: ['  env:', '    PGUSER: someone', '  secrets: [DATABASE_URL]'],
      prod: ['    database: { engine: postgresql }', '    app:', '      env: { PGUSER: null }', '      secrets: [-DATABASE_URL]'],
    });
    expect(environmentsOf(removed).prod!.database).not.toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// The env file and pg_hba.conf
// ---------------------------------------------------------------------------------------------

/** Environment prod of an inventory with these sections (app: blog with hooks, one host) as a document. */
function environment(sections: { database?: Record<string, unknown>; app?: Record<string, unknown> } = {}): Environment {
  const doc = {
    app: { name: 'blog', wsgi: 'blog.wsgi:application', secrets: ['SECRET_KEY'], ...sections.app },
    hooks: { build: ['python manage.py collectstatic --noinput'], before_activate: ['python manage.py migrate'], after_activate: ['echo "it\'s live"'] },
    ...(sections.database ? { database: sections.database } : {}),
    environments: { prod: { domains: ['blog.example.com'], hosts: [{ address: '192.0.2.1' }] } },
  };
  return parseInventory(stringify(doc), FILE).environments.prod!;
}

const withDb = environment({ database: { engine: 'postgresql', name: 'blog_db' } });
const withoutDb = environment();

describe('the env file', () => {
  it('tells the app where its database is: over the unix socket, as its own user', () => {
    expect(databaseEnv(withDb)).toEqual({
      DATABASE_URL: 'postgresql:///blog_db?host=/var/run/postgresql',
      PGHOST: '/var/run/postgresql',
      PGDATABASE: 'blog_db',
      PGUSER: 'blog',
    });
    const text = envFileContent(withDb).toString();
    expect(text).toContain('\nDATABASE_URL="postgresql:///blog_db?host=/var/run/postgresql"\n');
    expect(text).toContain('\nPGHOST="/var/run/postgresql"\n');
    expect(text).toContain('\nPGDATABASE="blog_db"\n');
    expect(text).toContain('\nPGUSER="blog"\n');
  });

  it('says nothing of a database without database:', () => {
    expect(databaseEnv(withoutDb)).toEqual({});
    expect(envFileContent(withoutDb).toString()).not.toMatch(/^(DATABASE_URL|PGHOST|PGDATABASE|PGUSER)=/m);
  });
});

interface Connection {
  type: 'local' | 'host';
  db: string;
  user: string;
}

/**
 * The method of the first rule of `block` that matches a connection (pg_hba.conf: the first match
 * decides), or null when none does. Unquoted keywords mean what PostgreSQL makes of them: all,
 * sameuser and samerole (a role is taken to be a member of itself only), and replication, which
 * no ordinary connection matches; a quoted name is only that name.
 */
function firstMatch(block: string, c: Connection): string | null {
  const quoted = (token: string) => /^".*"$/.test(token);
  const dbMatches = (db: string) =>
    quoted(db)
      ? db.slice(1, -1) === c.db
      : db === 'all' || ((db === 'sameuser' || db === 'samerole') && c.db === c.user) || (db !== 'replication' && db === c.db);
  const userMatches = (user: string) => (quoted(user) ? user.slice(1, -1) === c.user : user === 'all' || user === c.user);
  for (const line of block.split('\n').filter(Boolean)) {
    const [type, db, user, ...rest] = line.split(/\s+/);
    if (type === c.type && dbMatches(db!) && userMatches(user!)) return rest.at(-1)!;
  }
  return null;
}

describe("the app's pg_hba.conf lines", () => {
  it('are these, columns aligned', () => {
    expect(hbaBlock('blog', 'blog')).toBe(
      [
        'local   blog            blog                            peer',
        'local   blog            postgres                        peer',
        'local   all             blog                            reject',
        'host    all             blog            all             reject',
        'local   blog            all                             reject',
        'host    blog            all             all             reject',
        '',
      ].join('\n'),
    );
  });

  it("put the app's peer line before every reject", () => {
    const lines = hbaBlock('blog', 'blog_db').split('\n');
    const peer = lines.indexOf('local   blog_db         blog                            peer');
    expect(peer).toBe(0);
    lines.forEach((line, i) => {
      if (line.endsWith('reject')) expect(i).toBeGreaterThan(peer);
    });
  });

  it.each<[Connection, string | null]>([
    [{ type: 'local', db: 'blog_db', user: 'blog' }, 'peer'],
    [{ type: 'local', db: 'blog_db', user: 'postgres' }, 'peer'],
    [{ type: 'host', db: 'blog_db', user: 'blog' }, 'reject'],
    [{ type: 'local', db: 'postgres', user: 'blog' }, 'reject'],
    [{ type: 'local', db: 'shop', user: 'blog' }, 'reject'],
    [{ type: 'local', db: 'blog_db', user: 'shop' }, 'reject'],
    [{ type: 'host', db: 'blog_db', user: 'postgres' }, 'reject'],
    // Everything else is left to the rules after the block.
    [{ type: 'local', db: 'shop', user: 'shop' }, null],
    [{ type: 'local', db: 'postgres', user: 'postgres' }, null],
  ])('decide %o: %s', (connection, method) => {
    expect(firstMatch(hbaBlock('blog', 'blog_db'), connection)).toBe(method);
  });

  // Names go into pg_hba.conf as they are: its keywords would make the app's lines decide for
  // every other app (`local all all reject`), so they are refused, located.
  it.each([
    ['blog', 'all', 'database.name'],
    ['blog', 'sameuser', 'database.name'],
    ['blog', 'samerole', 'database.name'],
    ['blog', 'replication', 'database.name'],
    ['blog', 'template1', 'database.name'],
    ['all', 'blog_db', 'app.name'],
    ['public', 'blog_db', 'app.name'],
  ])('refuses the app %s with its database %s, at %s', (app, name, field) => {
    const problems = refusals(inventoryText({ database: [`  name: ${name}`] }).replace('  name: blog\n', `  name: ${app}\n`));
    expect(problems).toEqual([expect.objectContaining({ field, message: expect.stringContaining('means something else to PostgreSQL') })]);
  });
});

// ---------------------------------------------------------------------------------------------
// Facts: fact_database and fact_backups (src/remote/sh/facts.sh)
// ---------------------------------------------------------------------------------------------

const HBA_FILE = '/etc/postgresql/15/main/pg_hba.conf';
const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

/** fact_database's records for a server that is up: its parts as given, the rest as on a server where all is right. */
function pgUp(o: { role?: string; db?: string; owned?: string[]; hba?: string; previous?: boolean } = {}): string {
  return [
    'pg\tup\t15',
    `pgrole\tblog\t${o.role ?? 'f\tf\tf\tt\tf\tf\tf'}`,
    `pgdb\tblog\t${o.db ?? 'blog\tUTF8\tC.UTF-8\tf'}`,
    ...(o.owned ?? []).map((name) => `pgowned\t${name}`),
    `pghba\t${HBA_FILE}\t${b64(o.hba ?? hbaBlock('blog', 'blog'))}`,
    ...(o.previous ? ['pgprevious\tblog__previous'] : []),
  ].join('\n');
}

describe('the database facts', () => {
  it('are null when not asked', () => {
    expect(parseDatabase('nginx\t1.22.1\ncpus\t2')).toBeNull();
  });

  it.each([
    ['absent', 'pg\tabsent\t-'],
    ['down', 'pg\tdown\t-'],
  ])('say when PostgreSQL is %s, and nothing more', (server, output) => {
    expect(parseDatabase(output)).toEqual({ server, version: null, role: null, database: null, owned: [], hba: null, previous: false });
  });

  it("read a server that is up: its version, the role, the database, pg_hba.conf and the app's block in it", () => {
    expect(parseDatabase(pgUp())).toEqual({
      server: 'up',
      version: 15,
      role: { super: false, createdb: false, createrole: false, login: true, password: false, replication: false, bypassrls: false },
      database: { owner: 'blog', encoding: 'UTF8', collate: 'C.UTF-8', publicConnect: false },
      owned: [],
      hba: { file: HBA_FILE, block: hbaBlock('blog', 'blog') },
      previous: false,
    });
  });

  it('read each role attribute from its own column', () => {
    const names = ['super', 'createdb', 'createrole', 'login', 'password', 'replication', 'bypassrls'] as const;
    names.forEach((name, i) => {
      const columns = names.map((_, j) => (j === i ? 't' : 'f')).join('\t');
      const role = parseDatabase(pgUp({ role: columns }))!.role!;
      expect(Object.entries(role).filter(([, on]) => on)).toEqual([[name, true]]);
    });
  });

  it('read a missing role and database as null, other databases the role owns, an empty block, and a kept previous database', () => {
    const facts = parseDatabase(pgUp({ role: '-', db: '-', owned: ['blog_old', 'blog_staging'], hba: '', previous: true }))!;
    expect(facts).toMatchObject({ role: null, database: null, owned: ['blog_old', 'blog_staging'], hba: { file: HBA_FILE, block: '' }, previous: true });
  });

  it('read an owner other than the app and a database anyone may connect to', () => {
    expect(parseDatabase(pgUp({ db: 'postgres\tSQL_ASCII\ten_US.UTF-8\tt' }))!.database).toEqual({
      owner: 'postgres',
      encoding: 'SQL_ASCII',
      collate: 'en_US.UTF-8',
      publicConnect: true,
    });
  });

  it("come with the host's facts, asked in the same round trip", () => {
    expect(parseFacts(`nginx\t1.22.1\n${pgUp({ previous: true })}`).database).toMatchObject({ server: 'up', previous: true });
    expect(parseFacts('nginx\t1.22.1').database).toBeNull();
  });
});

const T0 = 1_796_000_000; // 2026-11-30T00:53:20Z

/** fact_backups's records: backups (ID CREATED KIND [TABLES]), a recorded failure, the timer. */
function backupsOutput(o: { backups?: [string, number, string, string?][]; failure?: [number, string]; timer?: string | null }): string {
  return [
    ...(o.backups ?? []).map(([id, created, kind, tables]) => `backup\t${id}\t123456\t${created}\t${kind}\t${tables ?? '-'}\t2.5`),
    ...(o.failure ? [`backupfail\t${o.failure[0]}\t${b64(`${o.failure[1]}\n`)}`] : []),
    ...(o.timer === null ? [] : [`backuptimer\t${o.timer ?? 'Tue 2026-12-01 00:00:00 UTC'}\tMon 2026-11-30 00:00:03 UTC\tsuccess`]),
  ].join('\n');
}

describe('the backups and whether they can be trusted', () => {
  const now = new Date((T0 + 3600) * 1000);

  it('are listed newest first, whatever order the records came in, with what each record says', () => {
    const f = parseBackups(
      backupsOutput({
        backups: [
          ['20261129T000000Z-timer', T0 - 86400, 'timer', '12'],
          ['20261130T080000Z-deploy', T0, 'deploy'],
          ['20261128T000000Z-timer', T0 - 2 * 86400, 'timer', '12'],
        ],
      }),
    );
    expect(f.backups.map((b) => b.id)).toEqual(['20261130T080000Z-deploy', '20261129T000000Z-timer', '20261128T000000Z-timer']);
    expect(f.backups[0]).toEqual({ id: '20261130T080000Z-deploy', bytes: 123456, created: T0, kind: 'deploy', tables: null, seconds: 2.5 });
    expect(f.backups[1]!.tables).toBe(12);
    expect(f.failure).toBeNull();
    expect(f.timer).toEqual({ next: 'Tue 2026-12-01 00:00:00 UTC', last: 'Mon 2026-11-30 00:00:03 UTC', result: 'success' });
    expect(judgeBackups(f, now)).toEqual({
      newest: { id: '20261130T080000Z-deploy', kind: 'deploy', ageSeconds: 3600 },
      failure: null,
      next: 'Tue 2026-12-01 00:00:00 UTC',
      ok: true,
      problem: null,
    });
  });

  it('are not trusted after a failure later than the newest backup, whatever the timer says', () => {
    const f = parseBackups(backupsOutput({ backups: [['B1', T0 - 60, 'timer', '3']], failure: [T0, 'pg_dump: error: connection failed\nexit 1'] }));
    expect(f.failure).toEqual({ at: T0, reason: 'pg_dump: error: connection failed\nexit 1' });
    const v = judgeBackups(f, now);
    expect(v.ok).toBe(false);
    expect(v.failure).toEqual({ at: new Date(T0 * 1000).toISOString(), reason: 'pg_dump: error: connection failed\nexit 1', current: true });
    expect(v.problem).toBe(`the last backup FAILED at ${new Date(T0 * 1000).toISOString()}`);
  });

  it('count a failure in the same second as the newest backup as current', () => {
    expect(judgeBackups(parseBackups(backupsOutput({ backups: [['B1', T0, 'timer']], failure: [T0, 'x'] })), now).failure!.current).toBe(true);
  });

  it('are trusted again once a backup succeeded after the failure, which stays on record', () => {
    const v = judgeBackups(parseBackups(backupsOutput({ backups: [['B2', T0 + 1, 'timer']], failure: [T0, 'disk full'] })), now);
    expect(v).toMatchObject({ ok: true, problem: null, failure: { current: false, reason: 'disk full' } });
  });

  it('are not trusted when only a backup by hand or by a deploy came after the failure: the timer still fails', () => {
    for (const kind of ['manual', 'deploy']) {
      const v = judgeBackups(parseBackups(backupsOutput({ backups: [['B2', T0 + 1, kind]], failure: [T0, 'disk full'] })), now);
      expect(v, kind).toMatchObject({ ok: false, failure: { current: true } });
    }
  });

  it.each([
    ['a timer with no next run', '-'],
    ['no timer at all', null],
  ])('are not trusted with %s', (_, timer) => {
    const v = judgeBackups(parseBackups(backupsOutput({ backups: [['B1', T0, 'timer']], timer })), now);
    expect(v).toMatchObject({ ok: false, next: null, problem: 'the backup timer is not scheduled' });
  });

  it('are trusted before the first backup when nothing failed and the timer is scheduled', () => {
    const f = parseBackups(backupsOutput({}));
    expect(f).toMatchObject({ backups: [], failure: null });
    expect(judgeBackups(f, now)).toMatchObject({ newest: null, failure: null, ok: true, problem: null });
  });

  it('are not trusted when the only thing there is a failure', () => {
    const v = judgeBackups(parseBackups(backupsOutput({ failure: [T0, 'role "blog" does not exist'] })), now);
    expect(v).toMatchObject({ newest: null, ok: false, failure: { current: true } });
  });
});

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

const DB = withDb.database!;
const at = { role: 'blog', host: '192.0.2.1', env: 'prod' };
const plannedFrom = (output: string | null) => planDatabase({ db: DB, facts: output === null ? null : parseDatabase(output), ...at });

/** fact_database's records for the fixture's database blog_db, all as it should be. */
const rightDb = (o: Parameters<typeof pgUp>[0] = {}) => pgUp({ hba: hbaBlock('blog', 'blog_db'), ...o }).replace('pgdb\tblog\t', 'pgdb\tblog_db\t');

/** The UsageError `fn` throws; fails the test when it throws none. */
function usageErrorOf(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }
  return expect.fail('no UsageError was thrown');
}

describe('the plan of the role, the database and the pg_hba lines', () => {
  it.each([
    ['a server without PostgreSQL', 'pg\tabsent\t-'],
    ['facts not asked', null],
  ])('makes everything on %s', (_, output) => {
    const p = plannedFrom(output)!;
    expect(p).toMatchObject({
      role: 'blog',
      name: 'blog_db',
      locale: 'C.UTF-8',
      roleAction: { kind: 'create' },
      createDatabase: true,
      revokePublic: false,
    });
    expect(p.hba).toMatchObject({ block: hbaBlock('blog', 'blog_db') });
    expect(p.hba!.diff).toContain('+local   blog_db         blog                            peer');
    expect(databaseChanges(p)).toBe(3);
    const text = describeDatabase(p);
    expect(text.slice(0, 3)).toEqual([
      '  create PostgreSQL role blog (LOGIN, no superuser, no CREATEDB/CREATEROLE, no password: peer authentication)',
      '  create database blog_db owned by blog (UTF8, locale C.UTF-8, only its owner may connect)',
      `  pg_hba.conf: the app's lines, first`,
    ]);
  });

  it('refuses a PostgreSQL that is installed but does not answer: who owns what cannot be checked', () => {
    const err = usageErrorOf(() => plannedFrom('pg\tdown\t-'));
    expect(err.message).toContain('PostgreSQL is installed but does not answer');
    expect(err.hint).toContain('systemctl start postgresql');
  });

  it('plans nothing when all is as it should be', () => {
    expect(plannedFrom(rightDb())).toBeNull();
    expect(databaseChanges(null)).toBe(0);
  });

  it.each<[string, string, DatabasePlan['roleAction'], string]>([
    ['f\tf\tf\tt\tt\tf\tf', 'a password', { kind: 'alter', wrong: ['password'] }, 'a password -> no password'],
    ['t\tf\tf\tt\tf\tf\tf', 'superuser', { kind: 'alter', wrong: ['super'] }, 'SUPERUSER -> NOSUPERUSER'],
    [
      't\tt\tt\tf\tt\tt\tt',
      'every attribute wrong',
      { kind: 'alter', wrong: ['login', 'super', 'createdb', 'createrole', 'replication', 'bypassrls', 'password'] },
      'NOLOGIN -> LOGIN, SUPERUSER -> NOSUPERUSER, CREATEDB -> NOCREATEDB, CREATEROLE -> NOCREATEROLE, REPLICATION -> NOREPLICATION, BYPASSRLS -> NOBYPASSRLS, a password -> no password',
    ],
    ['-', 'no role', { kind: 'create' }, 'create PostgreSQL role blog'],
  ])('sets the role right when it has %s: %s', (role, _, action, text) => {
    const p = plannedFrom(rightDb({ role }))!;
    expect(p.roleAction).toEqual(action);
    expect(p).toMatchObject({ createDatabase: false, revokePublic: false, hba: null });
    expect(databaseChanges(p)).toBe(1);
    expect(describeDatabase(p).join('\n')).toContain(action!.kind === 'alter' ? `  set the attributes of PostgreSQL role blog: ${text}` : text);
  });

  it('takes CONNECT away from PUBLIC on a database that has it', () => {
    const p = plannedFrom(rightDb({ db: 'blog\tUTF8\tC.UTF-8\tt' }))!;
    expect(p).toMatchObject({ roleAction: null, createDatabase: false, revokePublic: true, hba: null });
    expect(describeDatabase(p)).toEqual(['  only blog may connect to blog_db (revoke CONNECT from PUBLIC)']);
    expect(databaseChanges(p)).toBe(1);
  });

  it('creates a missing database (never revoking on one it creates) and counts each part once', () => {
    const p = plannedFrom(rightDb({ db: '-', role: 't\tf\tf\tt\tf\tf\tf', hba: 'local all all trust\n' }))!;
    expect(p).toMatchObject({ roleAction: { kind: 'alter', wrong: ['super'] }, createDatabase: true, revokePublic: false });
    expect(databaseChanges(p)).toBe(3);
  });

  it("shows the change of the app's block in pg_hba.conf as a diff, naming the file", () => {
    const old = hbaBlock('blog', 'blog_db').replace(
      'local   blog_db         blog                            peer',
      'local   blog_db         blog                            md5',
    );
    const p = plannedFrom(rightDb({ hba: old }))!;
    expect(p.hba).toMatchObject({ file: HBA_FILE, block: hbaBlock('blog', 'blog_db') });
    expect(p.hba!.diff).toContain('-local   blog_db         blog                            md5');
    expect(p.hba!.diff).toContain('+local   blog_db         blog                            peer');
    expect(describeDatabase(p)).toEqual([`  pg_hba.conf (${HBA_FILE}): the app's lines, first`, p.hba!.diff]);
    expect(databaseChanges(p)).toBe(1);
  });

  it('refuses a database that belongs to someone else, with the ALTER DATABASE ... OWNER that gives it to the app', () => {
    const err = usageErrorOf(() => plannedFrom(rightDb({ db: 'postgres\tUTF8\tC.UTF-8\tf' })));
    expect(err.message).toBe("192.0.2.1: the database blog_db exists and belongs to postgres, not to the app's role blog");
    expect(err.hint).toContain(`sudo -u postgres psql -c 'ALTER DATABASE "blog_db" OWNER TO "blog"'`);
    expect(err.hint).toContain('(environment prod)');
  });

  it("refuses to make an empty database beside the one the app's role owns, naming both and how to rename", () => {
    const err = usageErrorOf(() => plannedFrom(rightDb({ db: '-', owned: ['blog_old'] })));
    expect(err.message).toContain("the app's role blog owns the database blog_old, but the inventory names blog_db");
    expect(err.hint).toContain('set database.name: blog_old');
    expect(err.hint).toContain(`ALTER DATABASE "blog_old" RENAME TO "blog_db"`);
    // With the named database there, the others it owns are left alone.
    expect(plannedFrom(rightDb({ owned: ['blog_old'] }))).toBeNull();
  });
});

describe('backups around a deploy', () => {
  it.each([
    ['2026-12-01T03:15:07.123Z', 'deploy', '20261201T031507Z-deploy'],
    ['2026-01-02T00:00:00Z', 'timer', '20260102T000000Z-timer'],
  ] as const)('names the backup of %s, %s: %s', (created, kind, id) => {
    expect(backupId(created, kind)).toBe(id);
    expect(backupId(new Date(created), kind)).toBe(id);
  });

  it("counts the hooks that run as the app's user, not the build hooks (PostgreSQL does not let the build user in)", () => {
    expect(hooksRun({ before_activate: ['migrate'], after_activate: ['warm'] })).toEqual(['migrate', 'warm']);
    expect(withDb.hooks.build).toEqual(['python manage.py collectstatic --noinput']);
    expect(hooksRun(withDb.hooks)).toEqual(['python manage.py migrate', `echo "it's live"`]);
    expect(hooksRun({ ...withDb.hooks, before_activate: [], after_activate: [] })).toEqual([]);
  });

  const off = { ...DB, before_deploy_backup: false };
  it.each([
    ['with hooks to run over a live release', DB, ['migrate'], true, true],
    ['not before the first release', DB, ['migrate'], false, false],
    ['not when no hook runs', DB, [], true, false],
    ['not with before_deploy_backup: false', off, ['migrate'], true, false],
    ['not without database:', null, ['migrate'], true, false],
  ])('backs up before the hooks %s', (_, db, run, hasLive, expected) => {
    expect(backsUpBeforeDeploy(db, run, hasLive)).toBe(expected);
  });
});

// ---------------------------------------------------------------------------------------------
// Rollback past a migration
// ---------------------------------------------------------------------------------------------

const release = (id: string, live: boolean, manifest: Partial<NonNullable<ReleaseEntry['manifest']>> | null): ReleaseEntry => ({
  id,
  live,
  hasConfig: true,
  manifest: manifest && { id, source_hash: 'h', created: '', by: '', ...manifest },
});

describe('the release a rollback goes past that ran hooks', () => {
  const releases = [
    release('r1', false, { hooks: ['migrate'] }),
    release('r2', false, {}),
    release('r3', false, null),
    release('r4', false, { hooks: ['migrate'], db_backup: 'B4' }),
    release('r5', true, { hooks: ['migrate'], db_backup: 'B5' }),
  ];

  it.each([
    ['r1', 'r5', { release: 'r4', hooks: ['migrate'], backup: 'B4' }],
    ['r4', 'r5', { release: 'r5', hooks: ['migrate'], backup: 'B5' }],
    // Releases made before stack recorded hooks, and incomplete ones, count as none.
    ['r1', 'r3', null],
    ['r2', null, null],
    ['r5', 'r2', null],
  ])('from %s back from %s: %o', (target, live, expected) => {
    expect(migratedSince(releases, target, live)).toEqual(expected);
  });
});

describe('the database in a rollback past a migration', () => {
  const migrated = (backup: string | null): RollbackPlan => ({
    target: 'r1',
    live: 'r3',
    steps: [],
    migrated: { release: 'r2', hooks: ['python manage.py migrate'], backup },
  });
  const plain: RollbackPlan = { target: 'r1', live: 'r3', steps: [], migrated: null };

  async function choose(
    plan: RollbackPlan,
    env: Environment,
    options: RollbackOptions,
    kept: ReadonlySet<string> | null = null,
  ): Promise<{ choice: string | null; said: string }> {
    const said: string[] = [];
    const choice = await databaseChoice(plan, env, options, '192.0.2.1', (text) => said.push(text), kept);
    return { choice, said: said.join('\n') };
  }

  async function refusal(plan: RollbackPlan, options: RollbackOptions): Promise<UsageError> {
    return refusalOf(plan, withDb, options);
  }

  async function refusalOf(plan: RollbackPlan, env: Environment, options: RollbackOptions, kept: ReadonlySet<string> | null = null): Promise<UsageError> {
    const err = await choose(plan, env, options, kept).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UsageError);
    return err as UsageError;
  }

  it('leaves the database alone when no release since the target ran hooks', async () => {
    expect(await choose(plain, withDb, {})).toEqual({ choice: null, said: '' });
    const asked = await choose(plain, withDb, { restoreDb: true });
    expect(asked.choice).toBeNull();
    expect(asked.said).toContain('no release since r1 ran server hooks: the database is left as it is');
  });

  it('refuses --restore-db without database: (stack has no backup to restore)', async () => {
    const err = await refusalOf(migrated('B2'), withoutDb, { restoreDb: true });
    expect(err.message).toContain('--restore-db restores a database stack manages');
  });

  it('says a backup pruned since is gone, and will not restore it', async () => {
    const err = await refusalOf(migrated('B2'), withDb, { restoreDb: true }, new Set(['B3']));
    expect(err.message).toContain('backup B2 was taken right before them but is gone since (backups.keep)');
  });

  it("only says so when the database is not stack's", async () => {
    const { choice, said } = await choose(migrated('B2'), withoutDb, {});
    expect(choice).toBeNull();
    expect(said).toContain('note: release r2 ran server hooks after r1 (python manage.py migrate)');
    expect(said).toContain("The database is not stack's");
  });

  it('keeps the database with --keep-db', async () => {
    const { choice, said } = await choose(migrated('B2'), withDb, { keepDb: true });
    expect(choice).toBeNull();
    expect(said).toContain('the database is kept as it is (--keep-db)');
  });

  it('restores the backup taken before the hooks with --restore-db', async () => {
    expect(await choose(migrated('B2'), withDb, { restoreDb: true })).toEqual({ choice: 'B2', said: '' });
  });

  it('refuses --restore-db when no backup was taken before the hooks', async () => {
    const err = await refusal(migrated(null), { restoreDb: true });
    expect(err.message).toContain('no backup was taken before them (before_deploy_backup was off)');
    expect(err.hint).toContain('--keep-db');
  });

  it('asks for a choice on the command line when there is no terminal', async () => {
    expect(process.stdin.isTTY && process.stdout.isTTY).toBeFalsy();
    const err = await refusal(migrated('B2'), {});
    expect(err.message).toContain('release r2 ran server hooks after r1');
    expect(err.message).toContain('backup B2 was taken right before them');
    expect(err.hint).toContain('--restore-db (restore B2 with the code');
    expect(err.hint).toContain('--keep-db');
  });

  it('decides nothing in a dry run, and names both choices', async () => {
    const { choice, said } = await choose(migrated('B2'), withDb, { dryRun: true });
    expect(choice).toBeNull();
    expect(said).toContain('--restore-db');
    expect(said).toContain('--keep-db');
  });
});

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

const LIVE = '20261130T120000.000Z';
const NEW = '20261201T000000.000Z';
const BACKUP = backupId('2026-12-01T00:00:00Z', 'deploy');

async function desiredOf(env: Environment): Promise<DesiredState> {
  const secrets = new Map([['SECRET_KEY', new Secret('SECRET_KEY', 'not-a-real-secret')]]);
  return buildDesiredState(env, env.hosts[0]!, { engine: new TemplateEngine('/nonexistent', '/'), facts: { nginxVersion: [1, 22, 1], cpus: 2 }, secrets });
}

/** The script's own lines: those after the library and the frame's set-up. */
function ownLinesOf(script: string): string[] {
  const start = script.indexOf('\ntrap on_exit EXIT\n');
  expect(start).toBeGreaterThan(0);
  return script.slice(start + 1).split('\n');
}

/** The index of the one line that starts with `prefix`. */
function indexOf(lines: string[], prefix: string): number {
  const hits = lines.flatMap((l, i) => (l.startsWith(prefix) ? [i] : []));
  expect(hits, `one line starting with ${prefix}`).toHaveLength(1);
  return hits[0]!;
}

function parsesAsSh(script: string): void {
  // -n: read the whole script, run nothing.
  const r = spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });
  expect(`${r.stderr}exit ${r.status}`).toBe('exit 0');
}

/** The manifest an activation writes, read back from its write_manifest line. */
function manifestOf(lines: string[]): Record<string, unknown> {
  const line = lines.find((l) => l.startsWith('write_manifest '))!;
  const quoted = /^write_manifest \S+ blog '(.*)' \|\| \w+ 'write manifest'$/.exec(line);
  expect(quoted, line).not.toBeNull();
  return JSON.parse(quoted![1]!.replaceAll(`'\\''`, `'`));
}

describe('the scripts of the database', async () => {
  const d = await desiredOf(withDb);
  const { layout } = d;
  const ctx: RunContext = {
    layout,
    lock: { dir: '/var/lib/stack/blog.lock', token: 'token-1' },
    audit: { file: '/var/log/stack/blog.log', who: 'dev@laptop', command: 'deploy prod' },
  };
  const health = healthCheckFor(withDb, false, layout);
  const code = { id: NEW, sourceHash: 'new', requirements: null, venv: SYSTEM_VENV, fileList: ['blog/wsgi.py'] };
  const provisioning = { layout, staticPath: null };

  it('provision the role, the database and the pg_hba lines after the packages, PostgreSQL among them', () => {
    const facts = parseFacts('nginx\t1.22.1\nfree\t10000000\npg\tabsent\t-');
    const database = planDatabase({ db: DB, facts: facts.database, ...at });
    const plan = planDeploy({ desired: d, facts, code, database });
    expect(plan.packages).toContain('postgresql');
    const lines = provisionLines(plan, provisioning);
    const role = indexOf(lines, 'db_role blog ||');
    expect(role).toBeGreaterThan(indexOf(lines, 'install_packages '));
    expect(indexOf(lines, 'db_create blog_db blog C.UTF-8 ||')).toBeGreaterThan(role);
    const hba = indexOf(lines, "db_hba_b64 blog blog_db <<'STACK_HBA' || fail 'pg_hba.conf'");
    const end = lines.indexOf('STACK_HBA', hba);
    expect(Buffer.from(lines.slice(hba + 1, end).join(''), 'base64').toString('utf8')).toBe(hbaBlock('blog', 'blog_db'));
    expect(lines.some((l) => l.startsWith('db_start'))).toBe(false);
    parsesAsSh(activateScript(plan, ctx, { health, provision: lines, managedFiles: [], hooks: withDb.hooks, keep: 5, staticPath: null }));
  });

  it('only revoke CONNECT when that is all there is to do', () => {
    const revoke = provisionLines(
      { ...planDeploy({ desired: d, facts: parseFacts('nginx\t1.22.1') }), database: plannedFrom(rightDb({ db: 'blog\tUTF8\tC.UTF-8\tt' })) },
      provisioning,
    );
    expect(revoke.filter((l) => l.startsWith('db_'))).toEqual(["db_revoke_public blog_db || fail 'restrict who may connect to blog_db'"]);
  });

  describe('activation with a backup before the hooks', () => {
    const newCode = planDeploy({ desired: d, facts: parseFacts(convergedFacts(d, { release: LIVE, sourceHash: 'old' }, d.files[0]!.path)), code });
    const sameCode = planDeploy({ desired: d, facts: parseFacts(convergedFacts(d, { release: LIVE, sourceHash: 'new' }, d.files[0]!.path)), code });
    const backup = { dir: layout.backup_dir, db: 'blog_db', keep: 7, id: BACKUP };
    const options = (plan: Plan, extra: Partial<ActivateOptions> = {}): ActivateOptions => ({
      health,
      managedFiles: d.files.map((f) => f.path),
      hooks: withDb.hooks,
      keep: 5,
      staticPath: null,
      manifest: { by: 'dev@laptop', gitCommit: null, inventoryHash: 'inv', created: '2026-12-01T00:00:00Z' },
      ...extra,
      ...(plan.release ? {} : { manifest: undefined }),
    });

    it('backs up before anything of the release runs, and aborts (the release untouched) when it cannot', () => {
      const script = activateScript(newCode, ctx, options(newCode, { backup }));
      const lines = ownLinesOf(script);
      const backedUp = lines.indexOf(
        `db_backup /var/backups/stack/blog blog_db deploy 7 list ${BACKUP} || abort 'back up the database (the release and its configuration were not changed)'`,
      );
      expect(backedUp).toBeGreaterThan(0);
      // The first hook is a build hook: nothing of the release runs before the backup.
      expect(lines.findIndex((l) => l.startsWith('run_hook '))).toBeGreaterThan(backedUp);
      for (const change of ['install_file ', 'seal_release ', 'switch_current ', 'run_handler ']) {
        expect(
          lines.findIndex((l) => l.startsWith(change)),
          change,
        ).toBeGreaterThan(backedUp);
      }
      parsesAsSh(script);
    });

    it('records the hooks and the backup in the manifest of a new release', () => {
      const lines = ownLinesOf(activateScript(newCode, ctx, options(newCode, { backup })));
      expect(manifestOf(lines)).toMatchObject({
        id: NEW,
        // The build hooks run as the build user, whom PostgreSQL does not let in.
        hooks: ['python manage.py migrate', `echo "it's live"`],
        db_backup: BACKUP,
      });
    });

    it('records a backup the db host took before the hooks, and takes none here', () => {
      for (const plan of [newCode, sameCode]) {
        const lines = ownLinesOf(activateScript(plan, ctx, options(plan, { backedUpElsewhere: '20261201T000000Z-deploy' })));
        expect(lines.some((l) => l.startsWith('db_backup '))).toBe(false);
        expect(manifestOf(lines)).toMatchObject({ db_backup: '20261201T000000Z-deploy' });
      }
    });

    it('records the hooks of a configuration-only release too, and no backup when none was taken', () => {
      expect(sameCode.release?.copyFrom).toBe(LIVE);
      const lines = ownLinesOf(activateScript(sameCode, ctx, options(sameCode)));
      expect(lines.some((l) => l.startsWith('db_backup '))).toBe(false);
      const manifest = manifestOf(lines);
      expect(manifest.hooks).toEqual(['python manage.py migrate', `echo "it's live"`]);
      expect(manifest).not.toHaveProperty('db_backup');
    });
  });

  const target: RestoreTarget = {
    dir: layout.backup_dir,
    db: 'blog_db',
    keep: 7,
    role: 'blog',
    locale: 'C.UTF-8',
    id: BACKUP,
    safetyId: backupId('2026-12-02T10:00:00Z', 'restore'),
    units: ['blog.socket', 'blog.service'],
  };

  it('back up on demand, checked by a full restore', () => {
    const script = dbBackupScript(ctx, { dir: layout.backup_dir, db: 'blog_db', keep: 7, id: 'ID1' });
    expect(ownLinesOf(script)).toContain("db_backup /var/backups/stack/blog blog_db manual 7 full ID1 || fail 'back up the database'");
    parsesAsSh(script);
  });

  it('restore in order: a backup of now, the app stopped, the restore swapped in, the app started and checked', () => {
    const script = dbRestoreScript(ctx, health, target);
    const lines = ownLinesOf(script);
    const order = [
      `db_backup /var/backups/stack/blog blog_db restore 7 list ${target.safetyId} ||`,
      'stop_units ||',
      `db_restore /var/backups/stack/blog blog_db blog C.UTF-8 ${BACKUP} ||`,
      'DB_SWAPPED=1',
      'start_units ||',
      'health_ok ||',
      "audit ok ''",
    ].map((prefix) => indexOf(lines, prefix));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(lines).toContain("DB_NAME=blog_db DB_UNITS='blog.socket blog.service'");
    const swapped = order[3]!;
    const handlers = lines.flatMap((l, i) => (l.includes(' || ') ? [[i, l.split(' || ')[1]!.split(' ')[0]!] as const] : []));
    const before = handlers.filter(([i]) => i >= order[0]! && i < swapped);
    const after = handlers.filter(([i]) => i > swapped);
    expect(before.map(([, h]) => h)).toEqual(['restore_failed', 'restore_failed', 'restore_failed']);
    expect(after.length).toBeGreaterThanOrEqual(2);
    expect(after.every(([, h]) => h === 'undo_db_restore')).toBe(true);
    parsesAsSh(script);
  });

  it('restore within a rollback after its configuration is back and before the app restarts, undone with the rollback', () => {
    const script = rollbackScript(LIVE, ctx, health, restoreLines(target, 'undo_rollback'));
    const lines = ownLinesOf(script);
    const restore = indexOf(lines, 'db_restore ');
    expect(restore).toBeGreaterThan(indexOf(lines, 'systemctl daemon-reload'));
    expect(restore).toBeLessThan(indexOf(lines, 'run_handler '));
    for (const line of lines.slice(indexOf(lines, 'db_backup '), restore + 1).filter((l) => l.includes(' || '))) expect(line).toMatch(/ \|\| undo_rollback /);
    parsesAsSh(script);
  });
});

// ---------------------------------------------------------------------------------------------
// Output: stack status and stack db backups
// ---------------------------------------------------------------------------------------------

const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');

describe('backups as people read them', () => {
  const now = new Date((T0 + 600) * 1000);
  const failing = parseBackups(
    backupsOutput({ backups: [['20261129T000000Z-timer', T0 - 86400, 'timer', '12']], failure: [T0, 'pg_dump: error: disk full\nexit 1'] }),
  );
  const recovered = parseBackups(backupsOutput({ backups: [['20261130T080000Z-timer', T0 + 60, 'timer', '12']], failure: [T0, 'pg_dump: error: disk full'] }));
  const text = (f: BackupFacts) =>
    plain(backupsText({ host: '192.0.2.1', dir: '/var/backups/stack/blog', backups: f.backups, verdict: judgeBackups(f, now), timer: f.timer }));

  it('put a current failure first, loudly, with its reason', () => {
    const t = text(failing);
    expect(t.split('\n')[0]).toBe('192.0.2.1  /var/backups/stack/blog  NOT OK');
    expect(t).toContain(
      `  LAST BACKUP FAILED at ${new Date(T0 * 1000).toISOString()} (the timer's; none of its backups succeeded since)\n    pg_dump: error: disk full\n    exit 1\n`,
    );
    expect(t).toContain('restored, 12 tables');
  });

  it("keep an old failure on record, saying the timer's backup succeeded since", () => {
    const t = text(recovered);
    expect(t.split('\n')[0]).toMatch(/ ok$/);
    expect(t).toContain(`  last failure ${new Date(T0 * 1000).toISOString()} (the timer's backup succeeded since)`);
    expect(t).not.toContain('LAST BACKUP FAILED');
  });

  it('say how to take the first one', () => {
    expect(text(parseBackups(backupsOutput({})))).toContain('no backups yet: `stack db backup ENV` takes one now');
  });

  describe('in stack status', () => {
    const facts = (backups: BackupFacts | null): StatusFacts => ({
      units: [{ name: 'blog.service', active: 'active', sub: 'running', seconds: 60 }],
      probe: { code: '200', seconds: 0.01 },
      disk: [],
      maintenance: false,
      releases: [release(LIVE, true, { created: '2026-11-30T12:00:00.000Z' })],
      lastAudit: null,
      certs: null,
      backups,
    });
    const status = (env: Environment, backups: BackupFacts | null) =>
      statusOf(env, { host: '192.0.2.1', changes: 0, execs: 1, ms: 100, lockHolder: null, status: facts(backups) } as unknown as HostRunResult, now);

    it('turn the host NOT OK while the last backup failed', () => {
      const s = status(withDb, failing);
      expect(s).toMatchObject({ ok: false, database: { ok: false, failure: { current: true } } });
      const line = plain(statusText(s))
        .split('\n')
        .find((l) => l.startsWith('  backups'));
      expect(line).toBe(
        `  backups      FAILED at ${new Date(T0 * 1000).toISOString()}: exit 1 (newest 20261129T000000Z-timer (24h ago); stack db backups ENV)`,
      );
    });

    it('show the newest backup and the next run when they can be trusted', () => {
      const s = status(withDb, recovered);
      expect(s.ok).toBe(true);
      expect(plain(statusText(s))).toContain('\n  backups      newest 20261130T080000Z-timer (9m ago), next Tue 2026-12-01 00:00:00 UTC\n');
    });

    it('turn the host NOT OK when the timer is not scheduled', () => {
      const s = status(withDb, parseBackups(backupsOutput({ backups: [['B1', T0, 'timer']], timer: '-' })));
      expect(s.ok).toBe(false);
      expect(plain(statusText(s))).toContain('  backups      the backup timer is not scheduled (newest B1 (10m ago))');
    });

    it('have no line without database:', () => {
      const s = status(withoutDb, null);
      expect(s).toMatchObject({ ok: true, database: null });
      expect(statusText(s)).not.toContain('backups');
    });
  });
});
