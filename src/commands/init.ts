/**
 * `stack init`: a short wizard that writes a commented inventory. Every question has a flag, and
 * `--yes` takes the defaults, so it also runs without a terminal. The file is written only after
 * the last answer and only if it validates; an existing inventory is kept unless --force.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { appendFile, link, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Handlebars from 'handlebars';
import * as v from 'valibot';
import pc from 'picocolors';
import type { GlobalOptions } from './options.js';
import { StackError, UsageError } from '../errors.js';
import { parseInventory } from '../inventory/load.js';
import { AppSchema, EnvironmentSchema, HostSchema, domain } from '../inventory/schema.js';
import { BUILTIN_TEMPLATES } from '../templates/engine.js';

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
  yes: boolean;
  force: boolean;
}

export interface InitAnswers {
  name: string;
  source: string;
  wsgi: string;
  gateway: 'gunicorn' | 'uwsgi';
  domains: string[];
  ssl: 'none' | 'letsencrypt' | 'self-signed';
  email?: string;
  env: string;
  host: string;
  user: string;
  port: number;
}

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

function splitList(s: string): string[] {
  return s
    .split(/[,\s]+/)
    .map((d) => d.trim().toLowerCase())
    .filter(Boolean);
}

/** Good first answers, guessed from the project in the current directory. */
export function guessDefaults(cwd: string): Pick<InitAnswers, 'name' | 'source' | 'wsgi'> {
  const base = path
    .basename(cwd)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .slice(0, 26)
    .replace(/-build$/, '')
    .replace(/-+$/, '');
  const name = base || 'app';
  let wsgi = `${name.replace(/-/g, '_')}.wsgi:application`;
  try {
    const entries = readdirSync(cwd, { withFileTypes: true });
    const django = entries.find((e) => e.isDirectory() && existsSync(path.join(cwd, e.name, 'wsgi.py')));
    if (django) wsgi = `${django.name}.wsgi:application`;
    else if (entries.some((e) => e.name === 'app.py')) wsgi = 'app:app';
    else if (entries.some((e) => e.name === 'wsgi.py')) wsgi = 'wsgi:application';
  } catch {
    // An unreadable directory just means no guess.
  }
  return { name, source: '.', wsgi };
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
  const answers = interactive ? await ask(options) : fromFlags(options);
  const text = inventoryText(answers, path.relative(path.dirname(path.resolve(target)), SCHEMA_FILE));
  // Never write a file that `stack` itself would reject.
  parseInventory(text, target);
  await writeNew(target, text, options.force);
  const ignored = await ignoreSecrets(path.dirname(path.resolve(target)));
  process.stdout.write(`${pc.green('wrote')} ${target}${ignored ? ` and added .stack/secrets* to .gitignore` : ''}\n`);
  process.stdout.write(`next: ${pc.bold(`stack -i ${target} render ${answers.env}`)} to see every file it makes\n`);
}

function fromFlags(o: InitOptions): InitAnswers {
  const guess = guessDefaults(process.cwd());
  const answers: InitAnswers = {
    name: o.name ?? guess.name,
    source: o.source ?? guess.source,
    wsgi: o.wsgi ?? guess.wsgi,
    gateway: o.gateway ?? 'gunicorn',
    domains: o.domains ? splitList(o.domains) : [`${o.name ?? guess.name}.example.com`],
    ssl: o.ssl ?? 'letsencrypt',
    env: o.env ?? 'prod',
    host: o.host ?? '203.0.113.10',
    user: o.user ?? 'deploy',
    port: o.port ? Number(o.port) : 22,
  };
  if (answers.ssl === 'letsencrypt') answers.email = o.email ?? `ops@${answers.domains[0]}`;
  else if (o.email) answers.email = o.email;
  const problems = [
    ['--name', checks.name(answers.name)],
    ['--wsgi', checks.wsgi(answers.wsgi)],
    ['--domains', checks.domains(answers.domains.join(','))],
    ['--env', checks.env(answers.env)],
    ['--host', checks.host(answers.host)],
    ['--user', checks.user(answers.user)],
    ['--port', checks.port(String(answers.port))],
    ...(answers.email ? [['--email', checks.email(answers.email)] as const] : []),
  ].filter(([, r]) => r !== true);
  if (problems.length > 0) throw new UsageError(problems.map(([flag, r]) => `${flag}: ${r}`).join('\n'));
  return answers;
}

async function ask(o: InitOptions): Promise<InitAnswers> {
  const { input, select } = await import('@inquirer/prompts');
  const guess = guessDefaults(process.cwd());
  const text = async (flag: string | undefined, message: string, def: string, validate: (s: string) => true | string) =>
    flag ?? (await input({ message, default: def, validate }));
  const name = await text(o.name, 'App name (names the unit, the user and /srv/<name>)', guess.name, checks.name);
  const source = await text(o.source, 'Directory of the app to ship', guess.source, checks.source);
  const wsgi = await text(o.wsgi, 'WSGI entry point (module:callable)', guess.wsgi, checks.wsgi);
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
  return { name, source, wsgi, gateway, domains, ssl, email, env, host, user, port };
}

export function inventoryText(a: InitAnswers, schema: string): string {
  const template = readFileSync(path.join(BUILTIN_TEMPLATES, 'init/inventory.yml.hbs'), 'utf8');
  return Handlebars.compile(template, { noEscape: true, strict: true })({
    ...a,
    schema,
    domains: a.domains.join(', '),
    email: a.email ?? null,
  });
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
