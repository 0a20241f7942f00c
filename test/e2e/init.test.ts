/**
 * `stack init` in a real pseudo-terminal (tmux): a person answering the prompts, a person
 * pressing Ctrl-C, and the no-terminal path CI uses.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { parseSecretsFile } from '../../src/secrets/load.js';
import { ROOT, STACK, stack } from '../helpers/cli.js';

const sessions: string[] = [];

function tmux(...args: string[]): string {
  return execFileSync('tmux', args, { encoding: 'utf8' });
}

function startInit(dir: string, args: string[] = []): string {
  const name = `stack-init-${process.pid}-${sessions.length}`;
  sessions.push(name);
  const command = `${process.execPath} ${STACK} init ${args.join(' ')}; echo "EXIT=$?" > ${dir}/exit-code; sleep 30`;
  tmux('new-session', '-d', '-s', name, '-x', '160', '-y', '40', '-c', dir, command);
  return name;
}

async function waitForScreen(session: string, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let screen = '';
  while (Date.now() < deadline) {
    screen = tmux('capture-pane', '-p', '-t', session);
    if (pattern.test(screen)) return screen;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${pattern} on screen:\n${screen}`);
}

async function answer(session: string, prompt: RegExp, keys: string[]): Promise<void> {
  await waitForScreen(session, prompt);
  for (const k of keys) tmux('send-keys', '-t', session, ...(k.startsWith('KEY:') ? [k.slice(4)] : ['-l', k]));
}

async function exitCode(dir: string): Promise<number> {
  const file = path.join(dir, 'exit-code');
  const deadline = Date.now() + 15_000;
  while (!existsSync(file) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return Number(readFileSync(file, 'utf8').trim().replace('EXIT=', ''));
}

afterEach(() => {
  for (const s of sessions.splice(0)) {
    try {
      tmux('kill-session', '-t', s);
    } catch {
      // already gone
    }
  }
});

describe('stack init in a terminal', () => {
  it('writes a commented, valid inventory from the answers', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-init-'));
    const s = startInit(dir);
    await answer(s, /App name/, ['blog', 'KEY:Enter']);
    await answer(s, /Directory of the app/, ['KEY:Enter']);
    // An invalid answer is refused in place, with the reason.
    await answer(s, /WSGI entry point/, ['blog wsgi', 'KEY:Enter']);
    await waitForScreen(s, /not a valid WSGI entry point/);
    for (let i = 0; i < 'blog wsgi'.length; i++) tmux('send-keys', '-t', s, 'BSpace');
    tmux('send-keys', '-t', s, '-l', 'blog.wsgi:application');
    tmux('send-keys', '-t', s, 'Enter');
    await answer(s, /Gateway server/, ['KEY:Down', 'KEY:Enter']);
    await answer(s, /Domains/, ['blog.example.com, www.blog.example.com', 'KEY:Enter']);
    await answer(s, /HTTPS certificates/, ['KEY:Enter']);
    await answer(s, /Email for Let's Encrypt/, ['ops@example.com', 'KEY:Enter']);
    await answer(s, /Environment name/, ['KEY:Enter']);
    await answer(s, /Server address/, ['192.0.2.44', 'KEY:Enter']);
    await answer(s, /SSH user/, ['KEY:Enter']);
    await answer(s, /SSH port/, ['2222', 'KEY:Enter']);
    expect(await exitCode(dir)).toBe(0);

    const text = readFileSync(path.join(dir, 'inventory.yml'), 'utf8');
    expect(text).toMatch(/^# yaml-language-server: \$schema=.*schema\/inventory\.schema\.json$/m);
    const env = parseInventory(text, 'inventory.yml').environments.prod!;
    expect(env.app.name).toBe('blog');
    expect(env.app.wsgi).toBe('blog.wsgi:application');
    expect(env.gateway.server).toBe('uwsgi');
    expect(env.domains).toEqual(['blog.example.com', 'www.blog.example.com']);
    expect(env.ssl).toBe('letsencrypt');
    expect(env.email).toBe('ops@example.com');
    expect(env.hosts).toEqual([{ address: '192.0.2.44', user: 'deploy', port: 2222 }]);
    expect(readFileSync(path.join(dir, '.gitignore'), 'utf8')).toContain('.stack/secrets*');
  });

  it('proposes what it found in a Django project, and asks before generating its secret key', async () => {
    const dir = djangoRepository();
    const s = startInit(dir, ['--domains', 'mysite.example.com', '--ssl', 'none', '--host', '192.0.2.7']);
    await waitForScreen(s, /found a Django project in mysite\/ \(mysite\.wsgi:application\)/);
    await answer(s, /App name/, ['KEY:C-u', 'mysite', 'KEY:Enter']);
    await answer(s, /Directory of the app to ship \(mysite\)/, ['KEY:Enter']);
    await answer(s, /WSGI entry point \(module:callable\) \(mysite\.wsgi:application\)/, ['KEY:Enter']);
    await answer(s, /Gateway server/, ['KEY:Enter']);
    await answer(s, /Environment name/, ['KEY:Enter']);
    await answer(s, /SSH user/, ['KEY:Enter']);
    await answer(s, /SSH port/, ['KEY:Enter']);
    await answer(s, /Generate a random DJANGO_SECRET_KEY into \.stack\/secrets\.prod \(mode 600, ignored by git; never shown\)\? \(Y\/n\)/, ['KEY:Enter']);
    expect(await exitCode(dir)).toBe(0);
    const screen = tmux('capture-pane', '-p', '-t', s);
    expect(screen).toMatch(/generated DJANGO_SECRET_KEY into \.stack\/secrets\.prod/);
    const value = parseSecretsFile(readFileSync(path.join(dir, '.stack/secrets.prod'), 'utf8')).get('DJANGO_SECRET_KEY')!;
    expect(value).toHaveLength(64);
    expect(screen).not.toContain(value);
    const env = parseInventory(readFileSync(path.join(dir, 'inventory.yml'), 'utf8'), 'inventory.yml').environments.prod!;
    expect(env.app).toMatchObject({ source: 'mysite', wsgi: 'mysite.wsgi:application', secrets: ['DJANGO_SECRET_KEY'] });
    expect(env.hooks.before_activate).toEqual(['python manage.py migrate --noinput']);
  });

  it('exits 130 on Ctrl-C and leaves no file behind', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-init-'));
    const s = startInit(dir);
    await answer(s, /App name/, ['blog', 'KEY:Enter']);
    await answer(s, /Directory of the app/, ['KEY:C-c']);
    expect(await exitCode(dir)).toBe(130);
    expect(readdirSync(dir).sort()).toEqual(['exit-code']);
  });
});

/** A copy of the test Django project: a repository with the project in mysite/. */
function djangoRepository(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-init-django-'));
  cpSync(path.join(ROOT, 'test/fixtures/django'), dir, { recursive: true });
  return dir;
}

describe('stack init without a terminal', () => {
  it('takes defaults and flags with --yes', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-init-'));
    const r = stack(['init', '--yes', '--name', 'shop', '--domains', 'shop.example.com', '--ssl', 'self-signed', '--host', '192.0.2.9'], { cwd: dir });
    expect(r.code).toBe(0);
    const env = parseInventory(readFileSync(path.join(dir, 'inventory.yml'), 'utf8'), 'inventory.yml').environments.prod!;
    expect(env.app.name).toBe('shop');
    expect(env.ssl).toBe('self-signed');
    expect(env.email).toBeUndefined();
  });

  it('refuses to prompt without a terminal, and rejects bad flags with exit 2', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-init-'));
    const r = stack(['init'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no terminal/);
    const bad = stack(['init', '--yes', '--name', 'Bad Name', '--host', 'a;b'], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--name: "Bad Name" is not a valid app name/);
    expect(bad.stderr).toMatch(/--host: host address contains ";"/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('never overwrites an existing inventory without --force', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-init-'));
    writeFileSync(path.join(dir, 'inventory.yml'), '# mine\n');
    const r = stack(['init', '--yes'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(readFileSync(path.join(dir, 'inventory.yml'), 'utf8')).toBe('# mine\n');
    expect(stack(['init', '--yes', '--force'], { cwd: dir }).code).toBe(0);
    expect(readFileSync(path.join(dir, 'inventory.yml'), 'utf8')).toMatch(/stack init/);
  });

  it("guesses a Django project's WSGI module", () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mysite-'));
    execFileSync('mkdir', ['-p', path.join(dir, 'mysite')]);
    writeFileSync(path.join(dir, 'mysite/wsgi.py'), 'application = None\n');
    expect(stack(['init', '--yes'], { cwd: dir }).code).toBe(0);
    expect(readFileSync(path.join(dir, 'inventory.yml'), 'utf8')).toMatch(/wsgi: mysite\.wsgi:application/);
  });

  it('writes a Django project its hooks, static, env and a generated secret key, never replaced', () => {
    const dir = djangoRepository();
    const r = stack(['init', '--yes', '--name', 'mysite', '--ssl', 'none'], { cwd: dir });
    expect(r.code).toBe(0);
    const file = path.join(dir, '.stack/secrets.prod');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const value = parseSecretsFile(readFileSync(file, 'utf8')).get('DJANGO_SECRET_KEY')!;
    expect(value).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(r.stdout + r.stderr).not.toContain(value);
    const env = parseInventory(readFileSync(path.join(dir, 'inventory.yml'), 'utf8'), 'inventory.yml').environments.prod!;
    expect(env.app).toMatchObject({
      source: 'mysite',
      requirements: 'requirements.txt',
      static: { url: '/static/', path: 'staticfiles' },
      env: { DJANGO_SETTINGS_MODULE: 'mysite.settings', SQLITE_PATH: '/srv/mysite/shared/db.sqlite3' },
      secrets: ['DJANGO_SECRET_KEY'],
    });
    expect(env.hooks.build).toEqual(['python manage.py collectstatic --noinput']);
    // Written again, the inventory is replaced but the secret key is kept.
    const again = stack(['init', '--yes', '--force', '--name', 'mysite', '--ssl', 'none'], { cwd: dir });
    expect(again.code).toBe(0);
    expect(again.stdout).not.toMatch(/generated/);
    expect(parseSecretsFile(readFileSync(file, 'utf8')).get('DJANGO_SECRET_KEY')).toBe(value);
    expect(readFileSync(path.join(dir, 'inventory.yml'), 'utf8')).toMatch(/its value is\s+(#\s+)?in\s+(#\s+)?\.stack\/secrets\.prod/);
  });

  it('generates nothing with --no-generate-secrets, and says what is missing', () => {
    const dir = djangoRepository();
    const r = stack(['init', '--yes', '--no-generate-secrets', '--source', 'mysite'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(existsSync(path.join(dir, '.stack'))).toBe(false);
    expect(r.stdout).toMatch(/needs a value for DJANGO_SECRET_KEY in \.stack\/secrets\.prod/);
  });
});
