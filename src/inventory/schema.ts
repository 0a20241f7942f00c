/**
 * The inventory's schema, written once with valibot: it validates (with messages that say how to
 * fix each field), fills defaults, types the result, and is exported as JSON Schema for editors
 * (`npm run schema`). Every value that ends up inside nginx, systemd or gateway config is
 * constrained here, so templates never see a character that could break out of its context.
 */
import { isIP } from 'node:net';
import * as v from 'valibot';

/** Characters that would end a directive, open a block, start a quote or expand a variable. */
const BREAKOUT = /[;{}'"`$\\\n\r\t\x00-\x1f\x7f-\x9f\u2028\u2029]/;

function describeChar(ch: string): string {
  const names: Record<string, string> = {
    '\n': 'a newline',
    '\r': 'a carriage return',
    '\t': 'a tab',
    '"': 'a double quote (")',
    "'": "a single quote (')",
    '`': 'a backtick (`)',
    '\\': 'a backslash (\\)',
  };
  return names[ch] ?? (/[\x00-\x1f\x7f-\x9f\u2028\u2029]/.test(ch) ? 'a control or line-separator character' : `"${ch}"`);
}

/** A string with no character that could break out of a config file. */
function safe(what: string) {
  return v.check(
    (s: string) => !BREAKOUT.test(s),
    (issue: v.CheckIssue<string>) => {
      const ch = String(issue.input).match(BREAKOUT)?.[0] ?? '';
      return `${what} contains ${describeChar(ch)}, which would break out of the generated config; remove it`;
    },
  );
}

function text(what: string, example: string) {
  return v.pipe(
    v.string(`must be text (${what}), e.g. ${example}`),
    v.nonEmpty(`must not be empty (${what}), e.g. ${example}`),
    safe(what),
  );
}

function matching(what: string, re: RegExp, fix: string) {
  return v.pipe(
    v.string(`must be text (${what}); ${fix}`),
    safe(what),
    v.regex(re, (issue) => `${JSON.stringify(issue.input)} is not a valid ${what}; ${fix}`),
  );
}

const DOMAIN = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/;
const IPV4 = /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const SIZE = /^\d+[kKmMgG]?$/;
const DURATION = /^\d+(ms|s|m|h|d|w|M|y)?$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A name made only of digits and dots is an IPv4 address or nothing. */
const notBadNumeric = (what: string) =>
  v.check((s: string) => !/^[\d.]+$/.test(s) || isIP(s) === 4, (i) => `${JSON.stringify(i.input)} is not a valid ${what}: not a host name, and not an IPv4 address (each part 0-255)`);

export const domain = v.pipe(
  matching('domain', new RegExp(`${DOMAIN.source}|${IPV4.source}`), 'write a lowercase host name such as blog.example.com (no scheme, port, path, wildcard or spaces)'),
  notBadNumeric('domain'),
);

const relativePath = (what: string, example: string) =>
  v.pipe(
    text(what, example),
    v.check((s) => !s.startsWith('/'), `${what} is relative to the app's release directory; drop the leading "/"`),
    v.check((s) => !s.split('/').includes('..'), `${what} must stay inside the release; remove ".."`),
    v.check((s) => !/\s/.test(s), `${what} must not contain spaces`),
  );

const absolutePath = (what: string, example: string) =>
  v.pipe(
    text(what, example),
    v.check((s) => s.startsWith('/'), `${what} must be an absolute path on the server, e.g. ${example}`),
    v.check((s) => !s.split('/').includes('..'), `${what} must not contain ".."`),
    v.check((s) => !/\s/.test(s), `${what} must not contain spaces`),
  );

const urlPrefix = (example: string) =>
  v.pipe(
    text('URL prefix', example),
    v.regex(/^\/([A-Za-z0-9._~-]+\/)*$/, `must be a URL path that starts and ends with "/", e.g. ${example}`),
  );

const positiveInt = (what: string, max: number) =>
  v.pipe(
    v.number(`${what} must be a whole number`),
    v.integer(`${what} must be a whole number`),
    v.minValue(1, `${what} must be at least 1`),
    v.maxValue(max, `${what} must be at most ${max}`),
  );

export const AppSchema = v.strictObject({
  name: v.pipe(
    matching('app name', /^[a-z][a-z0-9-]{0,30}$/, 'use lowercase letters, digits and "-", starting with a letter, at most 31 characters'),
    v.check((s) => !['root', 'nginx', 'www-data', 'deploy', 'stack', 'daemon', 'nobody'].includes(s), 'that name is taken by a system user or service; pick another'),
    v.description('Names the systemd unit, the system user, /srv/<name> and /etc/<name>.'),
  ),
  source: v.optional(
    v.pipe(text('source directory', '.'), v.description('Local directory to ship, relative to the inventory file.')),
    '.',
  ),
  wsgi: v.pipe(
    matching('WSGI entry point', /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/, 'write it as module:callable, e.g. blog.wsgi:application'),
    v.description('module:callable of the WSGI application.'),
  ),
  requirements: v.optional(relativePath('requirements file', 'requirements.txt')),
  static: v.optional(
    v.strictObject({
      url: urlPrefix('/static/'),
      path: relativePath('static directory', 'static'),
      max_age: v.optional(matching('cache duration', DURATION, 'write a number with a unit, e.g. 30d or 1y'), '1y'),
    }),
  ),
  media: v.optional(
    v.strictObject({
      url: urlPrefix('/media/'),
      path: absolutePath('media directory', '/srv/blog/media'),
    }),
  ),
  health: v.optional(
    v.pipe(
      text('health check path', '/health'),
      v.regex(/^\/[A-Za-z0-9._~\/?=&%-]*$/, 'must be a URL path starting with "/", e.g. /health'),
    ),
    '/health',
  ),
  env: v.optional(
    v.record(
      matching('environment variable name', ENV_NAME, 'use letters, digits and "_", not starting with a digit'),
      v.union(
        [v.pipe(v.string(), safe('environment value')), v.number(), v.boolean()],
        'must be text, a number or true/false',
      ),
    ),
    {},
  ),
  health_check: v.optional(
    v.strictObject({
      status: v.optional(v.pipe(v.number('must be an HTTP status code'), v.integer('must be an HTTP status code'), v.minValue(100, 'must be an HTTP status code'), v.maxValue(599, 'must be an HTTP status code')), 200),
      timeout: v.optional(positiveInt('timeout', 300), 3),
      retries: v.optional(positiveInt('retries', 600), 20),
    }),
    {},
  ),
  secrets: v.optional(
    v.array(
      matching('secret name', ENV_NAME, 'use letters, digits and "_", not starting with a digit (the value itself goes in the environment or .stack/secrets.<env>)'),
      'must be a list of secret names, e.g. [SECRET_KEY, DATABASE_URL]',
    ),
    [],
  ),
});

/**
 * Commands you write: run by a shell (locally, or on the server as the app's user), so quotes
 * and `;` are theirs to use; one line each.
 */
const hookList = (where: string) =>
  v.optional(
    v.array(
      v.pipe(
        v.string(`each hook is a command (text) ${where}`),
        v.nonEmpty('an empty hook does nothing; remove it'),
        v.check((s) => !/[\n\r\x00]/.test(s), 'a hook is one line; put longer work in a script in your app and call that'),
      ),
      `must be a list of commands ${where}`,
    ),
    [],
  );

export const HooksSchema = v.strictObject({
  before_deploy: v.pipe(hookList('run locally before anything is sent'), v.description('Local commands, in the inventory\'s folder, before connecting.')),
  before_activate: v.pipe(hookList('run on the server in the new release'), v.description('Server commands in the new release, as the app user, with its env and venv, before it goes live (e.g. migrate, collectstatic).')),
  after_activate: v.pipe(hookList('run on the server after the release is live'), v.description('Server commands in the live release after the health check passed.')),
  after_deploy: v.pipe(hookList('run locally after every host is done'), v.description('Local commands after a successful deploy.')),
});

export const GatewaySchema = v.strictObject({
  server: v.optional(v.picklist(['gunicorn', 'uwsgi'], 'must be gunicorn or uwsgi'), 'gunicorn'),
  workers: v.optional(
    v.union([v.literal('auto'), positiveInt('workers', 256)], 'must be auto (2 x CPUs + 1) or a whole number'),
    'auto',
  ),
  threads: v.optional(positiveInt('threads', 64), 1),
  timeout: v.optional(positiveInt('timeout', 3600), 30),
  max_requests: v.optional(v.pipe(v.number('max_requests must be a whole number'), v.integer('max_requests must be a whole number'), v.minValue(0, 'max_requests must be 0 (off) or more')), 0),
});

export const NginxSchema = v.strictObject({
  client_max_body_size: v.optional(matching('size', SIZE, 'write a number with an optional k, m or g, e.g. 16m'), '16m'),
  version: v.optional(
    matching('nginx version', /^\d+\.\d+(\.\d+)?$/, 'write the server\'s nginx version, e.g. 1.22'),
  ),
  ipv6: v.optional(v.boolean('must be true or false'), true),
  hsts_max_age: v.optional(v.pipe(v.number('must be a number of seconds'), v.integer('must be a whole number of seconds'), v.minValue(0, 'must be 0 (off) or more')), 31536000),
  hsts_subdomains: v.optional(v.boolean('must be true or false'), false),
  ocsp_stapling: v.optional(v.boolean('must be true or false'), true),
  gzip: v.optional(v.boolean('must be true or false'), true),
  default_server: v.optional(v.boolean('must be true or false'), false),
});

const localFile = (what: string, example: string) =>
  v.pipe(text(what, example), v.check((s) => !/\s/.test(s), `${what} must not contain spaces`));

export const SslSchema = v.union(
  [
    v.picklist(['none', 'letsencrypt', 'self-signed']),
    v.strictObject({
      cert: localFile('certificate file', 'certs/fullchain.pem'),
      key: localFile('key file', 'certs/privkey.pem'),
      chain: v.optional(localFile('chain file', 'certs/chain.pem')),
    }),
  ],
  'must be none, letsencrypt, self-signed or { cert: FILE, key: FILE }',
);

export const HostSchema = v.strictObject({
  address: v.pipe(
    text('host address', '203.0.113.10'),
    v.check(
      (s) => isIP(s) !== 0 || (DOMAIN.test(s) && !/^[\d.]+$/.test(s)),
      (i) => `${JSON.stringify(i.input)} is not a valid host address; write an IPv4 or IPv6 address or a host name, e.g. 203.0.113.10`,
    ),
  ),
  // No defaults here: ~/.ssh/config may set them; stack falls back to deploy and 22 after it.
  user: v.optional(matching('SSH user', /^[a-z_][a-z0-9_-]{0,31}$/, 'write a Unix user name, e.g. deploy')),
  port: v.optional(positiveInt('port', 65535)),
  host_key: v.optional(
    matching('host key', /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$/, 'write the key as "TYPE BASE64", as `stack trust ENV` records it'),
  ),
  cpus: v.optional(positiveInt('cpus', 1024)),
  identity_file: v.optional(
    v.pipe(localFile('identity file', '~/.ssh/id_ed25519'), v.description('Private key for SSH; otherwise ssh-agent and ~/.ssh/config decide.')),
  ),
});

const email = matching('email address', /^[^@\s]+@[^@\s]+\.[^@\s]+$/, 'write an address such as ops@example.com');

export const EnvironmentSchema = v.strictObject({
  domains: v.pipe(
    v.array(domain, 'must be a list of domains, e.g. [blog.example.com, www.blog.example.com]'),
    v.minLength(1, 'needs at least one domain; the first is the canonical one'),
  ),
  ssl: v.optional(SslSchema, 'none'),
  email: v.optional(email),
  acme_server: v.optional(
    matching('ACME directory URL', /^https:\/\/[A-Za-z0-9.-]+(:\d+)?(\/[A-Za-z0-9._~\/-]*)?$/, 'write an https URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory'),
  ),
  keep: v.optional(positiveInt('keep', 100), 5),
  hosts: v.pipe(
    v.array(HostSchema, 'must be a list of hosts, e.g. [{ address: 203.0.113.10, user: deploy }]'),
    v.minLength(1, 'needs at least one host'),
  ),
  app: v.optional(v.partial(AppSchema)),
  gateway: v.optional(v.partial(GatewaySchema)),
  nginx: v.optional(v.partial(NginxSchema)),
  hooks: v.optional(v.partial(HooksSchema)),
});

export const InventorySchema = v.strictObject({
  app: AppSchema,
  gateway: v.optional(GatewaySchema, {}),
  nginx: v.optional(NginxSchema, {}),
  hooks: v.optional(HooksSchema, {}),
  templates: v.optional(
    v.pipe(localFile('template folder', '.stack/templates'), v.description('Folder of template overrides, relative to the inventory.')),
    '.stack/templates',
  ),
  environments: v.pipe(
    v.record(
      matching('environment name', /^[a-z][a-z0-9-]{0,30}$/, 'use lowercase letters, digits and "-", e.g. prod'),
      EnvironmentSchema,
      'must map environment names to their settings, e.g. prod: { domains: [...], hosts: [...] }',
    ),
    v.check((e) => Object.keys(e).length > 0, 'needs at least one environment, e.g. prod'),
  ),
});

export type InventoryDocument = v.InferOutput<typeof InventorySchema>;
export type App = v.InferOutput<typeof AppSchema>;
export type Gateway = v.InferOutput<typeof GatewaySchema>;
export type Nginx = v.InferOutput<typeof NginxSchema>;
export type Host = v.InferOutput<typeof HostSchema>;
export type Ssl = v.InferOutput<typeof SslSchema>;
export type Hooks = v.InferOutput<typeof HooksSchema>;

/** The keys each object in the schema accepts, for "did you mean" on unknown keys. */
export function knownKeys(path: readonly (string | number)[]): string[] {
  let schema: unknown = InventorySchema;
  for (const key of path) {
    schema = unwrap(schema);
    const s = schema as { type?: string; entries?: Record<string, unknown>; value?: unknown; item?: unknown };
    if (s.type === 'strict_object' || s.type === 'object') schema = s.entries?.[key as string];
    else if (s.type === 'record') schema = s.value;
    else if (s.type === 'array') schema = s.item;
    else return [];
  }
  const s = unwrap(schema) as { entries?: Record<string, unknown> };
  return s?.entries ? Object.keys(s.entries) : [];
}

function unwrap(schema: unknown): unknown {
  let s = schema as { type?: string; wrapped?: unknown; pipe?: unknown[]; options?: unknown[] } | undefined;
  for (;;) {
    if (!s) return s;
    if (s.type === 'optional' || s.type === 'nullable') s = s.wrapped as typeof s;
    else if (s.type === 'union') s = (s.options as (typeof s)[]).find((o) => (unwrap(o) as { entries?: unknown })?.entries) as typeof s;
    else return s;
  }
}
