/**
 * `stack init`: a short wizard that writes a commented inventory. It first reads the project
 * (src/init/detect.ts): a Django project or a Flask app, there or in a subfolder, gives the
 * defaults and the parts a person would otherwise have to know to write (hooks, static, env,
 * secrets), each with its reason as a comment. Every question has a flag, and `--yes` takes the
 * defaults, so it also runs without a terminal. The file is written only after the last answer
 * and only if it validates; an existing inventory is kept unless --force. Generated secrets go
 * to `.stack/secrets.<env>` (0600), never over an existing value and never to the screen.
 */
import { existsSync } from 'node:fs';
import { appendFile, link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import pc from 'picocolors';
import type { GlobalOptions } from './options.js';
import { StackError, UsageError } from '../errors.js';
import { type Detection, detectProject, detectProjectAt, localFiles } from '../init/detect.js';
import { type InitAnswers, inventoryText, type SecretSource } from '../init/inventory.js';
import { addGeneratedSecrets, secretsFileState } from '../init/secrets.js';
import { parseInventory } from '../inventory/load.js';
import { AppSchema, EnvironmentSchema, HostSchema, domain } from '../inventory/schema.js';

export interface InitOptions {
  name?: string;
  source?: string;
  wsgi?: string;
  gateway?: 'gunicorn' | 'uwsgi';
  domains?: string;
  ssl?: 'none' | 'letsencrypt' | 'self-signed';
  email?: string;
  env?: string;
  host?: string;
  user?: string;
  port?: string;
  /** --generate-secrets / --no-generate-secrets; unset: asked, or yes with --yes. */
  generateSecrets?: boolean;
  yes: boolean;
  force: boolean;
}

export type { InitAnswers };

const SCHEMA_FILE = fileURLToPath(new URL('../../schema/inventory.schema.json', import.meta.url));

/** A prompt validator from one field of the inventory schema: true, or the message to show. */
function fieldCheck(schema: v.GenericSchema): (value: string) => true | string {
  return (value) => {
    const r = v.safeParse(schema, value);
    return r.success ? true : r.issues[0].message;
  };
}

const checks = {
  name: fieldCheck(AppSchema.entries.name),
  source: (s: string) => (s.trim() ? true : 'give a directory, e.g. .'),
  wsgi: fieldCheck(AppSchema.entries.wsgi),
  domains: (s: string) => {
    const list = splitList(s);
    if (list.length === 0) return 'give at least one domain';
    for (const d of list) {
      const r = fieldCheck(domain)(d);
      if (r !== true) return r;
    }
    return true;
  },
  email: fieldCheck(v.unwrap(EnvironmentSchema.entries.email)),
  env: (s: string) => (/^[a-z][a-z0-9-]{0,30}$/.test(s) ? true : 'use lowercase letters, digits and "-", e.g. prod'),
  host: fieldCheck(HostSchema.entries.address),
  user: fieldCheck(v.unwrap(HostSchema.entries.user)),
  port: (s: string) => (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 65535 ? true : 'a port number from 1 to 65535'),
};

/** Whether this version's app.wsgi takes an application factory call, `module:create_app()`. */
const FACTORY_CALLS = checks.wsgi('app:create_app()') === true;

function splitList(s: string): string[] {
  return s
    .split(/[,\s]+/)
    .map((d) => d.trim().toLowerCase())
    .filter(Boolean);
}

/** The app name a folder suggests: its name, lowercased, in the characters an app name allows. */
export function nameFromFolder(cwd: string): string {
  const base = path
    .basename(cwd)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, 26)
    .replace(/-build$/, '')
    .replace(/-+$/, '');
  return base || 'app';
}

/** Paths in the inventory are posix and relative to the inventory's folder. */
function relativeSource(inventoryDir: string, dir: string): string {
  const rel = path.relative(inventoryDir, dir).split(path.sep).join('/');
  return rel === '' ? '.' : rel;
}

/** What the project looks like: searched from the current folder, or exactly the source given. */
function detectFor(cwd: string, inventoryDir: string, source: string | undefined): { detection?: Detection; source: string } {
  if (source !== undefined) {
    const detection = detectProjectAt(localFiles(path.resolve(inventoryDir, source)));
    return { source, ...(detection ? { detection } : {}) };
  }
  const found = detectProject(localFiles(cwd));
  if (!found) return { source: relativeSource(inventoryDir, cwd) };
  return { detection: found, source: relativeSource(inventoryDir, path.join(cwd, found.dir)) };
}

/**
 * The WSGI entry point to propose: the detected one, unless it is a factory call this version's
 * app.wsgi refuses (then `wsgi:app`, and the inventory shows the wsgi.py that makes it).
 */
function proposedWsgi(d: Detection | undefined, name: string): string {
  const w = d?.wsgi?.value;
  if (w && (!w.endsWith('()') || FACTORY_CALLS)) return w;
  if (w) return 'wsgi:app';
  return `${name.replace(/-/g, '_')}.wsgi:application`;
}

/** Secrets init can generate, and whether each already has a value in the file. */
function generatable(d: Detection | undefined, state: { names: Set<string> }): { missing: string[]; present: string[] } {
  const names = (d?.secrets ?? []).filter((s) => s.generate).map((s) => s.name);
  return { missing: names.filter((n) => !state.names.has(n)), present: names.filter((n) => state.names.has(n)) };
}

export async function runInit(options: InitOptions, globals: GlobalOptions): Promise<void> {
  const target = globals.inventory;
  if (existsSync(target) && !options.force) {
    throw new UsageError(`${target} already exists; nothing was changed`, { hint: 'pass --force to replace it, or -i FILE to write another file' });
  }
  const interactive = !options.yes;
  if (interactive && !process.stdin.isTTY) {
    throw new UsageError('stack init asks questions, but there is no terminal to ask them in', {
      hint: 'pass --yes (with --name, --wsgi, --domains, --host ... as needed) to take defaults without prompting',
    });
  }
  const inventoryDir = path.dirname(path.resolve(target));
  const { answers, detection } = interactive ? await ask(options, inventoryDir) : fromFlags(options, inventoryDir);

  const secrets = secretsFileState(inventoryDir, answers.env);
  const { missing, present } = generatable(detection, secrets);
  const generate = answers.generateSecrets && missing.length > 0;
  // Refuse before anything is written: a secrets file others can read must be fixed first.
  if (generate && secrets.problem) throw new UsageError(`cannot add generated secrets: ${secrets.problem}`);
  const sources = new Map<string, SecretSource>();
  for (const n of present) sources.set(n, 'kept');
  for (const n of missing) sources.set(n, generate ? 'generated' : 'missing');
  for (const s of detection?.secrets ?? []) if (!sources.has(s.name)) sources.set(s.name, secrets.names.has(s.name) ? 'kept' : 'missing');

  const text = inventoryText(answers, {
    schema: path.relative(inventoryDir, SCHEMA_FILE),
    ...(detection ? { detection } : {}),
    secretsFile: path.relative(inventoryDir, secrets.file),
    secretSources: sources,
    factoryCalls: FACTORY_CALLS,
  });
  // Never write a file that `stack` itself would reject.
  parseInventory(text, target);
  await writeNew(target, text, options.force);
  const ignored = await ignoreSecrets(inventoryDir);
  const out = process.stdout;
  if (detection) out.write(`${pc.cyan('found')} ${describe(detection, answers.source, answers.wsgi)}\n`);
  out.write(`${pc.green('wrote')} ${target}${ignored ? ` and added .stack/secrets* to .gitignore` : ''}\n`);
  if (generate) {
    const r = await addGeneratedSecrets(inventoryDir, answers.env, missing);
    const file = path.relative(process.cwd(), r.file) || r.file;
    if (r.added.length) out.write(`${pc.green('generated')} ${r.added.join(', ')} into ${file} (mode 600; the value is not shown)\n`);
  }
  const unset = [...sources].filter(([, s]) => s === 'missing').map(([n]) => n);
  if (unset.length) {
    out.write(
      `${pc.yellow('needs')} a value for ${unset.join(', ')} in ${path.relative(process.cwd(), secrets.file) || secrets.file} (NAME=value, mode 600) or the environment before a deploy\n`,
    );
  }
  const shim = answers.wsgi === 'wsgi:app' && detection?.wsgi?.value.endsWith('()') && !FACTORY_CALLS;
  if (shim) out.write(`${pc.yellow('create')} wsgi.py in ${answers.source}: the comments in ${target} show its two lines\n`);
  else if (detection?.settings.length) out.write(`${pc.yellow('see')} the comments in ${target} for lines to add to the app's settings\n`);
  out.write(`next: ${pc.bold(`stack -i ${target} render ${answers.env}`)} to see every file it makes\n`);
}

function describe(d: Detection, source: string, wsgi = proposedWsgi(d, 'app')): string {
  const what = d.framework === 'django' ? 'a Django project' : d.framework === 'flask' ? 'a Flask app' : 'a WSGI app';
  return `${what} in ${source === '.' ? 'this folder' : `${source}/`} (${wsgi})`;
}

function fromFlags(o: InitOptions, inventoryDir: string): { answers: InitAnswers; detection?: Detection } {
  const cwd = process.cwd();
  const found = detectFor(cwd, inventoryDir, o.source);
  const name = o.name ?? nameFromFolder(cwd);
  const answers: InitAnswers = {
    name,
    source: found.source,
    wsgi: o.wsgi ?? proposedWsgi(found.detection, name),
    gateway: o.gateway ?? 'gunicorn',
    domains: o.domains ? splitList(o.domains) : [`${name}.example.com`],
    ssl: o.ssl ?? 'letsencrypt',
    env: o.env ?? 'prod',
    host: o.host ?? '203.0.113.10',
    user: o.user ?? 'deploy',
    port: o.port ? Number(o.port) : 22,
    // A fresh random key in a git-ignored 0600 file is safe to make unasked, and without one the
    // first deploy stops on "no value for secret"; a value in the environment still wins.
    generateSecrets: o.generateSecrets ?? true,
  };
  if (answers.ssl === 'letsencrypt') answers.email = o.email ?? `ops@${answers.domains[0]}`;
  else if (o.email) answers.email = o.email;
  const problems = [
    ['--name', checks.name(answers.name)],
    ['--source', checks.source(answers.source)],
    ['--wsgi', checks.wsgi(answers.wsgi)],
    ['--domains', checks.domains(answers.domains.join(','))],
    ['--env', checks.env(answers.env)],
    ['--host', checks.host(answers.host)],
    ['--user', checks.user(answers.user)],
    ['--port', checks.port(String(answers.port))],
    ...(answers.email ? [['--email', checks.email(answers.email)] as const] : []),
  ].filter(([, r]) => r !== true);
  if (problems.length > 0) throw new UsageError(problems.map(([flag, r]) => `${flag}: ${r}`).join('\n'));
  return { answers, ...(found.detection ? { detection: found.detection } : {}) };
}

async function ask(o: InitOptions, inventoryDir: string): Promise<{ answers: InitAnswers; detection?: Detection }> {
  const { confirm, input, select } = await import('@inquirer/prompts');
  const cwd = process.cwd();
  const text = async (flag: string | undefined, message: string, def: string, validate: (s: string) => true | string) =>
    flag ?? (await input({ message, default: def, validate }));
  let found = detectFor(cwd, inventoryDir, o.source);
  if (found.detection && o.source === undefined) process.stdout.write(`${pc.cyan('found')} ${describe(found.detection, found.source)}\n`);
  const name = await text(o.name, 'App name (names the unit, the user and /srv/<name>)', nameFromFolder(cwd), checks.name);
  const source = await text(o.source, 'Directory of the app to ship', found.source, checks.source);
  // Another folder than the one found is another project: read that one.
  if (source !== found.source) found = detectFor(cwd, inventoryDir, source);
  const wsgi = await text(o.wsgi, 'WSGI entry point (module:callable)', proposedWsgi(found.detection, name), checks.wsgi);
  const gateway =
    o.gateway ??
    (await select({
      message: 'Gateway server',
      choices: [
        { name: 'gunicorn', value: 'gunicorn' as const, description: 'the common choice for Django and Flask' },
        { name: 'uWSGI', value: 'uwsgi' as const, description: "uWSGI with Debian's python3 plugin" },
      ],
    }));
  const domains = splitList(await text(o.domains, 'Domains, comma-separated (the first is canonical)', `${name}.example.com`, checks.domains));
  const ssl =
    o.ssl ??
    (await select({
      message: 'HTTPS certificates',
      choices: [
        { name: "Let's Encrypt", value: 'letsencrypt' as const, description: 'free certificates, renewed automatically' },
        { name: 'self-signed', value: 'self-signed' as const, description: 'for staging and private servers' },
        { name: 'none (HTTP only)', value: 'none' as const },
      ],
    }));
  const email = ssl === 'letsencrypt' ? await text(o.email, "Email for Let's Encrypt notices", `ops@${domains[0]}`, checks.email) : o.email;
  const env = await text(o.env, 'Environment name', 'prod', checks.env);
  const host = await text(o.host, 'Server address (IP or host name)', '203.0.113.10', checks.host);
  const user = await text(o.user, 'SSH user on the server (with sudo)', 'deploy', checks.user);
  const port = Number(await text(o.port, 'SSH port', '22', checks.port));
  const { file, names } = secretsFileState(inventoryDir, env);
  const { missing } = generatable(found.detection, { names });
  const generateSecrets =
    o.generateSecrets ??
    (missing.length > 0
      ? await confirm({
          message: `Generate a random ${missing.join(', ')} into ${path.relative(cwd, file)} (mode 600, ignored by git; never shown)?`,
          default: true,
        })
      : false);
  const answers: InitAnswers = { name, source, wsgi, gateway, domains, ssl, env, host, user, port, generateSecrets, ...(email ? { email } : {}) };
  return { answers, ...(found.detection ? { detection: found.detection } : {}) };
}

/** Writes only once everything is known, and atomically: no partial file, ever. */
async function writeNew(target: string, text: string, force: boolean): Promise<void> {
  const temp = `${target}.${process.pid}.tmp`;
  await writeFile(temp, text, { mode: 0o644 });
  try {
    if (force) await rename(temp, target);
    else {
      // link() fails if the target appeared meanwhile, so a racing file is never overwritten.
      await link(temp, target);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new UsageError(`${target} already exists; nothing was changed`, { hint: 'pass --force to replace it' });
    throw new StackError(`could not write ${target}: ${(err as Error).message}`);
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

/** Secrets files must never be committed: make sure git ignores them. */
async function ignoreSecrets(dir: string): Promise<boolean> {
  const file = path.join(dir, '.gitignore');
  const current = existsSync(file) ? await readFile(file, 'utf8') : '';
  if (current.split('\n').some((l) => l.trim() === '.stack/secrets*' || l.trim() === '.stack/')) return false;
  const prefix = current === '' || current.endsWith('\n') ? '' : '\n';
  await appendFile(file, `${prefix}# stack: secret values per environment\n.stack/secrets*\n`);
  return true;
}
