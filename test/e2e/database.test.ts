/**
 * PostgreSQL from `database:` on a fresh server, the way a Django user meets it: the project of
 * test/fixtures/django with its inventory from `stack init --yes`, plus `database:` and the
 * Debian packages psycopg2 and dj-database-url. Setup provisions the role, the database and the
 * app's pg_hba lines (shown first by the dry run, changed by nothing the second time); the
 * migration runs against PostgreSQL with no manual step; the role can do nothing beyond its own
 * database and nobody else gets in. Backups by the timer, by hand and before a deploy; listed,
 * pulled, restored after rows were deleted; a broken pg_dump shown loudly by `db backups` and
 * `status`; a rollback across a migration refused without a choice and, with --restore-db,
 * taking rows and schema back. An app that plants code in its own database cannot get it run
 * with more than its own rights by a backup's check or a restore.
 */
import { cpSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { parseSecretsFile } from '../../src/secrets/load.js';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { ROOT, stack, type CliResult } from '../helpers/cli.js';
import { stepTimer } from '../helpers/timing.js';
import { bootSandbox, rootExec, sshExec, TEST_RELEASE, type SandboxInfo } from '../helpers/sandbox.js';

const APP = 'mysite';
const DOMAIN = 'mysite.db.test';

let server: SandboxInfo;
let dir: string;
let secretKey = '';
const { timed, report } = stepTimer('database');

function run(args: string[]): CliResult {
  const r = stack(args, { cwd: dir });
  if (secretKey) expect(r.stdout + r.stderr).not.toContain(secretKey);
  return r;
}

/** One statement as the app's own role, through `stack db psql`; its rows, unaligned. */
function psql(sql: string): string {
  const r = run(['db', 'psql', 'sbx', '--', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
  expect(r.code, `${sql}\n${r.stderr}`).toBe(0);
  return r.stdout.trim();
}

/** As the postgres superuser on the server (what an administrator would check). */
function superuser(sql: string): Promise<string> {
  return rootExec(server, `cd / && runuser -u postgres -- psql -X -At -c ${JSON.stringify(sql)}`);
}

async function about(): Promise<{ engine: string; questions: number; database: string }> {
  const r = await runProgram('curl', ['-s', '-k', '--max-time', '15', '--resolve', `${DOMAIN}:443:${server.address}`, `https://${DOMAIN}/about/`], 20_000);
  return JSON.parse(r.stdout);
}

function editInventory(change: (doc: ReturnType<typeof parseDocument>) => void): void {
  const file = path.join(dir, 'inventory.yml');
  const doc = parseDocument(readFileSync(file, 'utf8'));
  change(doc);
  writeFileSync(file, doc.toString());
}

describe('PostgreSQL provisioned, wired to a Django app, backed up and restorable', () => {
  beforeAll(async () => {
    server = await timed(`boot a fresh sandbox (Debian ${TEST_RELEASE})`, () => bootSandbox('pg'));
    dir = mkdtempSync(path.join(tmpdir(), 'stack-pg-'));
    cpSync(path.join(ROOT, 'test/fixtures/django'), dir, { recursive: true });
    const r = run(['init', '--yes', '--name', APP, '--domains', DOMAIN, '--ssl', 'self-signed', '--env', 'sbx', '--host', server.address, '--user', 'deploy']);
    expect(r.code, r.stderr).toBe(0);
    secretKey = parseSecretsFile(readFileSync(path.join(dir, '.stack/secrets.sbx'), 'utf8')).get('DJANGO_SECRET_KEY')!;
    // What a Django user adds to what init wrote: the database, and its drivers from Debian.
    editInventory((doc) => {
      doc.setIn(['database'], doc.createNode({ engine: 'postgresql', backups: { on: '*-*-* 03:00:00', keep: 3 } }));
      doc.deleteIn(['app', 'env', 'SQLITE_PATH']);
      doc.setIn(
        ['app', 'packages'],
        ['python3-django', 'libjs-jquery', 'python3-psycopg2', 'python3-dj-database-url', 'python3-psycopg', 'python3-sqlalchemy'],
      );
      doc.setIn(['environments', 'sbx', 'hosts', 0, 'host_key'], server.hostKey);
      doc.setIn(['environments', 'sbx', 'hosts', 0, 'identity_file'], server.identityFile);
    });
  }, 240_000);

  afterAll(() => report());

  it('renders the backup units, checked by systemd-analyze verify', () => {
    const r = run(['render', 'sbx', '--check']);
    expect(r.code, r.stderr).toBe(0);
    const rendered = run(['render', 'sbx']).stdout;
    expect(rendered).toContain(`OnCalendar=*-*-* 03:00:00`);
    expect(rendered).toContain(`ExecStart=/usr/local/lib/stack/db-backup backup /var/backups/stack/${APP} ${APP} timer 3 full`);
    expect(rendered).toContain(`OnFailure=${APP}-db-backup-failed.service`);
    expect(rendered).toMatch(/^DATABASE_URL="postgresql:\/\/\/mysite\?host=\/var\/run\/postgresql"$/m);
  });

  it('shows the database work in the dry run of setup, before anything exists', () => {
    const r = run(['setup', 'sbx', '--dry-run']);
    expect(r.code, r.stderr).toBe(0);
    const text = r.stdout + r.stderr;
    expect(text).toContain('install packages: ');
    expect(text).toMatch(/postgresql/);
    expect(text).toContain(`create PostgreSQL role ${APP} (LOGIN, no superuser`);
    expect(text).toContain(`create database ${APP} owned by ${APP}`);
    expect(text).toMatch(/pg_hba\.conf: the app's lines, first/);
    expect(text).toMatch(/\+local\s+mysite\s+mysite\s+peer/);
    expect(text).toContain(`new file /etc/systemd/system/${APP}-db-backup.timer`);
  });

  it('sets up PostgreSQL, the role, the database and the timer; a second setup changes nothing', async () => {
    const r = await timed('stack setup (with PostgreSQL)', () => run(['setup', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/PostgreSQL: role and database mysite of mysite/);
    expect(await rootExec(server, `systemctl is-enabled ${APP}-db-backup.timer; systemctl is-active ${APP}-db-backup.timer`)).toBe('enabled\nactive');

    const again = await timed('stack setup (again)', () => run(['setup', 'sbx']));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/0 changes/);
    const dry = run(['setup', 'sbx', '--dry-run']);
    expect(dry.stdout + dry.stderr).toMatch(/nothing to change/);
  });

  it('gives the role no superuser, no password and no way to make databases or roles', async () => {
    expect(
      await superuser(
        `select rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin, rolpassword is null from pg_authid where rolname = '${APP}'`,
      ),
    ).toBe('f|f|f|f|f|t|t');
    expect(await superuser(`select pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate from pg_database where datname = '${APP}'`)).toBe(
      `${APP}|UTF8|C.UTF-8`,
    );
  });

  it('deploys: migrate runs against PostgreSQL with no manual step, the site answers through nginx', async () => {
    const r = await timed('stack deploy (first, migrate)', () => run(['deploy', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/hook: python manage\.py migrate --noinput/);
    // Before the first release there is nothing of the app's to back up.
    expect(r.stderr).not.toMatch(/database backup/);
    const a = await about();
    // dj-database-url 1.x (Debian 12) names the backend by its old alias, postgresql_psycopg2.
    expect(a).toMatchObject({ engine: expect.stringMatching(/^django\.db\.backends\.postgresql/), questions: 0, database: APP });
  });

  it('hands the same DATABASE_URL to libpq, psycopg 2 and 3, dj-database-url and SQLAlchemy (stack run)', () => {
    const check = [
      'import os, subprocess, psycopg2, psycopg, dj_database_url, sqlalchemy',
      'u = os.environ["DATABASE_URL"]',
      'print("psql", subprocess.run(["psql", u, "-Atc", "select current_user"], capture_output=True, text=True).stdout.strip())',
      'print("psycopg2", psycopg2.connect(u).cursor().connection.get_dsn_parameters()["user"])',
      'print("psycopg", psycopg.connect(u).execute("select current_database()").fetchone()[0])',
      'print("dj", dj_database_url.parse(u)["NAME"])',
      'print("sqlalchemy", sqlalchemy.create_engine(u).connect().execute(sqlalchemy.text("select current_user")).scalar())',
      'print("pg", os.environ["PGHOST"], os.environ["PGDATABASE"], os.environ["PGUSER"])',
    ].join('\n');
    const r = run(['run', 'sbx', '--', 'python3', '-c', check]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([
      `psql ${APP}`,
      `psycopg2 ${APP}`,
      `psycopg ${APP}`,
      `dj ${APP}`,
      `sqlalchemy ${APP}`,
      `pg /var/run/postgresql ${APP} ${APP}`,
    ]);
  });

  it('lets nobody else in: another local user, the build user, TCP, and the app role into other databases', async () => {
    const attempts = [
      `runuser -u nobody -- psql -X -d ${APP} -U ${APP} -c 'select 1'`,
      `runuser -u ${APP}-build -- psql -X -d ${APP} -U ${APP} -c 'select 1'`,
      `runuser -u deploy -- psql -X -d ${APP} -U ${APP} -c 'select 1'`,
      `PGCONNECT_TIMEOUT=5 runuser -u ${APP} -- psql -X -w -h 127.0.0.1 -d ${APP} -c 'select 1'`,
      `runuser -u ${APP} -- psql -X -d postgres -c 'select 1'`,
    ];
    for (const a of attempts) {
      const r = await sshExec(server, `cd / && ${a}`, 'root');
      expect(r.code, a).not.toBe(0);
      expect(r.stderr, a).toMatch(/authentication failed|rejects connection|no pg_hba\.conf entry|password authentication|does not exist/);
    }
    expect(psql('select current_user')).toBe(APP);
  });

  it('writes rows through stack db psql, as the app role', async () => {
    psql("insert into polls_question (question_text, pub_date) select 'question ' || g, now() from generate_series(1, 25) g");
    expect((await about()).questions).toBe(25);
  });

  it('takes a backup with the timer, checked by a scratch restore, and lists it', async () => {
    await timed('timer backup (systemctl start)', () => rootExec(server, `systemctl start ${APP}-db-backup.service`));
    const r = run(['db', 'backups', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Z-timer\s+[\d.]+ KiB\s+\d+s\s+timer\s+restored, \d+ tables/);
    expect(await rootExec(server, `stat -c '%a %U' /var/backups/stack/${APP} /var/backups/stack/${APP}/*-timer.dump`)).toMatch(/^700 root\n600 root$/);
    const json = JSON.parse(run(['db', 'backups', 'sbx', '--json']).stdout);
    expect(json.hosts[0].backups[0]).toMatchObject({ kind: 'timer' });
    expect(json.hosts[0].backups[0].tables).toBeGreaterThan(10);
    expect(json.ok).toBe(true);
  });

  let manual = '';
  it('takes a backup now (its id on stdout) and pulls it, readable by the user alone', async () => {
    const r = await timed('stack db backup', () => run(['db', 'backup', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    manual = r.stdout.trim();
    expect(manual).toMatch(/^\d{8}T\d{6}Z-manual$/);
    expect(r.stderr).toMatch(/checked by restoring it into a scratch database/);

    const file = path.join(dir, 'pulled.dump');
    const pull = run(['db', 'pull', 'sbx', file, '--backup', manual]);
    expect(pull.code, pull.stderr).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file).subarray(0, 5).toString()).toBe('PGDMP');
    // Never over a file that is there.
    const again = run(['db', 'pull', 'sbx', file, '--backup', manual]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/exists/);
  });

  it('restores a backup after rows were deleted: asks first, then the rows come back', async () => {
    psql('delete from polls_question');
    expect((await about()).questions).toBe(0);
    const refused = run(['db', 'restore', 'sbx', manual]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--yes/);
    expect((await about()).questions).toBe(0);

    const r = await timed('stack db restore', () => run(['db', 'restore', 'sbx', manual, '--yes']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/restored: .* from \d{8}T\d{6}Z-manual .* health 200/);
    expect((await about()).questions).toBe(25);
    // The database it replaced is kept until the next backup, and was backed up before.
    expect(await superuser(`select count(*) from pg_database where datname = '${APP}__previous'`)).toBe('1');
    expect(run(['db', 'backups', 'sbx']).stdout).toMatch(/Z-restore\s/);
  });

  it('shows a failing backup loudly in db backups and status, until one succeeds again', async () => {
    // Debian's pg_dump is a wrapper that runs the cluster's own: that one is broken here.
    const bin = '"$(dirname "$(ls /usr/lib/postgresql/*/bin/psql | head -n 1)")"';
    await rootExec(
      server,
      `mv ${bin}/pg_dump /root/pg_dump.real && printf '#!/bin/sh\\necho "pg_dump: error: broken on purpose" >&2\\nexit 1\\n' > ${bin}/pg_dump && chmod 755 ${bin}/pg_dump`,
    );
    try {
      const started = await sshExec(server, `systemctl start ${APP}-db-backup.service`, 'root');
      expect(started.code).not.toBe(0);
      const list = run(['db', 'backups', 'sbx']);
      expect(list.code).toBe(1);
      expect(list.stdout).toMatch(/LAST BACKUP FAILED at/);
      expect(list.stdout).toMatch(/broken on purpose/);
      const status = run(['status', 'sbx']);
      expect(status.code).toBe(1);
      expect(status.stdout).toMatch(/backups\s+FAILED at/);
      expect(await rootExec(server, `ls -A /var/backups/stack/${APP} | grep -c '^tmp\\|\\.tmp' || true`)).toBe('0');
    } finally {
      await rootExec(server, `mv /root/pg_dump.real ${bin}/pg_dump`);
    }
    await rootExec(server, `systemctl start ${APP}-db-backup.service`);
    const ok = run(['db', 'backups', 'sbx']);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/last failure .* \(the timer's backup succeeded since\)/);
    expect(run(['status', 'sbx']).code).toBe(0);
  });

  it('never runs code the app planted in its database with more than the app role', async () => {
    // A check constraint calling a function of the app's: whoever loads the dump's rows runs it.
    // As a superuser it would write a file through COPY TO PROGRAM; as the app role it may not.
    // (Volatile: PostgreSQL refuses COPY in an immutable function. Checked against a restore as
    // postgres, which does write the file.)
    psql(
      [
        'create function planted(i int) returns int language plpgsql as $$ begin',
        "begin execute 'copy (select 1) to program ''touch /var/lib/postgresql/planted-ran-as-superuser'''; exception when others then null; end;",
        'return i; end $$',
      ].join(' '),
    );
    psql('create table trap (x int check (planted(x) > 0)); insert into trap values (1)');
    const backup = run(['db', 'backup', 'sbx']);
    expect(backup.code, backup.stderr).toBe(0);
    const restore = run(['db', 'restore', 'sbx', backup.stdout.trim(), '--yes']);
    expect(restore.code, restore.stderr).toBe(0);
    expect(await rootExec(server, 'ls /var/lib/postgresql/planted-ran-as-superuser 2>&1 || true')).toMatch(/No such file/);
    psql('drop table trap; drop function planted(int)');
  });

  it('refuses a renamed database.name instead of creating an empty database', () => {
    editInventory((doc) => doc.setIn(['database', 'name'], 'mysite_new'));
    try {
      const r = run(['deploy', 'sbx', '--dry-run']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/the app's role mysite owns the database mysite, but the inventory names mysite_new/);
      expect(r.stderr).toMatch(/ALTER DATABASE "mysite" RENAME TO "mysite_new"/);
    } finally {
      editInventory((doc) => doc.deleteIn(['database', 'name']));
    }
  });

  it('backs up before a deploy that migrates, and a rollback across it asks, then restores rows and schema', async () => {
    // Version 2 of the app: a column Django adds without a database default, so version 1's
    // code could no longer insert a row once it is there.
    const polls = path.join(dir, 'mysite/polls');
    const models = readFileSync(path.join(polls, 'models.py'), 'utf8');
    writeFileSync(
      path.join(polls, 'models.py'),
      models.replace(
        '    pub_date = models.DateTimeField("date published")\n',
        '    pub_date = models.DateTimeField("date published")\n    featured = models.BooleanField(default=False)\n',
      ),
    );
    writeFileSync(
      path.join(polls, 'migrations/0002_question_featured.py'),
      [
        'from django.db import migrations, models',
        '',
        '',
        'class Migration(migrations.Migration):',
        '    dependencies = [("polls", "0001_initial")]',
        '',
        '    operations = [',
        '        migrations.AddField(model_name="question", name="featured", field=models.BooleanField(default=False)),',
        '    ]',
        '',
      ].join('\n'),
    );
    const r = await timed('stack deploy (migration 0002, backup first)', () => run(['deploy', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    const backup = /database backup (\d{8}T\d{6}Z-deploy)/.exec(r.stderr)?.[1];
    expect(backup, r.stderr).toBeTruthy();
    expect(psql("select count(*) from information_schema.columns where table_name = 'polls_question' and column_name = 'featured'")).toBe('1');
    psql("insert into polls_question (question_text, pub_date, featured) values ('after the migration', now(), true)");
    expect((await about()).questions).toBe(26);

    const refused = run(['rollback', 'sbx']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/ran server hooks after .* \(python manage\.py migrate --noinput\)/);
    expect(refused.stderr).toContain(`backup ${backup} was taken right before them`);
    expect(refused.stderr).toMatch(/--restore-db .* --keep-db/);

    const dry = run(['rollback', 'sbx', '--restore-db', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout + dry.stderr).toContain(`then restore database ${APP} from backup ${backup}`);

    const back = await timed('stack rollback --restore-db', () => run(['rollback', 'sbx', '--restore-db']));
    expect(back.code, back.stderr).toBe(0);
    expect(back.stderr).toContain(`database from backup ${backup}`);
    expect(psql("select count(*) from information_schema.columns where table_name = 'polls_question' and column_name = 'featured'")).toBe('0');
    expect(psql("select count(*) from django_migrations where app = 'polls' and name = '0002_question_featured'")).toBe('0');
    expect((await about()).questions).toBe(25);
  });
});
