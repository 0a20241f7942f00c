/**
 * A real Django project, from `stack init --yes` to an admin login through nginx: the project
 * (test/fixtures/django: a repository with the project in mysite/) gets its inventory from init
 * alone, plus `app.packages: [python3-django, libjs-jquery]` and the sandbox's host key. Then setup and deploy
 * on a fresh server, and the checks a person would make in their first hour: the migration ran
 * (the polls table answers), the admin's CSS comes from nginx, a superuser logs in to the admin
 * over HTTPS with a real CSRF round trip (and a forged one is refused), and the settings see the
 * environment's domains through STACK_DOMAINS. Each step's time is printed for the report.
 */
import { cpSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDocument } from 'yaml';
import { parseSecretsFile } from '../../src/secrets/load.js';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { ROOT, stack, type CliResult } from '../helpers/cli.js';
import { bootSandbox, rootExec, sshExec, TEST_RELEASE, type SandboxInfo } from '../helpers/sandbox.js';

const APP = 'mysite';
const DOMAINS = ['mysite.stack.test', 'www.mysite.stack.test'];
const CANONICAL = `https://${DOMAINS[0]}`;
const ADMIN_PASSWORD = 'a-long-test-password-1729';

/** One gateway's run: its own server, project copy and timings. */
interface Site {
  gateway: 'gunicorn' | 'uwsgi';
  server: SandboxInfo;
  dir: string;
  /** The generated secret key: no output of stack may contain it. */
  secretKey: string;
  timings: [string, number][];
}

async function timed<T>(site: Site, label: string, step: () => T | Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await step();
  } finally {
    const ms = performance.now() - started;
    site.timings.push([label, ms]);
    process.stderr.write(`[django ${site.gateway}] ${label}: ${(ms / 1000).toFixed(1)}s\n`);
  }
}

function run(site: Site, args: string[]): CliResult {
  const r = stack(args, { cwd: site.dir });
  if (site.secretKey) expect(r.stdout + r.stderr).not.toContain(site.secretKey);
  return r;
}

/** A command as the app's user, in the live release, with the app's environment (the env file is root's, so root reads it first). */
function asApp(command: string): string {
  return `set -a; . /etc/${APP}/env; set +a; cd /srv/${APP}/current && runuser -u ${APP} -- ${command}`;
}

interface Response {
  status: number;
  headers: Map<string, string[]>;
  body: string;
}

/** One HTTPS request to the site through nginx on the sandbox (self-signed, so -k), with a cookie jar. */
async function https(
  site: Site,
  pathname: string,
  o: { jar?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<Response> {
  const args = ['-s', '-k', '-D', '-', '--max-time', '15', '--resolve', `${DOMAINS[0]}:443:${site.server.address}`];
  if (o.jar) args.push('-b', o.jar, '-c', o.jar);
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('-H', `${k}: ${v}`);
  for (const [k, v] of Object.entries(o.form ?? {})) args.push('--data-urlencode', `${k}=${v}`);
  args.push(`${CANONICAL}${pathname}`);
  const r = await runProgram('curl', args, 20_000);
  if (r.code !== 0) throw new Error(`curl ${pathname}: exit ${r.code}: ${r.stderr}`);
  const split = r.stdout.indexOf('\r\n\r\n');
  const [status, ...lines] = r.stdout.slice(0, split).split('\r\n');
  const headers = new Map<string, string[]>();
  for (const l of lines) {
    const name = l.slice(0, l.indexOf(':')).toLowerCase();
    headers.set(name, [...(headers.get(name) ?? []), l.slice(l.indexOf(':') + 1).trim()]);
  }
  return { status: Number(status!.split(' ')[1]), headers, body: r.stdout.slice(split + 4) };
}

/** The CSRF token of the admin's login form, and the csrftoken cookie set with it. */
async function loginForm(site: Site, jar: string): Promise<{ token: string; cookie: string }> {
  const page = await https(site, '/admin/login/?next=/admin/', { jar });
  expect(page.status).toBe(200);
  const token = /name="csrfmiddlewaretoken" value="([^"]+)"/.exec(page.body)?.[1];
  expect(token).toBeTruthy();
  const cookie = readFileSync(jar, 'utf8')
    .split('\n')
    .find((l) => l.includes('\tcsrftoken\t'));
  expect(cookie).toBeTruthy();
  return { token: token!, cookie: cookie! };
}

describe.each(['gunicorn', 'uwsgi'] as const)('a Django project deployed under %s from what stack init wrote', (gateway) => {
  const site = { gateway, timings: [], secretKey: '' } as unknown as Site;

  beforeAll(async () => {
    site.server = await timed(site, `boot a fresh sandbox (Debian ${TEST_RELEASE})`, () => bootSandbox(gateway === 'gunicorn' ? 'djgun' : 'djuwsgi'));
    site.dir = mkdtempSync(path.join(tmpdir(), 'stack-django-'));
    cpSync(path.join(ROOT, 'test/fixtures/django'), site.dir, { recursive: true });
  }, 180_000);

  afterAll(() => {
    const total = site.timings.reduce((sum, [, ms]) => sum + ms, 0);
    const width = Math.max(...site.timings.map(([l]) => l.length), 5);
    const rows = site.timings.map(([l, ms]) => `  ${l.padEnd(width)}  ${(ms / 1000).toFixed(1).padStart(6)}s`);
    process.stderr.write(`[django ${gateway}] timings:\n${rows.join('\n')}\n  ${'total'.padEnd(width)}  ${(total / 1000).toFixed(1).padStart(6)}s\n`);
  });

  it('init --yes finds the project in mysite/ and writes its inventory and secret key', async () => {
    const r = await timed(site, 'stack init --yes', () =>
      run(site, [
        'init',
        '--yes',
        '--name',
        APP,
        '--domains',
        DOMAINS.join(','),
        '--ssl',
        'self-signed',
        '--env',
        'sbx',
        '--host',
        site.server.address,
        '--user',
        'deploy',
        '--gateway',
        gateway,
      ]),
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/found a Django project in mysite\/ \(mysite\.wsgi:application\)/);
    expect(r.stdout).toMatch(/generated DJANGO_SECRET_KEY into \.stack\/secrets\.sbx \(mode 600/);

    const secrets = path.join(site.dir, '.stack/secrets.sbx');
    expect(statSync(secrets).mode & 0o777).toBe(0o600);
    site.secretKey = parseSecretsFile(readFileSync(secrets, 'utf8')).get('DJANGO_SECRET_KEY')!;
    expect(site.secretKey).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(r.stdout).not.toContain(site.secretKey);

    const text = readFileSync(path.join(site.dir, 'inventory.yml'), 'utf8');
    const doc = parseDocument(text).toJS() as {
      app: Record<string, unknown>;
      hooks: Record<string, string[]>;
    };
    expect(doc.app).toMatchObject({
      source: 'mysite',
      wsgi: 'mysite.wsgi:application',
      requirements: 'requirements.txt',
      static: { url: '/static/', path: 'staticfiles' },
      health: '/health/',
      env: { DJANGO_SETTINGS_MODULE: 'mysite.settings', SQLITE_PATH: `/srv/${APP}/shared/db.sqlite3` },
      secrets: ['DJANGO_SECRET_KEY'],
    });
    expect(doc.hooks).toEqual({ build: ['python manage.py collectstatic --noinput'], before_activate: ['python manage.py migrate --noinput'] });
    expect(text).toMatch(/reads STACK_DOMAINS for ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS/);
  });

  it('takes app.packages and the sandbox host key, edited into the YAML with its comments kept', async () => {
    await timed(site, 'edit the inventory (packages, host key)', () => {
      const file = path.join(site.dir, 'inventory.yml');
      const doc = parseDocument(readFileSync(file, 'utf8'));
      // Debian's Django links the admin's jQuery into libjs-jquery, which apt only recommends and
      // stack installs without recommends: collectstatic fails on the dangling link without it.
      doc.setIn(['app', 'packages'], ['python3-django', 'libjs-jquery']);
      doc.setIn(['environments', 'sbx', 'hosts', 0, 'host_key'], site.server.hostKey);
      doc.setIn(['environments', 'sbx', 'hosts', 0, 'identity_file'], site.server.identityFile);
      writeFileSync(file, doc.toString());
    });
    expect(readFileSync(path.join(site.dir, 'inventory.yml'), 'utf8')).toMatch(/# Copies the static files of every app into STATIC_ROOT/);
    expect(run(site, ['render', 'sbx', '--check']).code).toBe(0);
  });

  it('sets up the server, with python3-django from Debian', async () => {
    const r = await timed(site, 'stack setup', () => run(site, ['setup', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/python3-django/);
  });

  it('deploys: collectstatic in the build, migrate before activation, health 200', async () => {
    const r = await timed(site, 'stack deploy (first)', () => run(site, ['deploy', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/hook: python manage\.py collectstatic --noinput/);
    expect(r.stderr).toMatch(/hook: python manage\.py migrate --noinput/);
    expect(r.stderr).toMatch(/health 200/);
    expect(r.code).toBe(0);
  });

  it('applied the hand-written migration, which matches the models', async () => {
    const migrations = await timed(site, 'check migrations over ssh', async () => {
      const shown = await rootExec(site.server, asApp('.venv/bin/python manage.py showmigrations polls'));
      // makemigrations exits 1 when the models and the migrations differ; --dry-run writes nothing.
      const check = await sshExec(site.server, asApp('.venv/bin/python manage.py makemigrations --check --dry-run polls'), 'root');
      return { shown, check };
    });
    expect(migrations.shown).toMatch(/\[X\] 0001_initial/);
    expect(migrations.check.code, migrations.check.stdout + migrations.check.stderr).toBe(0);
    // The database is in the app's shared folder, owned by the app; the release stays read-only.
    expect(await rootExec(site.server, `stat -c '%U %a' /srv/${APP}/shared/db.sqlite3`)).toMatch(new RegExp(`^${APP} `));
    expect(await rootExec(site.server, `runuser -u ${APP} -- touch /srv/${APP}/current/x 2>&1 || echo refused`)).toMatch(/refused|Read-only|Permission denied/);
  });

  it("serves the admin's CSS and the app's static file from nginx", async () => {
    const [css, polls] = await timed(site, 'GET static files', async () => [
      await https(site, '/static/admin/css/base.css'),
      await https(site, '/static/polls/style.css'),
    ]);
    expect(css.status).toBe(200);
    expect(css.headers.get('content-type')?.[0]).toMatch(/^text\/css/);
    expect(css.headers.get('cache-control')?.[0]).toBe('max-age=31536000');
    expect(css.body).toMatch(/DJANGO Admin styles/i);
    expect(polls.status).toBe(200);
    expect(polls.body).toContain('body.polls');
  });

  it('hands STACK_DOMAINS to the settings, and the polls table answers', async () => {
    const about = await timed(site, 'GET /about/', () => https(site, '/about/'));
    expect(about.status).toBe(200);
    const settings = JSON.parse(about.body) as Record<string, unknown>;
    expect(settings).toMatchObject({ allowed_hosts: DOMAINS, debug: false, database: `/srv/${APP}/shared/db.sqlite3`, questions: 0 });
    process.stderr.write(`[django ${gateway}] Django ${String(settings.django)} on Debian ${TEST_RELEASE}\n`);
    // A host outside STACK_DOMAINS is refused by Django itself, past nginx's default site.
    const stranger = await runProgram(
      'curl',
      ['-s', '-k', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `evil.stack.test:443:${site.server.address}`, 'https://evil.stack.test/about/'],
      20_000,
    );
    expect(stranger.stdout).not.toBe('200');
  });

  it('logs a superuser in to the admin with a real CSRF round trip', async () => {
    await timed(site, 'createsuperuser over ssh', () =>
      rootExec(
        site.server,
        `export DJANGO_SUPERUSER_PASSWORD=${ADMIN_PASSWORD}; ${asApp('.venv/bin/python manage.py createsuperuser --noinput --username admin --email admin@example.com')}`,
      ),
    );
    const jar = path.join(site.dir, 'cookies.txt');
    const { login, admin } = await timed(site, 'admin login through nginx', async () => {
      const { token } = await loginForm(site, jar);
      const login = await https(site, '/admin/login/?next=/admin/', {
        jar,
        form: { csrfmiddlewaretoken: token, username: 'admin', password: ADMIN_PASSWORD, next: '/admin/' },
        headers: { Referer: `${CANONICAL}/admin/login/?next=/admin/`, Origin: CANONICAL },
      });
      const admin = await https(site, '/admin/', { jar });
      return { login, admin };
    });
    // A 200 is the form again, with Django's reason in its errornote.
    expect(login.status, /class="errornote"[^>]*>([^<]*)/.exec(login.body)?.[1] ?? login.body.slice(0, 300)).toBe(302);
    expect(login.headers.get('location')).toEqual(['/admin/']);
    // Over HTTPS the session cookie is Secure (the settings read the scheme from STACK_URL).
    expect(login.headers.get('set-cookie')?.find((c) => c.startsWith('sessionid='))).toMatch(/; Secure/i);
    expect(admin.status).toBe(200);
    expect(admin.body).toMatch(/Site administration/);
    expect(admin.body).toMatch(/Questions/);
  });

  it('refuses a login without the token, or from another origin', async () => {
    const jar = path.join(site.dir, 'cookies-forged.txt');
    const { token } = await loginForm(site, jar);
    const form = { username: 'admin', password: ADMIN_PASSWORD, next: '/admin/' };
    const noToken = await https(site, '/admin/login/', { jar, form, headers: { Referer: `${CANONICAL}/admin/login/`, Origin: CANONICAL } });
    expect(noToken.status).toBe(403);
    const forged = await https(site, '/admin/login/', {
      jar,
      form: { ...form, csrfmiddlewaretoken: token },
      headers: { Referer: 'https://evil.example.net/login/', Origin: 'https://evil.example.net' },
    });
    expect(forged.status).toBe(403);
  });

  it('deploys again with nothing to change', async () => {
    const r = await timed(site, 'stack deploy (nothing changed)', () => run(site, ['deploy', 'sbx']));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/changed 0 things/);
  });
});
