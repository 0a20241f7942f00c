/**
 * The inventory `stack init` writes: the answers, plus what detection found, each value with
 * its reason as a YAML comment. Pure: answers and detection in, text out.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Handlebars from 'handlebars';
import { stringify } from 'yaml';
import type { App, Gateway } from '../inventory/schema.js';
import { BUILTIN_TEMPLATES } from '../templates/engine.js';
import { layoutFor } from '../views/layout.js';
import type { Detection } from './detect.js';

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
  /** Write random values for the signing keys the app needs into .stack/secrets.<env>. */
  generateSecrets: boolean;
}

/** Where each secret's value will come from, as init leaves it. */
export type SecretSource = 'generated' | 'kept' | 'missing';

/** Comment text: at most `width` characters a line, no control characters (they would end the comment). */
export function commentLines(text: string, width = 92): string[] {
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]+/g, ' ');
  // Code keeps its own line and indentation.
  if (/^ {4}/.test(clean)) return [clean];
  const out: string[] = [];
  let line = '';
  for (const word of clean.split(/ +/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

/** A reason as a sentence: a capital (unless it starts with a file or code name) and a full stop. */
export function sentence(text: string): string {
  const t = text.trim();
  const first = /^[a-z]+(?=[\s,;:]|$)/.test(t) ? t[0]!.toUpperCase() + t.slice(1) : t;
  return /[.:!?]$/.test(first) ? first : `${first}.`;
}

function comments(texts: (string | undefined)[], width?: number): string[] {
  return texts.filter((t): t is string => !!t).flatMap((t) => commentLines(/^ {4}/.test(t) ? t : sentence(t), width));
}

/** A scalar as YAML writes it: plain when that is safe, quoted otherwise. */
function yamlScalar(value: unknown): string {
  return stringify(value, { lineWidth: 0 }).trimEnd();
}

export interface InventoryTextOptions {
  /** Path of the JSON Schema, relative to the inventory. */
  schema: string;
  detection?: Detection;
  /** The secrets file, as the user would type its path. */
  secretsFile: string;
  secretSources: ReadonlyMap<string, SecretSource>;
  /** Whether app.wsgi accepts a factory call, `module:create_app()`. */
  factoryCalls: boolean;
}

export function inventoryView(a: InitAnswers, o: InventoryTextOptions) {
  const d = o.detection;
  const shared = layoutFor({ name: a.name } as App, { server: a.gateway } as Gateway).shared;
  const detectedWsgi = d?.wsgi?.value;
  const wsgiWhy: string[] = [];
  if (detectedWsgi && detectedWsgi === a.wsgi) {
    wsgiWhy.push(d!.wsgi!.why);
    if (a.wsgi.endsWith('()') && a.gateway === 'uwsgi') {
      wsgiWhy.push(
        'uWSGI calls the factory once, in its master process, and forks the workers from it: open database connections per request, not in the factory.',
      );
    }
  }
  const settings = [...(d?.settings ?? [])];
  if (d && detectedWsgi?.endsWith('()') && !o.factoryCalls && a.wsgi === 'wsgi:app') {
    wsgiWhy.push(`${d.wsgi!.why}; this version of stack takes module:callable only, so a wsgi.py must call it (see below).`);
    const [module, call] = detectedWsgi.split(':') as [string, string];
    settings.push(`# wsgi.py, in ${a.source}: the app the gateway serves`, `from ${module} import ${call.slice(0, -2)}`, `app = ${call}`);
  }

  const env = (d?.env ?? []).map((e) => ({
    name: e.name,
    value: typeof e.value === 'string' ? e.value : `${shared}/${e.value.sharedFile}`,
    why: comments([e.why], 88),
  }));
  const secrets = d?.secrets ?? [];
  const secretsWhy = secrets.flatMap((s) => {
    const source = o.secretSources.get(s.name) ?? 'missing';
    const where =
      source === 'generated'
        ? `a random value was generated into ${o.secretsFile}`
        : source === 'kept'
          ? `its value is in ${o.secretsFile}`
          : `put its value in ${o.secretsFile} (mode 600) or in the environment${s.generate ? ', or run stack init again with --generate-secrets' : ''}`;
    return commentLines(`${s.name}: ${s.why}; ${where}.`);
  });

  const hookView = (list: { value: string; why: string }[]) => list.map((h) => ({ command: h.value, why: comments([h.why], 88) }));
  const hooks =
    d && (d.hooks.build.length > 0 || d.hooks.before_activate.length > 0)
      ? { build: hookView(d.hooks.build), before_activate: hookView(d.hooks.before_activate) }
      : null;

  const staticWhy = comments([d?.static?.why, ...(d?.staticNotes ?? [])]);
  return {
    schema: o.schema,
    name: a.name,
    detected: comments(d?.summary ?? [], 88),
    sourceWhy: comments([d?.sourceWhy]),
    source: a.source,
    wsgiWhy: comments(wsgiWhy),
    wsgi: a.wsgi,
    requirements: d?.requirements?.value ?? null,
    requirementsWhy: comments([d?.requirements?.why, d?.requirementsNote]),
    static: d?.static?.value ?? null,
    staticWhy,
    health: d?.health?.value ?? '/health',
    healthWhy: comments([d?.health?.why, d?.healthNote]),
    env,
    secrets: secrets.map((s) => s.name),
    secretList: secrets.map((s) => yamlScalar(s.name)).join(', '),
    secretsWhy,
    packagesWhy: comments([d?.packagesNote]),
    settingsTitle:
      d?.framework === 'django'
        ? "Settings for the project. stack puts STACK_DOMAINS (this environment's domains, comma-separated) and STACK_URL (the canonical URL, e.g. https://example.com) into the app's environment; add or change these lines:"
        : 'Code for the app:',
    settings: settings.map((l) => l.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]+/g, ' ')),
    hooks,
    database: d?.database ? { engine: d.database.value, why: comments([d.database.why], 88) } : null,
    gateway: a.gateway,
    env_name: a.env,
    domains: a.domains.map(yamlScalar).join(', '),
    ssl: a.ssl,
    email: a.email ?? null,
    host: a.host,
    user: a.user,
    port: a.port,
  };
}

export function inventoryText(a: InitAnswers, o: InventoryTextOptions): string {
  const hb = Handlebars.create();
  hb.registerHelper('y', (value: unknown) => yamlScalar(value));
  const template = readFileSync(path.join(BUILTIN_TEMPLATES, 'init/inventory.yml.hbs'), 'utf8');
  const view = inventoryView(a, o);
  // The settings title is one long sentence: wrapped like every other comment.
  const title = commentLines(view.settingsTitle);
  return hb.compile(template, { noEscape: true, strict: true })({ ...view, settingsTitle: title.join('\n# ') });
}
