/**
 * The inventory `stack init` writes from its answers and what it detected (valid, with each
 * reason as a comment), and the secrets it generates (mode 0600, never over an existing value).
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Detection, detectProject, localFiles } from '../../src/init/detect.js';
import { commentLines, type InitAnswers, inventoryText, type SecretSource, sentence } from '../../src/init/inventory.js';
import { addGeneratedSecrets, generateSecretValue, secretsFileState } from '../../src/init/secrets.js';
import { parseInventory } from '../../src/inventory/load.js';
import { parseSecretsFile } from '../../src/secrets/load.js';

const ANSWERS: InitAnswers = {
  name: 'mysite',
  source: 'backend',
  wsgi: 'mysite.wsgi:application',
  gateway: 'gunicorn',
  domains: ['mysite.example.com', 'www.mysite.example.com'],
  ssl: 'letsencrypt',
  email: 'ops@example.com',
  env: 'prod',
  host: '192.0.2.10',
  user: 'deploy',
  port: 22,
  generateSecrets: true,
};

function write(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'stack-init-inv-'));
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), content);
  }
  return root;
}

const DJANGO = {
  'backend/manage.py':
    'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\nfrom django.core.management import execute_from_command_line\n',
  'backend/mysite/__init__.py': '',
  'backend/mysite/wsgi.py': 'application = None\n',
  'backend/mysite/settings.py': `from pathlib import Path
BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "django-insecure-x"
ALLOWED_HOSTS = []
INSTALLED_APPS = ["django.contrib.admin", "django.contrib.staticfiles"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
STATIC_URL = "static/"
`,
  'backend/requirements.txt': 'Django\n',
};

/** Comment lines joined into one, so a sentence can be matched wherever it wraps. */
function flat(yaml: string): string {
  return yaml.replace(/\n *# (?! {4})/g, ' ');
}

function text(detection: Detection | undefined, answers: Partial<InitAnswers> = {}, sources: [string, SecretSource][] = [], factoryCalls = false): string {
  return inventoryText(
    { ...ANSWERS, ...answers },
    { schema: 'schema.json', ...(detection ? { detection } : {}), secretsFile: '.stack/secrets.prod', secretSources: new Map(sources), factoryCalls },
  );
}

describe('the inventory init writes for a Django project', () => {
  const detection = detectProject(localFiles(write(DJANGO)))!;
  const yaml = text(detection, {}, [['SECRET_KEY', 'generated']]);
  const env = parseInventory(yaml, 'inventory.yml').environments.prod!;

  it('is valid, with the hooks, static, env and secret detection found', () => {
    expect(env.app.source).toBe('backend');
    expect(env.app.requirements).toBe('requirements.txt');
    expect(env.app.static).toMatchObject({ url: '/static/', path: 'staticfiles' });
    expect(env.app.env).toEqual({ DJANGO_SETTINGS_MODULE: 'mysite.settings', SQLITE_PATH: '/srv/mysite/shared/db.sqlite3' });
    expect(env.app.secrets).toEqual(['SECRET_KEY']);
    expect(env.app.health).toBe('/health');
    expect(flat(yaml)).toMatch(/No health view was found in the root URLconf: add one that answers 200/);
    expect(env.hooks.build).toEqual(['python manage.py collectstatic --noinput']);
    expect(env.hooks.before_activate).toEqual(['python manage.py migrate --noinput']);
  });

  it('shows the settings lines for STACK_DOMAINS and STACK_URL as comments', () => {
    expect(yaml).toContain('#     ALLOWED_HOSTS = os.environ["STACK_DOMAINS"].split(",")');
    expect(yaml).toContain('#     CSRF_TRUSTED_ORIGINS = [os.environ["STACK_URL"].split("://")[0] + "://" + d for d in ALLOWED_HOSTS]');
    expect(yaml).toContain('#     STATIC_ROOT = BASE_DIR / "staticfiles"');
    expect(yaml).toMatch(/stack puts STACK_DOMAINS \(this environment's domains,\n# comma-separated\) and STACK_URL/);
  });

  it('says why for each value it found', () => {
    expect(yaml).toMatch(/# backend\/manage\.py is in a subfolder.*\n.*\n {2}source: backend/);
    expect(flat(yaml)).toMatch(
      /SECRET_KEY: mysite\/settings\.py does not read SECRET_KEY from the environment yet .*; a random value was generated into \.stack\/secrets\.prod\./,
    );
  });

  it.each([
    ['kept', /its value is in \.stack\/secrets\.prod/],
    ['missing', /put its value in \.stack\/secrets\.prod \(mode 600\) or in the environment, or run stack init again with --generate-secrets/],
  ] as const)('tells where a %s secret comes from', (source, said) => {
    expect(flat(text(detection, {}, [['SECRET_KEY', source]]))).toMatch(said);
  });

  it('keeps every line short', () => {
    for (const line of yaml.split('\n')) expect(line.length).toBeLessThanOrEqual(110);
  });
});

describe('the inventory init writes for a Django project on DATABASE_URL', () => {
  const settings = DJANGO['backend/mysite/settings.py'].replace(
    'DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}',
    'import dj_database_url\nDATABASES = {"default": dj_database_url.config(default="sqlite:///db.sqlite3")}',
  );
  const project = (requirements: string) =>
    detectProject(localFiles(write({ ...DJANGO, 'backend/mysite/settings.py': settings, 'backend/requirements.txt': requirements })))!;

  it('runs PostgreSQL for it (database:) instead of asking for DATABASE_URL as a secret, and names the driver', () => {
    const detection = project('Django\n');
    const yaml = text(detection, {}, [['SECRET_KEY', 'generated']]);
    const env = parseInventory(yaml, 'inventory.yml').environments.prod!;
    expect(env.database).toMatchObject({ engine: 'postgresql', name: 'mysite' });
    expect(env.app.secrets).toEqual(['SECRET_KEY']);
    expect(env.app.env).not.toHaveProperty('SQLITE_PATH');
    expect(flat(yaml)).toMatch(/reads the database from DATABASE_URL, which stack sets when it runs PostgreSQL on the server/);
    expect(flat(yaml)).toMatch(/delete database: and list DATABASE_URL under secrets/);
    expect(flat(yaml)).toMatch(/PostgreSQL needs a driver: python3-psycopg2 and python3-dj-database-url here/);
  });

  it('names no driver when the requirements bring one', () => {
    expect(flat(text(project('Django\npsycopg[binary]\ndj-database-url\n')))).not.toMatch(/needs a driver/);
  });
});

describe('the inventory init writes for a Flask factory', () => {
  const detection = detectProject(localFiles(write({ 'app.py': 'from flask import Flask\n\ndef create_app():\n    return Flask(__name__)\n' })))!;

  it('uses module:create_app() when app.wsgi takes factory calls, and warns uWSGI users', () => {
    const yaml = text(detection, { wsgi: 'app:create_app()', gateway: 'uwsgi', source: '.' }, [], true);
    expect(yaml).toContain('  wsgi: app:create_app()');
    expect(flat(yaml)).toMatch(/uWSGI calls the factory once, in its master process/);
  });

  it('otherwise points at a wsgi.py and shows the one it needs', () => {
    const yaml = text(detection, { wsgi: 'wsgi:app', source: '.' }, [], false);
    expect(parseInventory(yaml, 'inventory.yml').environments.prod!.app.wsgi).toBe('wsgi:app');
    expect(flat(yaml)).toMatch(/this version of stack takes module:callable only, so a wsgi\.py must call it/);
    expect(yaml).toContain('#     from app import create_app\n#     app = create_app()');
  });
});

describe('the inventory init writes with nothing detected', () => {
  it('is the plain commented inventory', () => {
    const yaml = text(undefined, { source: '.', ssl: 'none' });
    const env = parseInventory(yaml, 'inventory.yml').environments.prod!;
    expect(env.app.env).toEqual({});
    expect(env.app.secrets).toEqual([]);
    expect(env.hooks.build).toEqual([]);
    expect(yaml).toContain('  # requirements: requirements.txt');
    expect(yaml).toContain('  # static: { url: /static/, path: static }');
    expect(yaml).not.toMatch(/What `stack init` found/);
  });
});

describe('comments', () => {
  it('never let a control character end the comment', () => {
    expect(commentLines('a\nb: evil\rc')).toEqual(['a b: evil c']);
  });
  it.each([
    ['copies files', 'Copies files.'],
    ['mysite/urls.py routes health/', 'mysite/urls.py routes health/.'],
    ['add this line:', 'add this line:'.replace('a', 'A')],
    ['STATIC_ROOT = x.', 'STATIC_ROOT = x.'],
  ])('sentence(%s)', (input, output) => {
    expect(sentence(input)).toBe(output);
  });
});

describe('generated secrets', () => {
  it('are 64 URL-safe characters, different every time, and redacted when printed', () => {
    const a = generateSecretValue();
    expect(a.reveal()).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(generateSecretValue().reveal()).not.toBe(a.reveal());
    expect(String(a)).toBe('[REDACTED]');
  });

  it('go to a new file with mode 0600, and never replace a value', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-secrets-'));
    const first = await addGeneratedSecrets(dir, 'prod', ['SECRET_KEY']);
    expect(first.added).toEqual(['SECRET_KEY']);
    expect(statSync(first.file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(first.file)).mode & 0o777).toBe(0o700);
    const value = parseSecretsFile(readFileSync(first.file, 'utf8')).get('SECRET_KEY');
    expect(value).toMatch(/^[A-Za-z0-9_-]{64}$/);
    expect(JSON.stringify(first)).not.toContain(value);

    const again = await addGeneratedSecrets(dir, 'prod', ['SECRET_KEY', 'OTHER_KEY']);
    expect(again).toMatchObject({ added: ['OTHER_KEY'], kept: ['SECRET_KEY'] });
    const after = parseSecretsFile(readFileSync(first.file, 'utf8'));
    expect(after.get('SECRET_KEY')).toBe(value);
    expect(after.get('OTHER_KEY')).toMatch(/^[A-Za-z0-9_-]{64}$/);
  });

  it('are added to an existing file after its last line, keeping what it holds', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-secrets-'));
    mkdirSync(path.join(dir, '.stack'));
    writeFileSync(path.join(dir, '.stack/secrets.prod'), 'DATABASE_URL=postgres://x', { mode: 0o600 });
    await addGeneratedSecrets(dir, 'prod', ['SECRET_KEY']);
    const values = parseSecretsFile(readFileSync(path.join(dir, '.stack/secrets.prod'), 'utf8'));
    expect(values.get('DATABASE_URL')).toBe('postgres://x');
    expect(values.get('SECRET_KEY')).toHaveLength(64);
  });

  it('are refused for a file other users can read', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-secrets-'));
    mkdirSync(path.join(dir, '.stack'));
    writeFileSync(path.join(dir, '.stack/secrets.prod'), 'A=b\n');
    chmodSync(path.join(dir, '.stack/secrets.prod'), 0o644);
    expect(secretsFileState(dir, 'prod').problem).toMatch(/readable by other users \(mode 644\)/);
    await expect(addGeneratedSecrets(dir, 'prod', ['SECRET_KEY'])).rejects.toThrow(/no secret was generated/);
    expect(readFileSync(path.join(dir, '.stack/secrets.prod'), 'utf8')).toBe('A=b\n');
  });
});
