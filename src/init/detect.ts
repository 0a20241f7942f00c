/**
 * What `stack init` can tell about the project from its files: the framework, where the project
 * is (a repository often keeps it in a subfolder), its WSGI entry point, requirements, static
 * files, environment, secrets and server hooks, each with the reason, which init writes into the
 * inventory as a comment. Reading goes through a `ProjectFiles` so the rules are tested on small
 * trees; nothing here writes, prompts or runs the project's code.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { detectDjango } from './django.js';
import { detectFlask } from './flask.js';
import { topLevelAssignments } from './python.js';

/** Read-only access to the project, by posix paths relative to its root ('' or '.' is the root). */
export interface ProjectFiles {
  read(file: string): string | undefined;
  isFile(file: string): boolean;
  isDir(dir: string): boolean;
  /** Entries of a folder, sorted; empty when it cannot be read. */
  list(dir: string): { name: string; dir: boolean }[];
}

/** The files under `root` on this machine. Files over 1 MB are not read: no settings file is that big. */
export function localFiles(root: string): ProjectFiles {
  const at = (p: string) => path.join(root, p);
  const stat = (p: string) => {
    try {
      return statSync(at(p));
    } catch {
      return undefined;
    }
  };
  return {
    read: (file) => {
      const s = stat(file);
      if (!s?.isFile() || s.size > 1024 * 1024) return undefined;
      try {
        return readFileSync(at(file), 'utf8');
      } catch {
        return undefined;
      }
    },
    isFile: (file) => stat(file)?.isFile() ?? false,
    isDir: (dir) => existsSync(at(dir)) && (stat(dir)?.isDirectory() ?? false),
    list: (dir) => {
      try {
        return readdirSync(at(dir), { withFileTypes: true })
          .map((e) => ({ name: e.name, dir: e.isDirectory() }))
          .sort((a, b) => (a.name < b.name ? -1 : 1));
      } catch {
        return [];
      }
    },
  };
}

/** The same files seen from a subfolder. */
export function within(files: ProjectFiles, dir: string): ProjectFiles {
  if (dir === '.' || dir === '') return files;
  const at = (p: string) => (p === '' || p === '.' ? dir : `${dir}/${p}`);
  return { read: (f) => files.read(at(f)), isFile: (f) => files.isFile(at(f)), isDir: (d) => files.isDir(at(d)), list: (d) => files.list(at(d)) };
}

/** A value init proposes, and why (a sentence for the inventory's comments). */
export interface Found<T = string> {
  value: T;
  why: string;
}

/** A variable for `app.env`; `sharedFile` is a file in the app's writable folder, whose path depends on the app's name. */
export interface EnvProposal {
  name: string;
  value: string | { sharedFile: string };
  why: string;
}

export interface SecretProposal {
  name: string;
  why: string;
  /** A random value is what it needs (a signing key), so init can generate one. */
  generate: boolean;
}

export interface Detection {
  framework: 'django' | 'flask' | 'wsgi';
  /** The project's folder relative to the folder searched ('.' for that folder): app.source. */
  dir: string;
  /** What was found, one sentence each, for the head of the inventory. */
  summary: string[];
  /** Why app.source is this folder, when it is not the obvious one. */
  sourceWhy?: string;
  wsgi?: Found;
  requirements?: Found;
  /** Said when no requirements file is used, e.g. one exists but outside the source. */
  requirementsNote?: string;
  static?: Found<{ url: string; path: string }>;
  /** Said next to `static:` (what to add to the settings, or why there is none). */
  staticNotes: string[];
  health?: Found;
  /** Said next to `health:` when no URL that answers 200 was found. */
  healthNote?: string;
  env: EnvProposal[];
  secrets: SecretProposal[];
  /** Said next to the commented `packages:` (Debian packages the framework may need). */
  packagesNote?: string;
  hooks: { build: Found[]; before_activate: Found[] };
  /** The settings take their database from DATABASE_URL: stack can run PostgreSQL for them. */
  database?: Found<'postgresql'>;
  /** Lines for the app's settings: what to add or change, code lines indented by 4 spaces. */
  settings: string[];
}

/** Folders never searched: tooling, dependencies, virtualenvs, build output. */
const SKIP = new Set(['node_modules', '__pycache__', 'site-packages', 'dist', 'build', 'venv', 'env', 'htmlcov', 'static', 'staticfiles', 'media']);

/** How deep a project may sit under the folder init runs in: src/mysite/manage.py is 2. */
const MAX_DEPTH = 3;

/**
 * The project under `files`' root: there, or else the shallowest one in a subfolder (first by
 * name among equals). Django wins over Flask in the same folder (a Django project may import
 * Flask-like helpers, never the other way round); a plain WSGI module comes last.
 */
export function detectProject(files: ProjectFiles): Detection | undefined {
  const folders = searchOrder(files);
  for (const dir of folders) {
    const django = files.isFile(join(dir, 'manage.py')) ? detectDjango(within(files, dir)) : undefined;
    if (django) return placed(django, dir, folders, files);
  }
  for (const dir of folders) {
    const flask = detectFlask(within(files, dir));
    if (flask) return placed(flask, dir, folders, files);
  }
  return detectPlainWsgi(files);
}

/** The project in exactly this folder (when the user named the source), without searching below it. */
export function detectProjectAt(files: ProjectFiles): Detection | undefined {
  const found = (files.isFile('manage.py') ? detectDjango(files) : undefined) ?? detectFlask(files);
  return found ? { ...found, dir: '.' } : detectPlainWsgi(files);
}

function join(dir: string, file: string): string {
  return dir === '.' ? file : `${dir}/${file}`;
}

/** Enough for any repository's top levels; a huge tree is not searched to the end. */
const MAX_FOLDERS = 500;

/** '.', then its subfolders breadth first, up to MAX_DEPTH. */
function searchOrder(files: ProjectFiles): string[] {
  const out = ['.'];
  let level = ['.'];
  for (let d = 1; d <= MAX_DEPTH && out.length < MAX_FOLDERS; d++) {
    const next: string[] = [];
    for (const dir of level) {
      // A virtualenv is a folder with pyvenv.cfg, whatever its name.
      if (dir !== '.' && files.isFile(join(dir, 'pyvenv.cfg'))) continue;
      for (const e of files.list(dir)) {
        if (!e.dir || e.name.startsWith('.') || SKIP.has(e.name)) continue;
        next.push(join(dir, e.name));
      }
    }
    out.push(...next.slice(0, MAX_FOLDERS - out.length));
    level = next;
  }
  return out;
}

/** Sets the project's folder and says why, naming any other project found at the same depth. */
function placed(d: Omit<Detection, 'dir'>, dir: string, folders: string[], files: ProjectFiles): Detection {
  if (dir === '.') return { ...d, dir };
  const marker = d.framework === 'django' ? 'manage.py' : undefined;
  const depth = dir.split('/').length;
  const others = marker ? folders.filter((f) => f !== dir && f !== '.' && f.split('/').length === depth && files.isFile(join(f, marker))) : [];
  const what = d.framework === 'django' ? `${dir}/manage.py` : `the Flask app in ${dir}/`;
  // A repository often keeps requirements.txt at its root, which does not ship with the subfolder.
  const above = d.requirements ? undefined : requirementsAbove(files, dir);
  return {
    ...d,
    dir,
    ...optional(
      'requirementsNote',
      above ? `${above} is outside the source (${dir}/), and only the source ships: move it, or copy it into ${dir}/, and set requirements` : undefined,
    ),
    sourceWhy:
      `${what} is in a subfolder: only it ships, and the app's modules import from there as they do locally` +
      (others.length ? ` (also found ${others.map((o) => `${o}/${marker}`).join(', ')}; pass --source to pick another)` : ''),
  };
}

/** The nearest requirements file in a folder above `dir` (up to the root searched). */
function requirementsAbove(files: ProjectFiles, dir: string): string | undefined {
  const parts = dir.split('/');
  for (let n = parts.length - 1; n >= 0; n--) {
    const base = parts.slice(0, n).join('/');
    const found = REQUIREMENTS.map((f) => (base ? `${base}/${f}` : f)).find((f) => files.isFile(f));
    if (found) return found;
  }
  return undefined;
}

/** Requirements files in the order a deploy would want them. */
const REQUIREMENTS = ['requirements.txt', 'requirements/production.txt', 'requirements/prod.txt', 'requirements/base.txt', 'requirements/common.txt'];

/** The project's pip requirements file, relative to its folder, if it has one. */
export function findRequirements(files: ProjectFiles): Found | undefined {
  const file = REQUIREMENTS.find((f) => files.isFile(f));
  return file ? { value: file, why: `found ${file}; pip installs it into each release's virtualenv` } : undefined;
}

/** A module with a top-level `application` (or `app`) and nothing framework-specific. */
function detectPlainWsgi(files: ProjectFiles): Detection | undefined {
  // A package's wsgi.py (Django's layout without manage.py) after the usual module names.
  const packaged = files
    .list('.')
    .filter((e) => e.dir && !e.name.startsWith('.') && !SKIP.has(e.name))
    .map((e) => `${e.name}/wsgi.py`);
  for (const file of ['wsgi.py', 'app.py', 'application.py', 'main.py', ...packaged]) {
    const text = files.read(file);
    if (text === undefined) continue;
    const names = topLevelAssignments(text);
    const defined = (n: string) => names.has(n) || new RegExp(`^def ${n}\\s*\\(`, 'm').test(text);
    const callable = ['application', 'app'].find(defined);
    if (!callable) continue;
    const wsgi = `${file.replace(/\.py$/, '').replace(/\//g, '.')}:${callable}`;
    return {
      framework: 'wsgi',
      dir: '.',
      summary: [`A WSGI module: ${file} defines ${callable}.`],
      wsgi: { value: wsgi, why: `${file} defines ${callable} at its top level` },
      ...optional('requirements', findRequirements(files)),
      staticNotes: [],
      env: [],
      secrets: [],
      hooks: { build: [], before_activate: [] },
      settings: [],
    };
  }
  return undefined;
}

/** `{ key: value }` when value is defined, else nothing (exactOptionalPropertyTypes-friendly spreads). */
export function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
