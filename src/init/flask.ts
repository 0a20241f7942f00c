/**
 * A Flask app as `stack init` reads it: the module that makes the app (an `app = Flask(...)` at
 * the top level, or an application factory such as `create_app()`), its static folder, the
 * secret key it reads from the environment, a health route, and Flask-Migrate's upgrade.
 */
import { type Detection, type Found, findRequirements, optional, type ProjectFiles, type SecretProposal } from './detect.js';
import { callArgs, envReads, moduleOf, stringLiteral, stripComments, topLevelAssignments } from './python.js';

/** Modules that usually hold the app, in the order a person would look. */
const LIKELY = ['wsgi.py', 'app.py', 'application.py', 'main.py', 'run.py', 'server.py', '__init__.py'];

interface Candidate {
  file: string;
  text: string;
}

/** Where the app object comes from. */
export interface FlaskApp {
  /** module:callable, or module:factory() for a factory gunicorn and uWSGI call with no arguments. */
  wsgi: string;
  /** The file that calls Flask(...) (whose folder holds static/), when known. */
  flaskFile?: string;
  flaskArgs?: string[];
  why: string;
  /** A factory with required parameters cannot be called by the gateway: a wsgi.py must call it. */
  needsShim?: { factory: string; module: string };
}

/** Python files of this folder and its packages that import Flask. */
function candidates(files: ProjectFiles): Candidate[] {
  const out: Candidate[] = [];
  const add = (file: string) => {
    const text = files.read(file);
    if (text !== undefined) out.push({ file, text });
  };
  const entries = files.list('.');
  const order = (name: string) => (LIKELY.includes(name) ? LIKELY.indexOf(name) : LIKELY.length);
  for (const e of entries.filter((x) => !x.dir && x.name.endsWith('.py')).sort((a, b) => order(a.name) - order(b.name) || (a.name < b.name ? -1 : 1)))
    add(e.name);
  for (const e of entries.filter((x) => x.dir && !x.name.startsWith('.') && files.isFile(`${x.name}/__init__.py`))) {
    for (const f of files.list(e.name).filter((x) => !x.dir && LIKELY.includes(x.name))) add(`${e.name}/${f.name}`);
  }
  return out;
}

const IMPORTS_FLASK = /^\s*(?:from\s+flask\s+import\s|import\s+flask\b)/m;
const FACTORY = /^def\s+(create_app|make_app|app_factory|get_app)\s*\(([^)]*)\)/m;

/** Whether every parameter of a `def f(...)` has a default (the gateway calls it with none). */
function callableWithoutArguments(params: string): boolean {
  return params
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '' && p !== '*' && p !== '/' && !p.startsWith('*'))
    .every((p) => p.includes('='));
}

/** The app object: an instance in wsgi.py first, then one elsewhere, then a factory. */
export function findFlaskApp(all: Candidate[]): FlaskApp | undefined {
  const instances: FlaskApp[] = [];
  for (const c of all) {
    for (const [name, expr] of topLevelAssignments(c.text)) {
      const flask = callArgs(expr, String.raw`(?:flask\.)?Flask`);
      if (flask) {
        instances.push({ wsgi: `${moduleOf(c.file)}:${name}`, flaskFile: c.file, flaskArgs: flask, why: `${c.file} makes the app: ${name} = Flask(...)` });
        continue;
      }
      const made = /^(?:[\w.]+\.)?(create_app|make_app|app_factory|get_app)\s*\(/.exec(expr.trim());
      if (made && callArgs(expr, String.raw`(?:[\w.]+\.)?${made[1]}`)) {
        instances.push({ wsgi: `${moduleOf(c.file)}:${name}`, why: `${c.file} makes the app: ${name} = ${made[1]}(...)` });
      }
    }
  }
  const preferred = instances.find((i) => i.wsgi.startsWith('wsgi:')) ?? instances[0];
  const factoryFile = all.find((c) => FACTORY.test(stripComments(c.text)));
  if (preferred) {
    // The factory's file still says where Flask(...) is, for the static folder.
    if (!preferred.flaskFile && factoryFile) return { ...preferred, ...flaskCall(factoryFile) };
    return preferred;
  }
  if (!factoryFile) return undefined;
  const [, factory, params] = FACTORY.exec(stripComments(factoryFile.text))!;
  const module = moduleOf(factoryFile.file);
  if (!callableWithoutArguments(params!)) {
    return {
      wsgi: 'wsgi:app',
      ...flaskCall(factoryFile),
      why: `${factoryFile.file} has the factory ${factory}(${params!.trim()}), whose parameters need values: a wsgi.py must call it`,
      needsShim: { factory: factory!, module },
    };
  }
  return {
    wsgi: `${module}:${factory}()`,
    ...flaskCall(factoryFile),
    why: `${factoryFile.file} has the application factory ${factory}(), which gunicorn and uWSGI call with no arguments to make the app`,
  };
}

/** The Flask(...) call inside a file (a factory's body), for its static folder. */
function flaskCall(c: Candidate): Pick<FlaskApp, 'flaskFile' | 'flaskArgs'> {
  const m = /(?<![\w.])(?:flask\.)?Flask\s*\(/.exec(stripComments(c.text));
  if (!m) return {};
  const text = stripComments(c.text).slice(m.index);
  // The call's text up to its closing bracket.
  let d = 0;
  for (let i = text.indexOf('('); i < text.length; i++) {
    if (text[i] === '(') d++;
    else if (text[i] === ')' && --d === 0) return { flaskFile: c.file, flaskArgs: callArgs(text.slice(0, i + 1), String.raw`(?:flask\.)?Flask`) ?? [] };
  }
  return { flaskFile: c.file };
}

/** Flask's static folder and URL from Flask(__name__, static_folder=..., static_url_path=...). */
export function flaskStatic(files: ProjectFiles, app: FlaskApp): Found<{ url: string; path: string }> | { note: string } | undefined {
  if (!app.flaskFile) return undefined;
  const kw = (key: string) =>
    app.flaskArgs
      ?.find((a) => a.replace(/\s/g, '').startsWith(`${key}=`))
      ?.replace(/^[^=]*=/, '')
      .trim();
  const folderArg = kw('static_folder');
  if (folderArg === 'None') return undefined;
  const folder = folderArg === undefined ? 'static' : stringLiteral(folderArg);
  if (folder === undefined || folder.startsWith('/') || folder.split('/').some((p) => p === '..' || p.startsWith('.'))) {
    return { note: `static_folder=${folderArg} is not a plain folder inside the project: set static by hand` };
  }
  const dir = app.flaskFile.split('/').slice(0, -1);
  const rel = [...dir, ...folder.split('/').filter((p) => p && p !== '.')].join('/');
  if (!rel || !files.isDir(rel)) return undefined;
  const urlArg = kw('static_url_path');
  const urlLiteral = urlArg === undefined ? `/${folder.split('/').pop()}` : stringLiteral(urlArg);
  if (urlLiteral === undefined) return { note: `static_url_path=${urlArg} is not a plain string: set static by hand` };
  const url = `/${urlLiteral.replace(/^\/+/, '').replace(/\/*$/, '/')}`;
  if (!/^\/([A-Za-z0-9._~-]+\/)+$/.test(url)) return { note: `static_url_path ${JSON.stringify(urlLiteral)} is not a plain URL path: set static by hand` };
  return { value: { url, path: rel }, why: `Flask serves ${rel}/ at ${url}; nginx serves it instead, straight from the release` };
}

export function detectFlask(files: ProjectFiles): Omit<Detection, 'dir'> | undefined {
  const all = candidates(files);
  const flaskFiles = all.filter((c) => IMPORTS_FLASK.test(c.text));
  if (flaskFiles.length === 0) return undefined;
  const app = findFlaskApp(all.filter((c) => IMPORTS_FLASK.test(c.text) || /create_app|make_app/.test(c.text)));
  if (!app) return undefined;

  const summary = [`A Flask app: ${app.why}.`];
  const settings: string[] = [];
  const staticNotes: string[] = [];
  if (app.needsShim) {
    settings.push(
      `# wsgi.py, next to ${app.needsShim.module.split('.').join('/')}, calls the factory with the values it needs:`,
      `from ${app.needsShim.module} import ${app.needsShim.factory}`,
      `app = ${app.needsShim.factory}(...)`,
    );
  }
  const st = flaskStatic(files, app);
  if (st && 'note' in st) staticNotes.push(st.note);

  const texts = all.map((c) => c.text).join('\n');
  const secrets: SecretProposal[] = [];
  const keyRead = /(?:SECRET_KEY|secret_key)[^\n]*?(?:os\.environ\.get|os\.getenv|os\.environ)\s*[[(]\s*['"]([A-Za-z_]\w*)['"]/.exec(stripComments(texts));
  if (keyRead) secrets.push({ name: keyRead[1]!, why: `the app reads its secret key from the variable ${keyRead[1]}`, generate: true });
  else if (/from_prefixed_env\s*\(/.test(texts))
    secrets.push({ name: 'FLASK_SECRET_KEY', why: 'app.config.from_prefixed_env() reads SECRET_KEY from FLASK_SECRET_KEY', generate: true });
  else if (/^\s*from\s+flask\s+import\s[^\n]*\bsession\b|flask_login|flask_wtf/m.test(texts)) {
    secrets.push({ name: 'SECRET_KEY', why: 'the app uses sessions, which Flask signs with SECRET_KEY (see the settings below)', generate: true });
    settings.push('app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]  # sessions are signed with it; from .stack/secrets.<env>');
  }
  const used = new Set(secrets.map((s) => s.name));
  for (const r of envReads(texts).filter((x) => x.required && !used.has(x.name) && /(SECRET|PASSWORD|TOKEN|API_KEY|DATABASE_URL|_DSN$)/.test(x.name))) {
    secrets.push({ name: r.name, why: `the app requires ${r.name}`, generate: false });
    used.add(r.name);
  }

  const env: Detection['env'] = [];
  const hooks: Detection['hooks'] = { build: [], before_activate: [] };
  if (/^\s*(?:from\s+flask_migrate\s+import|import\s+flask_migrate)/m.test(texts)) {
    env.push({ name: 'FLASK_APP', value: app.wsgi, why: 'the flask command (Flask-Migrate) finds the app through it' });
    hooks.before_activate.push({ value: 'flask db upgrade', why: "Flask-Migrate's migrations, as the app's user, before the release goes live" });
  }

  const route = /@\w+\.(?:route|get)\(\s*['"](\/(?:health|healthz|healthcheck|ping|status)[\w/-]*)['"]/.exec(texts);
  const root = /@\w+\.(?:route|get)\(\s*['"]\/['"]/.test(texts);
  const health: Found | undefined = route
    ? { value: route[1]!, why: `the app routes ${route[1]} (must answer 200 through nginx after each deploy)` }
    : root
      ? { value: '/', why: 'no health route found; the home page must answer 200 (a /health route is better)' }
      : undefined;

  return {
    framework: 'flask',
    summary,
    wsgi: { value: app.wsgi, why: app.why },
    ...optional('requirements', findRequirements(files)),
    ...optional('static', st && !('note' in st) ? st : undefined),
    staticNotes,
    ...optional('health', health),
    ...optional(
      'healthNote',
      health ? undefined : 'No health route was found: add one that answers 200 (e.g. @app.get("/health")), or a deploy fails its health check',
    ),
    env,
    secrets,
    hooks,
    settings,
  };
}
