/**
 * What `stack init` reads from a project: small trees written into temporary folders (Django as
 * startproject makes it, settings packages, projects in subfolders, Flask apps and factories),
 * and the Python-reading rules on their own, table by table.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Detection, detectProject, detectProjectAt, localFiles } from '../../src/init/detect.js';
import { settingsModuleOf, staticUrlOf } from '../../src/init/django.js';
import { dictValue, envReadOf, envReads, evalPath, stringLiteral, topLevelAssignments } from '../../src/init/python.js';

/** Writes `files` (path -> content) under a new temporary folder and returns it. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(path.join(tmpdir(), 'stack-detect-'));
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), content);
  }
  return root;
}

function detect(files: Record<string, string>): Detection | undefined {
  return detectProject(localFiles(tree(files)));
}

const MANAGE_PY = (settings: string) => `#!/usr/bin/env python
import os
import sys


def main():
    """Run administrative tasks."""
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', '${settings}')
    try:
        from django.core.management import execute_from_command_line
    except ImportError as exc:
        raise ImportError("Couldn't import Django.") from exc
    execute_from_command_line(sys.argv)


if __name__ == '__main__':
    main()
`;

/** settings.py as `django-admin startproject mysite` (Django 4.2) writes it, shortened. */
const STARTPROJECT_SETTINGS = `"""
Django settings for mysite project.
"""

from pathlib import Path

# Build paths inside the project like this: BASE_DIR / 'subdir'.
BASE_DIR = Path(__file__).resolve().parent.parent

# SECURITY WARNING: keep the secret key used in production secret!
SECRET_KEY = 'django-insecure-0123456789abcdefghijklmnopqrstuvwxyz#not-a-comment'

# SECURITY WARNING: don't run with debug turned on in production!
DEBUG = True

ALLOWED_HOSTS = []

INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'django.contrib.staticfiles',
]

ROOT_URLCONF = 'mysite.urls'

WSGI_APPLICATION = 'mysite.wsgi.application'

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': BASE_DIR / 'db.sqlite3',
    }
}

STATIC_URL = 'static/'

DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
`;

const STARTPROJECT_URLS = `from django.contrib import admin
from django.urls import path

urlpatterns = [
    path('admin/', admin.site.urls),
]
`;

function startproject(prefix = '', settings = STARTPROJECT_SETTINGS): Record<string, string> {
  return {
    [`${prefix}manage.py`]: MANAGE_PY('mysite.settings'),
    [`${prefix}mysite/__init__.py`]: '',
    [`${prefix}mysite/settings.py`]: settings,
    [`${prefix}mysite/urls.py`]: STARTPROJECT_URLS,
    [`${prefix}mysite/wsgi.py`]: 'from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n',
  };
}

describe('a Django project as startproject makes it', () => {
  const d = detect({ ...startproject(), 'requirements.txt': 'Django==4.2.*\n' })!;

  it('finds the settings from manage.py and the WSGI application from the settings', () => {
    expect(d.framework).toBe('django');
    expect(d.dir).toBe('.');
    expect(d.summary[0]).toMatch(/manage\.py sets DJANGO_SETTINGS_MODULE=mysite\.settings \(mysite\/settings\.py\)/);
    expect(d.wsgi).toEqual({ value: 'mysite.wsgi:application', why: 'WSGI_APPLICATION = "mysite.wsgi.application" in the settings' });
    expect(d.env[0]).toMatchObject({ name: 'DJANGO_SETTINGS_MODULE', value: 'mysite.settings' });
    expect(d.requirements?.value).toBe('requirements.txt');
  });

  it('proposes a STATIC_ROOT inside the project, and says which line to add', () => {
    expect(d.static?.value).toEqual({ url: '/static/', path: 'staticfiles' });
    expect(d.staticNotes.join('\n')).toMatch(/sets no STATIC_ROOT: add this line to mysite\/settings\.py, or collectstatic fails/);
    expect(d.staticNotes).toContain('    STATIC_ROOT = BASE_DIR / "staticfiles"');
  });

  it('puts collectstatic in the build hooks and migrate before activation', () => {
    expect(d.hooks.build.map((h) => h.value)).toEqual(['python manage.py collectstatic --noinput']);
    expect(d.hooks.before_activate.map((h) => h.value)).toEqual(['python manage.py migrate --noinput']);
  });

  it('lists the secret key and the settings lines the project still needs', () => {
    expect(d.secrets).toEqual([expect.objectContaining({ name: 'SECRET_KEY', generate: true })]);
    const settings = d.settings.join('\n');
    expect(d.settings).toContain('SECRET_KEY = os.environ["SECRET_KEY"]');
    expect(settings).toContain('ALLOWED_HOSTS = os.environ["STACK_DOMAINS"].split(",")');
    expect(settings).toContain('CSRF_TRUSTED_ORIGINS = [os.environ["STACK_URL"].split("://")[0] + "://" + d for d in ALLOWED_HOSTS]');
    expect(settings).toContain('SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")');
    expect(settings).toContain('DEBUG = os.environ.get("DJANGO_DEBUG") == "1"');
    expect(settings).toContain('STATIC_ROOT = BASE_DIR / "staticfiles"');
  });

  it('moves the SQLite file out of the read-only release', () => {
    expect(d.settings.join('\n')).toContain(`DATABASES["default"]["NAME"] = os.environ.get("SQLITE_PATH", BASE_DIR / 'db.sqlite3')`);
    expect(d.env).toContainEqual(expect.objectContaining({ name: 'SQLITE_PATH', value: { sharedFile: 'db.sqlite3' } }));
  });

  it("uses the admin's login page as the health check when there is no health view", () => {
    expect(d.health?.value).toBe('/admin/login/');
  });
});

describe('a Django project that reads its settings from the environment', () => {
  const settings = `import os
BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ["STACK_DOMAINS"].split(",")
CSRF_TRUSTED_ORIGINS = ["https://" + d for d in ALLOWED_HOSTS]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
INSTALLED_APPS = ["django.contrib.staticfiles"]
ROOT_URLCONF = "mysite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("DB_FILE", os.path.join(BASE_DIR, "data.sqlite3"))}}
EMAIL_HOST_PASSWORD = os.environ["EMAIL_HOST_PASSWORD"]
SENTRY_DSN = os.environ.get("SENTRY_DSN")
STATIC_URL = "/assets/"
STATIC_ROOT = os.path.join(BASE_DIR, "public", "assets")
`;
  const d = detect({
    ...startproject('', settings),
    'mysite/urls.py': 'from django.urls import path\nurlpatterns = [path("healthz/", lambda r: None), path("admin/", admin.site.urls)]\n',
  })!;

  it('serves STATIC_ROOT at STATIC_URL', () => {
    expect(d.static?.value).toEqual({ url: '/assets/', path: 'public/assets' });
    expect(d.static?.why).toMatch(/STATIC_ROOT = os\.path\.join\(BASE_DIR, "public", "assets"\)/);
    expect(d.staticNotes).toEqual([]);
  });

  it('takes the secret key, the database path and required secrets from what the settings read', () => {
    expect(d.secrets.map((s) => [s.name, s.generate])).toEqual([
      ['DJANGO_SECRET_KEY', true],
      ['EMAIL_HOST_PASSWORD', false],
    ]);
    expect(d.env).toContainEqual(expect.objectContaining({ name: 'DB_FILE', value: { sharedFile: 'data.sqlite3' } }));
    expect(d.summary.join(' ')).toMatch(/also read SENTRY_DSN from the environment/);
  });

  it('adds no settings lines the project already has', () => {
    expect(d.settings).toEqual([]);
    expect(d.summary.join(' ')).toMatch(/reads STACK_DOMAINS for ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS/);
  });

  it('finds the health view in the root URLconf', () => {
    expect(d.health?.value).toBe('/healthz/');
  });
});

describe('a Django settings package', () => {
  const d = detect({
    'manage.py': MANAGE_PY('config.settings.production'),
    'config/__init__.py': '',
    'config/wsgi.py': 'application = None\n',
    'config/settings/__init__.py': '',
    'config/settings/base.py': `from pathlib import Path
BASE_DIR = Path(__file__).resolve().parent.parent.parent
STATIC_ROOT = BASE_DIR / "collected" / "static"
STATIC_URL = "/static/"
WSGI_APPLICATION = "config.wsgi.application"
INSTALLED_APPS = ["django.contrib.staticfiles"]
`,
    'config/settings/production.py': `from .base import *  # noqa
import os
SECRET_KEY = os.getenv("SECRET_KEY", "insecure-dev-key")
`,
    'requirements/production.txt': 'django\n',
  })!;

  it('follows `from .base import *` and counts BASE_DIR from base.py', () => {
    expect(d.env[0]).toMatchObject({ value: 'config.settings.production' });
    expect(d.wsgi?.value).toBe('config.wsgi:application');
    expect(d.static?.value).toEqual({ url: '/static/', path: 'collected/static' });
  });

  it('asks for a key without a fallback, and finds requirements/production.txt', () => {
    expect(d.secrets[0]).toMatchObject({ name: 'SECRET_KEY', generate: true });
    expect(d.settings).toEqual(
      expect.arrayContaining(['# No fallback: a missing key must stop the app, not weaken it', 'SECRET_KEY = os.environ["SECRET_KEY"]']),
    );
    expect(d.requirements?.value).toBe('requirements/production.txt');
  });
});

describe('STATIC_ROOT stack cannot serve', () => {
  it.each([
    ['an absolute path', `STATIC_ROOT = "/var/www/static"`, /STATIC_ROOT is \/var\/www\/static, outside the release/],
    ['the project itself', `STATIC_ROOT = BASE_DIR`, /STATIC_ROOT \(BASE_DIR\) is not a folder stack can work out/],
    ['a computed path', `STATIC_ROOT = get_static_root()`, /is not a folder stack can work out/],
  ])('%s: proposes staticfiles and says why', (_, line, note) => {
    const d = detect(startproject('', `${STARTPROJECT_SETTINGS}\n${line}\n`))!;
    expect(d.static?.value.path).toBe('staticfiles');
    expect(d.staticNotes[0]).toMatch(note);
  });

  it('a STATIC_ROOT from the environment uses its fallback', () => {
    const d = detect(startproject('', `${STARTPROJECT_SETTINGS}\nimport os\nSTATIC_ROOT = os.environ.get("STATIC_ROOT", BASE_DIR / "static_root")\n`))!;
    expect(d.static?.value.path).toBe('static_root');
    expect(d.static?.why).toMatch(/leave STATIC_ROOT unset on the server/);
  });

  it('a STATIC_URL on another host means nginx serves no static files', () => {
    const d = detect(startproject('', `${STARTPROJECT_SETTINGS}\nSTATIC_URL = "https://cdn.example.com/static/"\n`))!;
    expect(d.static).toBeUndefined();
    expect(d.staticNotes[0]).toMatch(/cdn\.example\.com/);
  });
});

describe('where the project is', () => {
  it.each([
    ['backend/', 'backend'],
    ['src/mysite/', 'src/mysite'],
  ])('finds manage.py in %s and makes it the source', (prefix, dir) => {
    const d = detect({ 'README.md': '# repo\n', ...startproject(prefix) })!;
    expect(d.dir).toBe(dir);
    expect(d.wsgi?.value).toBe('mysite.wsgi:application');
    expect(d.sourceWhy).toMatch(new RegExp(`${dir}/manage\\.py is in a subfolder`));
  });

  it('says when requirements.txt is above the source, where it does not ship', () => {
    const d = detect({ 'requirements.txt': 'Django\n', ...startproject('src/mysite/') })!;
    expect(d.requirements).toBeUndefined();
    expect(d.requirementsNote).toMatch(/^requirements\.txt is outside the source \(src\/mysite\/\), and only the source ships/);
  });

  it('prefers the shallowest project and names the others at its depth', () => {
    const d = detect({ ...startproject('a/'), ...startproject('b/'), ...startproject('c/deeper/') })!;
    expect(d.dir).toBe('a');
    expect(d.sourceWhy).toMatch(/also found b\/manage\.py; pass --source/);
  });

  it('never looks inside virtualenvs, node_modules or hidden folders', () => {
    expect(
      detect({ ...startproject('.venv/lib/'), ...startproject('node_modules/x/'), ...startproject('tools/pyvenv/x/'), 'tools/pyvenv/pyvenv.cfg': '' }),
    ).toBeUndefined();
  });

  it('reads exactly the folder given as the source', () => {
    const root = tree({ ...startproject('backend/'), 'app.py': 'from flask import Flask\napp = Flask(__name__)\n' });
    expect(detectProjectAt(localFiles(path.join(root, 'backend')))?.framework).toBe('django');
    expect(detectProjectAt(localFiles(root))?.framework).toBe('flask');
  });

  it('finds nothing in an empty folder', () => {
    expect(detect({})).toBeUndefined();
  });
});

describe('Flask', () => {
  it('an app object: module:app and its static folder', () => {
    const d = detect({
      'app.py': 'from flask import Flask, session\nimport os\napp = Flask(__name__)\n\n@app.route("/")\ndef index():\n    return "hi"\n',
      'static/site.css': '',
    })!;
    expect(d.framework).toBe('flask');
    expect(d.wsgi?.value).toBe('app:app');
    expect(d.static?.value).toEqual({ url: '/static/', path: 'static' });
    expect(d.health?.value).toBe('/');
    // It uses sessions without reading a key: one to add.
    expect(d.secrets).toEqual([expect.objectContaining({ name: 'SECRET_KEY', generate: true })]);
    expect(d.settings[0]).toMatch(/app\.config\["SECRET_KEY"\] = os\.environ\["SECRET_KEY"\]/);
  });

  it('an application factory in a package: package:create_app(), static next to it', () => {
    const d = detect({
      'myapp/__init__.py': `import os
from flask import Flask

def create_app(test_config=None):
    app = Flask(__name__, static_url_path="/assets")
    app.config.from_mapping(SECRET_KEY=os.environ.get("MYAPP_SECRET"))
    @app.get("/healthz")
    def health():
        return "ok"
    return app
`,
      'myapp/static/x.css': '',
      'requirements.txt': 'flask\n',
    })!;
    expect(d.wsgi?.value).toBe('myapp:create_app()');
    expect(d.wsgi?.why).toMatch(/which gunicorn and uWSGI call with no arguments/);
    expect(d.static?.value).toEqual({ url: '/assets/', path: 'myapp/static' });
    expect(d.secrets).toEqual([expect.objectContaining({ name: 'MYAPP_SECRET', generate: true })]);
    expect(d.health?.value).toBe('/healthz');
    expect(d.requirements?.value).toBe('requirements.txt');
  });

  it('a factory that needs arguments: a wsgi.py must call it', () => {
    const d = detect({ 'app.py': 'from flask import Flask\n\ndef create_app(config):\n    return Flask(__name__)\n' })!;
    expect(d.wsgi?.value).toBe('wsgi:app');
    expect(d.settings.join('\n')).toMatch(/from app import create_app\napp = create_app\(\.\.\.\)/);
  });

  it('prefers the app wsgi.py makes, and adds Flask-Migrate upgrades before activation', () => {
    const d = detect({
      'wsgi.py': 'from blog import create_app\napp = create_app()\n',
      'blog/__init__.py':
        'from flask import Flask\nfrom flask_migrate import Migrate\n\ndef create_app():\n    app = Flask(__name__, static_folder=None)\n    return app\n',
    })!;
    expect(d.wsgi?.value).toBe('wsgi:app');
    expect(d.static).toBeUndefined();
    expect(d.env).toEqual([expect.objectContaining({ name: 'FLASK_APP', value: 'wsgi:app' })]);
    expect(d.hooks.before_activate.map((h) => h.value)).toEqual(['flask db upgrade']);
  });
});

describe('a plain WSGI module', () => {
  it.each([
    [{ 'wsgi.py': 'def application(environ, start_response):\n    pass\n' }, 'wsgi:application'],
    [{ 'hello/__init__.py': '', 'hello/wsgi.py': 'application = None\n' }, 'hello.wsgi:application'],
  ])('%o -> %s', (files, wsgi) => {
    expect(detect(files)).toMatchObject({ framework: 'wsgi', wsgi: { value: wsgi } });
  });
});

describe('reading Python', () => {
  it('takes top-level assignments over several lines, and leaves out indented ones', () => {
    const names = topLevelAssignments('A = [\n  "x",  # a comment\n]\nif DEBUG:\n    B = 1\nC: str = "c"\nD = \\\n  "d"\nE == 1\n');
    expect([...names.keys()]).toEqual(['A', 'C', 'D']);
    expect(names.get('A')).toBe('[\n  "x",  \n]');
    expect(names.get('D')).toBe('"d"');
  });

  it.each([
    ["os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')", 'mysite.settings'],
    ['os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")', 'config.settings.local'],
    ['os.environ["DJANGO_SETTINGS_MODULE"] = "proj.settings"', 'proj.settings'],
    ['import django', undefined],
  ])('settings module of %s', (line, module) => {
    expect(settingsModuleOf(line)).toBe(module);
  });

  it.each([
    ['os.environ["KEY"]', { name: 'KEY', required: true }],
    ["os.environ.get('KEY')", { name: 'KEY', required: false }],
    ['os.getenv("KEY", "x")', { name: 'KEY', required: false, fallback: '"x"' }],
    ['env("KEY")', { name: 'KEY', required: true }],
    ['env.bool("DEBUG", default=False)', { name: 'DEBUG', required: false, fallback: 'False' }],
    ['"KEY"', undefined],
    ['os.environ.get(name)', undefined],
  ])('envReadOf(%s)', (expr, read) => {
    expect(envReadOf(expr)).toEqual(read);
  });

  it('lists every variable read, required when any read is', () => {
    expect(envReads('A = os.environ.get("X")\nB = os.environ["X"]\n# os.environ["COMMENTED"]\nC = os.getenv("Y")')).toEqual([
      { name: 'X', required: true },
      { name: 'Y', required: false },
    ]);
  });

  const ctx = (file: string, names: Record<string, string>) => ({ file, names: new Map(Object.entries(names)) });
  it.each([
    ['BASE_DIR / "static"', ctx('mysite/settings.py', { BASE_DIR: 'Path(__file__).resolve().parent.parent' }), { kind: 'rel', rel: 'static' }],
    ["BASE_DIR / 'a' / 'b/'", ctx('mysite/settings.py', { BASE_DIR: 'Path(__file__).resolve(strict=True).parent.parent' }), { kind: 'rel', rel: 'a/b' }],
    ['str(BASE_DIR.joinpath("x"))', ctx('mysite/settings.py', { BASE_DIR: 'Path(__file__).parents[1]' }), { kind: 'rel', rel: 'x' }],
    [
      'os.path.join(BASE_DIR, "s")',
      ctx('mysite/settings.py', { BASE_DIR: 'os.path.dirname(os.path.dirname(os.path.abspath(__file__)))' }),
      { kind: 'rel', rel: 's' },
    ],
    ['Path(BASE_DIR, "s")', ctx('a/b/settings.py', { BASE_DIR: 'Path(__file__).resolve().parent' }), { kind: 'rel', rel: 'a/b/s' }],
    ['BASE_DIR / ".." / "s"', ctx('mysite/settings.py', { BASE_DIR: 'Path(__file__).resolve().parent.parent' }), { kind: 'unknown' }],
    ['Path(__file__).resolve().parent.parent.parent', ctx('mysite/settings.py', {}), { kind: 'unknown' }],
    ['"/srv/static"', ctx('s.py', {}), { kind: 'absolute', path: '/srv/static' }],
    ['"static"', ctx('s.py', {}), { kind: 'rel', rel: 'static' }],
    ['BASE_DIR / f"static"', ctx('mysite/settings.py', { BASE_DIR: 'Path(__file__).resolve().parent.parent' }), { kind: 'unknown' }],
    ['LOOP', ctx('s.py', { LOOP: 'LOOP' }), { kind: 'unknown' }],
  ])('evalPath(%s)', (expr, context, value) => {
    expect(evalPath(expr, context)).toEqual(value);
  });

  it('reads the path of an environment variable with its fallback', () => {
    expect(evalPath('os.environ.get("DB", BASE_DIR / "db.sqlite3")', ctx('m/settings.py', { BASE_DIR: 'Path(__file__).resolve().parent.parent' }))).toEqual({
      kind: 'env',
      read: { name: 'DB', required: false, fallback: 'BASE_DIR / "db.sqlite3"' },
      fallback: { kind: 'rel', rel: 'db.sqlite3' },
    });
  });

  it.each([
    ["'a'", 'a'],
    ['"a b"', 'a b'],
    ["r'x'", 'x'],
    ["f'x'", undefined],
    ["'a' + 'b'", undefined],
  ])('stringLiteral(%s)', (expr, value) => {
    expect(stringLiteral(expr)).toBe(value);
  });

  it('finds a key of a dict literal, commas inside calls included', () => {
    expect(dictValue('{"default": {"ENGINE": "x", "NAME": os.environ.get("A", B / "c"), "X": 1}}', 'NAME')).toBe('os.environ.get("A", B / "c")');
    expect(dictValue('{"NAME": "last"}', 'NAME')).toBe('"last"');
  });

  it.each([
    ["'/static/'", { url: '/static/' }],
    ["'static/'", { url: '/static/' }],
    ["'/assets'", { url: '/assets/' }],
    ["'https://cdn.example.com/s/'", { cdn: 'https://cdn.example.com/s/' }],
    ["'//cdn.example.com/s/'", { cdn: '//cdn.example.com/s/' }],
    ['get_url()', { url: '/static/' }],
  ])('STATIC_URL %s', (expr, expected) => {
    expect(staticUrlOf(expr)).toMatchObject(expected);
  });
});
