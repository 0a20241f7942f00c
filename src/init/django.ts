/**
 * A Django project as `stack init` reads it: manage.py names the settings module; the settings
 * name the WSGI application, STATIC_ROOT and STATIC_URL, the database, and the variables they
 * read from the environment. From those come the inventory's wsgi, static, env, secrets and the
 * two server hooks, and the settings lines the project still needs for running behind stack.
 */
import { type Detection, type EnvProposal, type Found, findRequirements, optional, type ProjectFiles, type SecretProposal } from './detect.js';
import {
  dictValue,
  type EnvRead,
  envReadOf,
  envReads,
  evalPath,
  type PathContext,
  type PathValue,
  stringLiteral,
  stripComments,
  topLevelAssignments,
} from './python.js';

/** The settings module manage.py selects: `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")`. */
export function settingsModuleOf(managePy: string): string | undefined {
  const m = /DJANGO_SETTINGS_MODULE['"]\s*\]?\s*[,=]\s*['"]([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)['"]/.exec(managePy);
  return m?.[1];
}

/** The file of a dotted module: a module file, else a package's __init__.py. */
export function moduleFile(files: ProjectFiles, module: string): string | undefined {
  const base = module.split('.').join('/');
  return [`${base}.py`, `${base}/__init__.py`].find((f) => files.isFile(f));
}

/** Settings as read: every top-level name, where it was set, and the text of all files involved. */
export interface SettingsSource {
  file: string;
  names: Map<string, string>;
  fileOf: Map<string, string>;
  text: string;
}

/**
 * The settings module's assignments, including those it takes with `from .base import *` (a
 * settings package: base, then production overriding it), followed a few levels deep.
 */
export function readSettings(files: ProjectFiles, module: string, depth = 0): SettingsSource | undefined {
  const file = moduleFile(files, module);
  const text = file === undefined ? undefined : files.read(file);
  if (file === undefined || text === undefined) return undefined;
  const names = new Map<string, string>();
  const fileOf = new Map<string, string>();
  let all = '';
  const own = topLevelAssignments(text);
  if (depth < 4) {
    const pkg = file.endsWith('/__init__.py') ? module : module.split('.').slice(0, -1).join('.');
    for (const m of text.matchAll(/^from\s+(\.*)([A-Za-z_][\w.]*)?\s+import\s+\*/gm)) {
      const dots = m[1]!.length;
      const parent = dots === 0 ? [] : pkg.split('.').slice(0, pkg.split('.').length - (dots - 1));
      const target = [...parent, ...(m[2] ? [m[2]] : [])].filter(Boolean).join('.');
      const base = target && target !== module ? readSettings(files, target, depth + 1) : undefined;
      if (!base) continue;
      for (const [k, v] of base.names) {
        names.set(k, v);
        fileOf.set(k, base.fileOf.get(k)!);
      }
      all += `${base.text}\n`;
    }
  }
  for (const [k, v] of own) {
    names.set(k, v);
    fileOf.set(k, file);
  }
  return { file, names, fileOf, text: `${all}${text}` };
}

function pathContext(s: SettingsSource, name: string): PathContext {
  return { file: s.fileOf.get(name) ?? s.file, names: s.names, fileOf: s.fileOf };
}

/** STATIC_URL as nginx's location: '/static/'; undefined for a URL on another host (a CDN). */
export function staticUrlOf(expr: string | undefined): { url: string; why: string } | { cdn: string } {
  const literal = expr === undefined ? undefined : stringLiteral(expr);
  if (literal === undefined)
    return {
      url: '/static/',
      why: expr === undefined ? 'STATIC_URL is not set; Django needs it, /static/ is usual' : `STATIC_URL is not a plain string; assuming /static/`,
    };
  if (/^(https?:)?\/\//.test(literal)) return { cdn: literal };
  const url = `/${literal.replace(/^\/+/, '').replace(/\/*$/, '/')}`.replace(/^\/\/$/, '/');
  if (!/^\/([A-Za-z0-9._~-]+\/)*$/.test(url) || url === '/')
    return { url: '/static/', why: `STATIC_URL ${JSON.stringify(literal)} is not a plain path; assuming /static/` };
  return { url, why: `STATIC_URL = ${JSON.stringify(literal)}` };
}

/** A folder inside the release that nginx may serve: not the release itself, nothing hidden. */
function servable(rel: string): boolean {
  return rel !== '.' && !rel.split('/').some((p) => p.startsWith('.'));
}

/** The Python that puts a folder of the project into the settings, from the settings file's own place. */
function pythonPathTo(settingsFile: string, baseDir: PathValue | undefined, rel: string): string {
  const quoted = rel
    .split('/')
    .map((p) => JSON.stringify(p))
    .join(' / ');
  if (baseDir?.kind === 'rel' && baseDir.rel === '.') return `BASE_DIR / ${quoted}`;
  const levels = settingsFile.split('/').length;
  return `Path(__file__).resolve()${'.parent'.repeat(levels)} / ${quoted}`;
}

/** Secret-looking names: a value that must not be in the inventory or in git. */
const SECRET_NAME = /(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIALS|DATABASE_URL|_DSN$)/;

/** Said when the settings use a database stack runs and the requirements bring no driver for it. */
const DRIVER_NOTE = 'PostgreSQL needs a driver: python3-psycopg2 and python3-dj-database-url here (or psycopg2 and dj-database-url in the requirements)';

/** The requirements file's text, or '' (a driver named there needs no Debian package). */
function requirementsText(files: ProjectFiles, requirements: Found | undefined): string {
  return requirements ? (files.read(requirements.value) ?? '') : '';
}

/** What stack itself puts in the app's environment. */
const STACK_PROVIDES = new Set(['STACK_APP', 'STACK_ENV', 'STACK_RELEASE', 'STACK_DOMAINS', 'STACK_URL']);

export function detectDjango(files: ProjectFiles): Omit<Detection, 'dir'> | undefined {
  const manage = files.read('manage.py');
  if (manage === undefined || !/django/i.test(manage)) return undefined;
  const fromManage = settingsModuleOf(manage);
  const settingsModule = fromManage ?? guessSettingsModule(files);
  const summary: string[] = [];
  const settingsLines: string[] = [];
  const staticNotes: string[] = [];
  const env: EnvProposal[] = [];
  const secrets: SecretProposal[] = [];
  const hooks: Detection['hooks'] = { build: [], before_activate: [] };

  if (!settingsModule) {
    return {
      framework: 'django',
      summary: ['A Django project (manage.py), but its settings module was not found: set wsgi, static and env by hand.'],
      ...optional('requirements', findRequirements(files)),
      staticNotes: [],
      env: [],
      secrets: [],
      hooks: {
        build: [],
        before_activate: [{ value: 'python manage.py migrate --noinput', why: 'applies the migrations as the app, before the release goes live' }],
      },
      settings: [],
    };
  }
  const settings = readSettings(files, settingsModule);
  const settingsFile = settings?.file ?? `${settingsModule.split('.').join('/')}.py`;
  summary.push(
    fromManage
      ? `A Django project: manage.py sets DJANGO_SETTINGS_MODULE=${settingsModule}${settings ? ` (${settings.file})` : ', which was not found'}.`
      : `A Django project: manage.py does not name its settings; ${settingsModule} (${settingsFile}) looks like them.`,
  );
  env.push({
    name: 'DJANGO_SETTINGS_MODULE',
    value: settingsModule,
    why: fromManage ? 'As manage.py sets it; the app, its hooks and manage.py on the server all read it' : `Guessed from ${settingsFile}`,
  });
  const names = settings?.names ?? new Map<string, string>();
  const expr = (n: string) => names.get(n);

  // The WSGI application: settings.WSGI_APPLICATION, else <settings package>.wsgi.
  const wsgi = wsgiOf(files, settingsModule, expr('WSGI_APPLICATION'));

  // Static files: nginx serves STATIC_ROOT from the release; collectstatic fills it while the
  // release can still be written (a build hook), never the app at run time.
  const installed = expr('INSTALLED_APPS') ?? '';
  const staticfiles = settings === undefined || installed.includes('django.contrib.staticfiles');
  let staticFound: Found<{ url: string; path: string }> | undefined;
  if (staticfiles) {
    const url = staticUrlOf(expr('STATIC_URL'));
    if ('cdn' in url) {
      staticNotes.push(`No static: STATIC_URL is ${url.cdn}, on another host; collectstatic still runs (a build hook) if the storage needs it.`);
    } else {
      const baseDir = names.has('BASE_DIR') && settings ? evalPath('BASE_DIR', pathContext(settings, 'BASE_DIR')) : undefined;
      const rootExpr = expr('STATIC_ROOT');
      const root = rootExpr !== undefined && settings ? evalPath(rootExpr, pathContext(settings, 'STATIC_ROOT')) : undefined;
      const usable = (v: PathValue | undefined) => (v?.kind === 'rel' && servable(v.rel) ? v.rel : undefined);
      const direct = usable(root);
      const fallback = root?.kind === 'env' ? usable(root.fallback) : undefined;
      if (direct) {
        staticFound = {
          value: { url: url.url, path: direct },
          why: `STATIC_ROOT = ${oneLine(rootExpr!)} in ${settings!.fileOf.get('STATIC_ROOT')}; ${url.why}`,
        };
      } else if (fallback && root?.kind === 'env') {
        staticFound = {
          value: { url: url.url, path: fallback },
          why: `STATIC_ROOT is ${root.read.name} from the environment, else ${oneLine(root.read.fallback ?? '')}: leave ${root.read.name} unset on the server; ${url.why}`,
        };
      } else {
        const proposed = 'staticfiles';
        const line = `STATIC_ROOT = ${pythonPathTo(settingsFile, baseDir, proposed)}`;
        staticFound = { value: { url: url.url, path: proposed }, why: `${url.why}; STATIC_ROOT must be a folder inside the project for nginx to serve it` };
        const reason =
          rootExpr === undefined
            ? `${settingsFile} sets no STATIC_ROOT`
            : root?.kind === 'absolute'
              ? `STATIC_ROOT is ${root.path}, outside the release`
              : `STATIC_ROOT (${oneLine(rootExpr)}) is not a folder stack can work out`;
        staticNotes.push(`${reason}: add this line to ${settingsFile}, or collectstatic fails:`, `    ${line}`);
        settingsLines.push('# collectstatic writes here, in the release; nginx serves it', line);
      }
      hooks.build.push({
        value: 'python manage.py collectstatic --noinput',
        why: `copies the static files of every app into STATIC_ROOT${staticFound ? ` (${staticFound.value.path}/)` : ''}, which nginx serves`,
      });
    }
  }
  hooks.before_activate.push({
    value: 'python manage.py migrate --noinput',
    why: 'applies the migrations; if one fails, the release does not go live and the old one keeps serving',
  });

  const reads = settings ? envReads(settings.text) : [];
  const used = new Set<string>(['DJANGO_SETTINGS_MODULE']);

  // SECRET_KEY: always a secret; generated on request when the settings read it from the environment.
  const keyExpr = expr('SECRET_KEY');
  const keyRead = keyExpr === undefined ? undefined : envReadOf(keyExpr);
  if (keyRead) {
    secrets.push({ name: keyRead.name, why: `${settingsFile} reads SECRET_KEY from ${keyRead.name}`, generate: true });
    used.add(keyRead.name);
    if (keyRead.fallback !== undefined) {
      settingsLines.push('# No fallback: a missing key must stop the app, not weaken it', `SECRET_KEY = os.environ["${keyRead.name}"]`);
    }
  } else {
    secrets.push({ name: 'SECRET_KEY', why: `${settingsFile} does not read SECRET_KEY from the environment yet (see the settings below)`, generate: true });
    used.add('SECRET_KEY');
    settingsLines.push('# From .stack/secrets.<env> (or the environment), never from git', 'SECRET_KEY = os.environ["SECRET_KEY"]');
  }

  // The database: a SQLite file must live where the app may write, which the release is not.
  const db = databaseOf(settings);
  let database: Found<'postgresql'> | undefined;
  if (db?.kind === 'env' && db.read.name === 'DATABASE_URL') {
    // The URL stack sets when it runs PostgreSQL for the app: nothing to keep secret, no server to set up by hand.
    database = {
      value: 'postgresql',
      why: `${settingsFile} reads the database from DATABASE_URL, which stack sets when it runs PostgreSQL on the server for the app (its own role, no password). A database that lives elsewhere: delete database: and list DATABASE_URL under secrets`,
    };
    used.add(db.read.name);
  } else if (db?.kind === 'env') {
    if (SECRET_NAME.test(db.read.name)) {
      secrets.push({ name: db.read.name, why: `${settingsFile} reads the database from ${db.read.name}`, generate: false });
    } else {
      env.push({
        name: db.read.name,
        value: { sharedFile: db.file },
        why: `${settingsFile} reads the SQLite file's path from ${db.read.name}; the app may write only its shared folder (releases are read-only)`,
      });
    }
    used.add(db.read.name);
  } else if (db?.kind === 'fixed') {
    settingsLines.push(
      "# Releases are read-only on the server: the inventory's env puts SQLITE_PATH in the shared folder",
      `DATABASES["default"]["NAME"] = os.environ.get("SQLITE_PATH", ${db.expr})`,
    );
    env.push({ name: 'SQLITE_PATH', value: { sharedFile: db.file }, why: "the SQLite file, in the app's writable shared folder (releases are read-only)" });
    used.add('SQLITE_PATH');
  }

  // Hosts and CSRF origins: stack sets STACK_DOMAINS and STACK_URL for the environment. An
  // assignment inside an `if` (one per Django version) counts too.
  const text = settings?.text ?? '';
  const assigned = (n: string) => [...stripComments(text).matchAll(new RegExp(`^[ \\t]*${n}\\s*=(.*)$`, 'gm'))].map((m) => m[1]!);
  const hostsFromStack = assigned('ALLOWED_HOSTS').some((e) => /STACK_DOMAINS/.test(e));
  const csrfFromStack = assigned('CSRF_TRUSTED_ORIGINS').some((e) => /STACK_(URL|DOMAINS)/.test(e) || (hostsFromStack && /ALLOWED_HOSTS/.test(e)));
  if (hostsFromStack || csrfFromStack) {
    const both = hostsFromStack && csrfFromStack;
    summary.push(
      `${settingsFile} reads STACK_DOMAINS${both ? ' for ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS' : hostsFromStack ? ' for ALLOWED_HOSTS' : ' for CSRF_TRUSTED_ORIGINS'}, which stack sets to the environment's domains.`,
    );
  }
  if (!hostsFromStack)
    settingsLines.push("# Every domain of the environment (the inventory's domains)", 'ALLOWED_HOSTS = os.environ["STACK_DOMAINS"].split(",")');
  if (!csrfFromStack) {
    settingsLines.push(
      '# Django 4.0 and later: origins with their scheme, taken from STACK_URL (e.g. https://...)',
      'CSRF_TRUSTED_ORIGINS = [os.environ["STACK_URL"].split("://")[0] + "://" + d for d in ALLOWED_HOSTS]',
      '# Django 3.2 (Debian 12) takes host names instead: CSRF_TRUSTED_ORIGINS = ALLOWED_HOSTS',
    );
  }
  if (!names.has('SECURE_PROXY_SSL_HEADER')) {
    settingsLines.push(
      '# nginx ends TLS and always sets this header, so Django knows a request came over HTTPS',
      'SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")',
    );
  }
  const debug = expr('DEBUG');
  if (debug !== undefined && /^True$/.test(debug.trim())) settingsLines.push('# Never on in production', 'DEBUG = os.environ.get("DJANGO_DEBUG") == "1"');

  // Other variables the settings read: secrets when they look like one and are required.
  const others: EnvRead[] = reads.filter((r) => !used.has(r.name) && !STACK_PROVIDES.has(r.name) && r.name !== 'DJANGO_DEBUG');
  for (const r of others.filter((o) => o.required && SECRET_NAME.test(o.name))) {
    secrets.push({ name: r.name, why: `${settingsFile} requires ${r.name}`, generate: false });
    used.add(r.name);
  }
  const rest = others.filter((o) => !used.has(o.name));
  if (rest.length > 0) {
    summary.push(
      `The settings also read ${rest.map((r) => `${r.name}${r.required ? ' (required)' : ''}`).join(', ')} from the environment: add them to env (or secrets) as needed.`,
    );
  }

  const requirements = findRequirements(files);
  const health = healthOf(files, settings, expr('ROOT_URLCONF'));
  const healthNote = health
    ? undefined
    : 'No health view was found in the root URLconf: add one that answers 200 (e.g. path("health/", ...)) and name it here, or a deploy fails its health check';
  return {
    framework: 'django',
    summary,
    wsgi,
    ...optional('requirements', requirements),
    ...optional('static', staticFound),
    staticNotes,
    ...optional('health', health),
    ...optional('healthNote', healthNote),
    packagesNote: [
      "Django from Debian instead of pip: packages: [python3-django, libjs-jquery]; the admin's jQuery is a link into libjs-jquery, which apt only recommends, and collectstatic fails without it",
      ...(database && !/psycopg/i.test(requirementsText(files, requirements)) ? [DRIVER_NOTE] : []),
    ].join('. '),
    ...optional('database', database),
    env,
    secrets,
    hooks,
    settings: settingsLines,
  };
}

/** A settings module next to manage.py when manage.py does not name one: <pkg>/settings.py beside <pkg>/wsgi.py. */
function guessSettingsModule(files: ProjectFiles): string | undefined {
  for (const e of files.list('.')) {
    if (!e.dir) continue;
    if (files.isFile(`${e.name}/settings.py`) || files.isFile(`${e.name}/settings/__init__.py`)) return `${e.name}.settings`;
  }
  return undefined;
}

function wsgiOf(files: ProjectFiles, settingsModule: string, setting: string | undefined): Found {
  const literal = setting === undefined ? undefined : stringLiteral(setting);
  if (literal && /^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$/.test(literal)) {
    const dot = literal.lastIndexOf('.');
    const module = literal.slice(0, dot);
    if (moduleFile(files, module)) return { value: `${module}:${literal.slice(dot + 1)}`, why: `WSGI_APPLICATION = "${literal}" in the settings` };
  }
  const pkg = settingsModule.split('.')[0]!;
  const module = `${pkg}.wsgi`;
  if (moduleFile(files, module)) return { value: `${module}:application`, why: `${moduleFile(files, module)} is the project's WSGI module` };
  const any = files.list('.').find((e) => e.dir && files.isFile(`${e.name}/wsgi.py`));
  if (any) return { value: `${any.name}.wsgi:application`, why: `${any.name}/wsgi.py is the project's WSGI module` };
  return { value: `${module}:application`, why: `${pkg}/wsgi.py was not found (Django's startproject makes it): create it or fix this line` };
}

/** The default database, when it is SQLite: a path from the environment, or a fixed one. */
function databaseOf(
  settings: SettingsSource | undefined,
): { kind: 'env'; read: EnvRead; file: string } | { kind: 'fixed'; expr: string; file: string } | undefined {
  const databases = settings?.names.get('DATABASES');
  if (!settings || databases === undefined) return undefined;
  // dj_database_url.config() reads DATABASE_URL itself; django-environ's env.db() too.
  const wholeRead = /(?:dj_database_url\.(?:config|parse)|env\.db|env\.db_url)\s*\(\s*(?:(['"])([A-Za-z_]\w*)\1)?/.exec(databases);
  if (wholeRead) return { kind: 'env', read: { name: wholeRead[2] ?? 'DATABASE_URL', required: true }, file: 'db.sqlite3' };
  if (!/sqlite3/.test(databases)) return undefined;
  const nameExpr = dictValue(databases, 'NAME');
  if (!nameExpr) return undefined;
  const value = evalPath(nameExpr, pathContext(settings, 'DATABASES'));
  const base = (v: PathValue | undefined) =>
    v?.kind === 'rel' || v?.kind === 'absolute' ? (v.kind === 'rel' ? v.rel : v.path).split('/').pop()! : 'db.sqlite3';
  if (value.kind === 'env') return { kind: 'env', read: value.read, file: safeFile(base(value.fallback)) };
  if (value.kind === 'rel') return { kind: 'fixed', expr: nameExpr, file: safeFile(base(value)) };
  return undefined;
}

/** A file name for the inventory: plain characters only, whatever the settings used. */
function safeFile(name: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) ? name : 'db.sqlite3';
}

/** A URL that answers 200 without a session: a health view in the root URLconf, else the admin's login page. */
function healthOf(files: ProjectFiles, settings: SettingsSource | undefined, urlconf: string | undefined): Found | undefined {
  const module = urlconf === undefined ? undefined : stringLiteral(urlconf);
  const file = module ? moduleFile(files, module) : undefined;
  const text = file ? files.read(file) : undefined;
  if (!text || !settings) return undefined;
  const health = /(?:^|[^\w])(?:path|re_path|url)\(\s*r?['"]\^?((?:[\w-]+\/)*(?:health|healthz|healthcheck|ping|status)[\w-]*\/?)\$?['"]/m.exec(text);
  if (health) return { value: `/${health[1]}`, why: `${file} routes ${health[1]} (must answer 200 through nginx after each deploy)` };
  const admin = /path\(\s*['"]([\w/-]*)['"]\s*,\s*admin\.site\.urls/.exec(text);
  if (admin) {
    const prefix = admin[1]!.replace(/^\/*/, '').replace(/\/*$/, '/');
    return {
      value: `/${prefix === '/' ? '' : prefix}login/`,
      why: `no health view in ${file}; the admin's login page answers 200 without a session (a view that checks the database is better)`,
    };
  }
  return undefined;
}

/** An expression on one line, shortened for a comment. */
function oneLine(expr: string): string {
  const s = expr.replace(/\s+/g, ' ').trim();
  return s.length > 70 ? `${s.slice(0, 67)}...` : s;
}
