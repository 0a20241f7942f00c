/**
 * The inventory's schema, written once with valibot: it validates (with messages that say how to
 * fix each field), fills defaults, types the result, and is exported as JSON Schema for editors
 * (`npm run schema`). Every value that ends up inside nginx, systemd or gateway config is
 * constrained here, so templates never see a character that could break out of its context.
 */
import { isIP } from 'node:net';
import * as v from 'valibot';
import { calendarProblem } from './calendar.js';
import { reservedEnvReason } from './env-names.js';

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
  return v.pipe(v.string(`must be text (${what}), e.g. ${example}`), v.nonEmpty(`must not be empty (${what}), e.g. ${example}`), safe(what));
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
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * How a YAML number or boolean must be written for its field (checked on the scalar's source text
 * by literals.ts, since the parsed value has already lost it: 0x1F, 1e21 and
 * 12345678901234567890 all arrive as plain JavaScript numbers).
 */
export type LiteralRule =
  | { kind: 'whole'; what: string; min: number; max: number; hint: string }
  /** An env value goes into the env file as text, so it must read back exactly as written. */
  | { kind: 'env' };

const literalRules = new WeakMap<object, LiteralRule>();

/** The rule of a field's schema (through optional and union wrappers), if it takes a number. */
export function literalRuleOf(schema: unknown): LiteralRule | undefined {
  let s = schema as { type?: string; wrapped?: unknown; options?: unknown[] } | undefined;
  while (s && (s.type === 'optional' || s.type === 'nullable')) s = s.wrapped as typeof s;
  if (!s) return undefined;
  const own = literalRules.get(s);
  if (own) return own;
  if (s.type === 'union') {
    for (const option of s.options ?? []) {
      const rule = literalRules.get(option as object);
      if (rule) return rule;
    }
  }
  return undefined;
}

/**
 * A whole number within bounds. Every numeric field has an upper bound: a value past it is a typo,
 * and an unbounded one reaches the generated configs as 1e+21 or Infinity.
 */
function wholeNumber(what: string, min: number, max: number, hint = '') {
  const range = `${what} must be a whole number from ${min} to ${max}${hint}`;
  const schema = v.pipe(
    v.number(range),
    v.integer(range),
    v.minValue(min, `${what} must be at least ${min}${hint}`),
    v.maxValue(max, `${what} must be at most ${max}${hint}`),
  );
  literalRules.set(schema, { kind: 'whole', what, min, max, hint });
  return schema;
}

/** Seconds in each unit of nginx's time syntax (ngx_parse_time: a month is 30 days, a year 365). */
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800, M: 2592000, y: 31536000 };

/** A duration such as `90s`, `15m` or `1y` (a bare number is seconds) in seconds, if `units` allows its unit. */
export function durationSeconds(value: string | number, units: readonly string[]): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
  const m = /^(\d+)([A-Za-z]*)$/.exec(value);
  if (!m || (m[2] !== '' && !units.includes(m[2]!))) return undefined;
  return Number(m[1]) * (m[2] ? UNIT_SECONDS[m[2]]! : 1);
}

/** Bytes in a size as nginx reads it (ngx_parse_offset: k, m and g are powers of 1024). */
export function sizeBytes(value: string): number | undefined {
  const m = /^(\d+)([kKmMgG]?)$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase());
}

/**
 * nginx reads client_max_body_size into an off_t (up to 8 EiB) and refuses more at `nginx -t`,
 * i.e. at deploy time. No request body needs more than 1 TiB, and bounding it here also keeps
 * the byte count exact in a JavaScript number.
 */
const MAX_BODY_SIZE = 1024 ** 4;

/**
 * nginx's own `expires max` is 10 years (max-age=315360000), and HTTP caches treat anything
 * past 2^31 seconds as 2^31 (RFC 9111), so a longer cache duration means nothing more.
 */
const MAX_CACHE_SECONDS = 10 * UNIT_SECONDS.y!;

/** Server hooks: at least a second; a day is far beyond any migration or build worth waiting for. */
export const HOOK_TIMEOUT = { defaultSeconds: 15 * 60, min: 1, max: 24 * 3600 } as const;

/** A name made only of digits and dots is an IPv4 address or nothing. */
const notBadNumeric = (what: string) =>
  v.check(
    (s: string) => !/^[\d.]+$/.test(s) || isIP(s) === 4,
    (i) => `${JSON.stringify(i.input)} is not a valid ${what}: not a host name, and not an IPv4 address (each part 0-255)`,
  );

export const domain = v.pipe(
  matching(
    'domain',
    new RegExp(`${DOMAIN.source}|${IPV4.source}`),
    'write a lowercase host name such as blog.example.com (no scheme, port, path, wildcard or spaces)',
  ),
  notBadNumeric('domain'),
);

/**
 * A folder inside the release, which nginx serves as it is: `.` (or anything that comes down to
 * it) would publish the whole release, code and settings included, and a hidden folder holds the
 * virtualenv (.venv), the repository (.git) or stack's record of the release (.stack).
 */
const servedFolder = (what: string, example: string) =>
  v.pipe(
    text(what, example),
    v.check((s) => !s.startsWith('/'), `${what} is relative to the app's release directory; drop the leading "/"`),
    v.check((s) => !s.split('/').includes('..'), `${what} must stay inside the release; remove ".."`),
    v.check((s) => !/\s/.test(s), `${what} must not contain spaces`),
    v.check(
      (s) => s.split('/').some((part) => part !== '' && part !== '.'),
      (i) =>
        `${JSON.stringify(i.input)} is the release itself, and nginx would serve all of it (code, settings, keys); name a folder inside it, e.g. ${example}`,
    ),
    v.check(
      (s) => !s.split('/').some((part) => part.startsWith('.') && part !== '.'),
      (i) =>
        `${JSON.stringify(i.input)} is or is inside a hidden folder (.git, .venv and .stack hold code, the virtualenv and the release's settings), which nginx must not serve; use a plain folder, e.g. ${example}`,
    ),
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
  v.pipe(text('URL prefix', example), v.regex(/^\/([A-Za-z0-9._~-]+\/)*$/, `must be a URL path that starts and ends with "/", e.g. ${example}`));

const positiveInt = (what: string, max: number) => wholeNumber(what, 1, max);

/** An env or secret name: a shell identifier that nothing else on the server gives a meaning to. */
const envName = (what: string, fix: string) =>
  v.pipe(
    matching(what, ENV_NAME, fix),
    v.check(
      (s) => reservedEnvReason(s) === undefined,
      (i) => `${String(i.input)} cannot be set by the app: ${reservedEnvReason(String(i.input))}; pick another name`,
    ),
  );

/** Values of app.env: written into the env file as text. */
const ENV_VALUE = v.union([v.pipe(v.string(), safe('environment value')), v.number(), v.boolean()], 'must be text, a number or true/false');
literalRules.set(ENV_VALUE, { kind: 'env' });

const SECRET_NAME = envName(
  'secret name',
  'use letters, digits and "_", not starting with a digit (the value itself goes in the environment or .stack/secrets.<env>)',
);

/** Linux user names have at most 32 characters, and stack creates NAME-build next to NAME. */
const MAX_APP_NAME = 32 - '-build'.length;

export const AppSchema = v.strictObject({
  name: v.pipe(
    matching('app name', /^[a-z][a-z0-9-]*$/, `use lowercase letters, digits and "-", starting with a letter, at most ${MAX_APP_NAME} characters`),
    v.maxLength(
      MAX_APP_NAME,
      (i) =>
        `${JSON.stringify(i.input)} has ${String(i.input).length} characters; the limit is ${MAX_APP_NAME}, because stack also creates the system user NAME-build and Linux user names have at most 32 characters`,
    ),
    v.check(
      (s) => !s.endsWith('-build'),
      'must not end in "-build": stack creates the build user NAME-build for every app, so this name could be the build user of another app; pick another',
    ),
    v.check(
      (s) => !['root', 'nginx', 'www-data', 'deploy', 'stack', 'daemon', 'nobody'].includes(s),
      'that name is taken by a system user or service; pick another',
    ),
    v.description(`Names the systemd unit, the system users <name> and <name>-build, /srv/<name> and /etc/<name>. At most ${MAX_APP_NAME} characters.`),
  ),
  source: v.optional(v.pipe(text('source directory', '.'), v.description('Local directory to ship, relative to the inventory file.')), '.'),
  wsgi: v.pipe(
    matching(
      'WSGI entry point',
      /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(\(\))?$/,
      'write it as module:callable, e.g. blog.wsgi:application, or module:factory() for an application factory called without arguments',
    ),
    v.description('module:callable of the WSGI application, or module:factory() (gunicorn and uWSGI call it once).'),
  ),
  requirements: v.optional(relativePath('requirements file', 'requirements.txt')),
  // Messages never repeat the value: an index URL may carry a token.
  index_url: v.optional(
    v.pipe(
      v.string('must be text (package index URL), e.g. https://pypi.example.com/simple/'),
      v.check(
        (s) => !/^[a-z]+:\/\/[^/]*@/i.test(s),
        'holds credentials, which do not belong in the inventory: give the whole URL as the secret STACK_INDEX_URL instead',
      ),
      v.regex(
        /^https?:\/\/[A-Za-z0-9.-]+(:\d+)?(\/[A-Za-z0-9._~%+/-]*)?$/,
        'is not a package index URL; write an http or https URL, e.g. https://pypi.example.com/simple/',
      ),
      v.description('The package index pip installs the requirements from (PIP_INDEX_URL); with credentials, use the secret STACK_INDEX_URL.'),
    ),
  ),
  exclude: v.optional(
    v.pipe(
      v.array(
        v.pipe(
          v.string('each pattern is text, e.g. "*.sqlite3"'),
          v.nonEmpty('an empty pattern leaves nothing out; remove it'),
          v.check((s) => !/[\x00-\x1f\x7f-\x9f\u2028\u2029]/.test(s), 'a pattern is one line, without control characters; write one pattern per list item'),
        ),
        'must be a list of patterns, e.g. [node_modules/, "*.sqlite3"]',
      ),
      v.description('Gitignore-style patterns of files in source that are not shipped to the server.'),
    ),
    [],
  ),
  static: v.optional(
    v.strictObject({
      url: urlPrefix('/static/'),
      path: servedFolder('static directory', 'static'),
      max_age: v.optional(
        v.pipe(
          v.string('must be text (cache duration); write a number with a unit, e.g. 30d or 1y'),
          safe('cache duration'),
          v.check((s) => !/^\d+ms$/.test(s), 'nginx counts cache durations in whole seconds; write s, m, h, d, w, M or y, e.g. 30d'),
          v.regex(
            /^\d+(s|m|h|d|w|M|y)?$/,
            (i) =>
              `${JSON.stringify(i.input)} is not a valid cache duration; write a number with one unit: s, m, h, d, w, M (30 days) or y (365 days), e.g. 30d or 1y`,
          ),
          v.check(
            (s) => durationSeconds(s, Object.keys(UNIT_SECONDS))! <= MAX_CACHE_SECONDS,
            'a cache duration can be at most 10y (nginx\'s own "expires max"); write 10y or less',
          ),
        ),
        '1y',
      ),
    }),
  ),
  media: v.optional(
    v.strictObject({
      url: urlPrefix('/media/'),
      path: absolutePath('media directory', '/srv/blog/media'),
    }),
  ),
  health: v.optional(
    v.pipe(text('health check path', '/health'), v.regex(/^\/[A-Za-z0-9._~/?=&%-]*$/, 'must be a URL path starting with "/", e.g. /health')),
    '/health',
  ),
  env: v.optional(v.record(envName('environment variable name', 'use letters, digits and "_", not starting with a digit'), ENV_VALUE), {}),
  health_check: v.optional(
    v.strictObject({
      status: v.optional(wholeNumber('status', 100, 599, ' (an HTTP status code)'), 200),
      timeout: v.optional(positiveInt('timeout', 300), 3),
      retries: v.optional(positiveInt('retries', 600), 20),
    }),
    {},
  ),
  secrets: v.optional(v.array(SECRET_NAME, 'must be a list of secret names, e.g. [SECRET_KEY, DATABASE_URL]'), []),
  packages: v.optional(
    v.pipe(
      v.array(
        matching(
          'Debian package name',
          /^[a-z0-9][a-z0-9+.-]+$/,
          'use a Debian package name: lowercase letters, digits, "+", "-" and ".", e.g. python3-psycopg2 or libjpeg62-turbo',
        ),
        'must be a list of Debian package names, e.g. [python3-psycopg2, gettext]',
      ),
      v.description('Debian packages the app needs, installed by setup and deploy when missing.'),
    ),
    [],
  ),
});

/**
 * An environment's `app:` is laid over the top-level one. `env` and `secrets` merge key by key
 * instead of replacing the whole map (an environment that adds one variable must not lose
 * DJANGO_SETTINGS_MODULE): `NAME: null` in `env` removes an inherited variable, and `-NAME` in
 * `secrets` removes an inherited secret.
 */
export const EnvironmentAppSchema = v.partial(
  v.strictObject({
    ...AppSchema.entries,
    env: v.record(envName('environment variable name', 'use letters, digits and "_", not starting with a digit'), v.nullable(ENV_VALUE)),
    secrets: v.array(
      v.pipe(
        v.string('each entry is a secret name to add, or -NAME to remove one listed at the top level'),
        v.check(
          (s) => v.is(SECRET_NAME, s.replace(/^-/, '')),
          (i) => v.safeParse(SECRET_NAME, String(i.input).replace(/^-/, '')).issues?.[0]?.message ?? 'not a secret name',
        ),
        v.transform((s) => (s.startsWith('-') ? { remove: s.slice(1) } : s)),
      ),
      'must be a list of secret names, e.g. [SECRET_KEY, DATABASE_URL]',
    ),
  }),
);

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

/** How long each server hook may run: `90s`, `15m`, `1h`, or a number of seconds. */
/**
 * A duration from `min` to `max` seconds: `90s`, `15m`, `1h`, or a number of seconds. `range`
 * says the bounds as people write them ("1s to 24h"); `noun` names the field in that message.
 */
function duration(what: string, min: number, max: number, range: string, noun = what) {
  return v.union(
    [
      v.pipe(
        v.string(),
        v.regex(
          /^\d+(s|m|h)?$/,
          (i) => `${JSON.stringify(i.input)} is not a valid ${what}; write a number of seconds or a number with s, m or h, e.g. 90s, 15m or 1h`,
        ),
        v.check((s) => {
          const seconds = durationSeconds(s, ['s', 'm', 'h'])!;
          return seconds >= min && seconds <= max;
        }, `a ${noun} must be from ${range}`),
      ),
      wholeNumber(what, min, max, ' seconds (or a duration such as 15m or 1h)'),
    ],
    'must be a duration such as 90s, 15m or 1h, or a number of seconds',
  );
}

const hookTimeout = duration('timeout', HOOK_TIMEOUT.min, HOOK_TIMEOUT.max, '1s to 24h', 'hook timeout');

export const HooksSchema = v.strictObject({
  before_deploy: v.pipe(hookList('run locally before anything is sent'), v.description("Local commands, in the inventory's folder, before connecting.")),
  build: v.pipe(
    hookList('run on the server in the new release before it is sealed'),
    v.description(
      'Server commands in the new release before it is sealed, as the build user <name>-build, which may write into the release (e.g. collectstatic, compilemessages).',
    ),
  ),
  before_activate: v.pipe(
    hookList('run on the server in the new release'),
    v.description("Server commands as the app's user, with its env and venv, on the sealed (read-only) release before it goes live (e.g. migrate)."),
  ),
  after_activate: v.pipe(
    hookList('run on the server after the release is live'),
    v.description('Server commands in the live release after the health check passed.'),
  ),
  after_deploy: v.pipe(hookList('run locally after every host is done'), v.description('Local commands after a successful deploy.')),
  timeout: v.optional(
    v.pipe(hookTimeout, v.description('How long each server hook (build, before_activate, after_activate) may run: 90s, 15m, 1h (default 15m, at most 24h).')),
  ),
});

/** A systemd calendar expression (OnCalendar=), checked here as systemd would read it. */
export function calendar(what: string) {
  return v.pipe(
    v.string(`must be a systemd calendar expression (${what}), e.g. daily or "*-*-* 03:00:00"`),
    v.check(
      (s) => calendarProblem(s) === null,
      (i) => `${calendarProblem(String(i.input))} (${what})`,
    ),
  );
}

/** When the database is backed up, and how many backups stay. */
const BackupsSchema = v.strictObject({
  on: v.optional(v.pipe(calendar('backups.on'), v.description('When the backup timer runs: a systemd calendar expression (default daily).')), 'daily'),
  keep: v.optional(v.pipe(positiveInt('keep', 1000), v.description('How many backups of each kind (timer, manual, deploy, restore) are kept.')), 7),
});

/**
 * PostgreSQL on the app's own server: its role is the app's user (peer authentication over the
 * unix socket, so no password exists), its database owned by that role. Names end up in SQL,
 * pg_hba.conf and unit files, and stack adds suffixes (__restoring) within PostgreSQL's 63 bytes.
 */
export const DatabaseSchema = v.strictObject({
  engine: v.optional(v.picklist(['postgresql'], 'must be postgresql (the only engine for now)'), 'postgresql'),
  name: v.optional(
    v.pipe(
      matching('database name', /^[a-z][a-z0-9_-]{0,40}$/, 'use lowercase letters, digits, "_" and "-", starting with a letter, at most 41 characters'),
      v.description("The database's name (default: the app's name). The role is always the app's user."),
    ),
  ),
  locale: v.optional(
    v.pipe(
      matching('locale', /^[A-Za-z0-9_.@-]{1,64}$/, 'write a locale the server has, e.g. C.UTF-8 or en_US.UTF-8'),
      v.description('Collation and character classes of a new database (default C.UTF-8, which every Debian has). Checked on the server.'),
    ),
    'C.UTF-8',
  ),
  backups: v.optional(BackupsSchema, {}),
  before_deploy_backup: v.optional(
    v.pipe(v.boolean('must be true or false'), v.description('A backup right before every deploy that runs hooks (default true).')),
    true,
  ),
});

/** A process or job name: part of unit names (APP.NAME@1.service, APP.job.NAME.timer). */
const PART_NAME = /^[a-z][a-z0-9-]{0,19}$/;
const partName = (what: string) =>
  matching(`${what} name`, PART_NAME, 'use lowercase letters, digits and "-", starting with a letter, at most 20 characters, e.g. worker');

/** A command line run in the live release, as the app's user, with its environment and virtualenv. */
const releaseCommand = (what: string, example: string) =>
  v.pipe(
    v.string(`a ${what} is a command (text), e.g. "${example}"`),
    v.nonEmpty(`an empty command does nothing; write one, e.g. "${example}"`),
    v.check((s) => !/[\n\r\x00]/.test(s), `a ${what} is one line; put longer work in a script in your app and call that`),
  );

/**
 * A long-running process besides the web (a Celery or RQ worker, a beat scheduler): SCALE
 * instances of a systemd template unit, restarted by every deploy once the web is healthy.
 */
export const ProcessSchema = v.strictObject({
  command: v.pipe(
    releaseCommand('process', 'celery -A blog worker -l info'),
    v.description("Runs in the live release as the app's user, with its env and venv."),
  ),
  scale: v.optional(v.pipe(wholeNumber('scale', 0, 32, ' (instances; 0 stops them all)'), v.description('How many instances run (default 1).')), 1),
  stop_timeout: v.optional(
    v.pipe(
      duration('stop_timeout', 1, 3600, '1s to 1h'),
      v.description('How long a stop waits after SIGTERM (a warm shutdown finishing its tasks) before SIGKILL: 30s, 5m (default 60s).'),
    ),
    60,
  ),
  singleton: v.optional(
    v.pipe(
      v.boolean('must be true or false'),
      v.description('Runs on one worker host only (the first), e.g. a scheduler like celery beat; its scale is then at most 1.'),
    ),
    false,
  ),
});

/** A job on a schedule: a oneshot service started by its timer, never twice at once. */
export const JobSchema = v.strictObject({
  command: v.pipe(releaseCommand('job', 'python manage.py clearsessions'), v.description("Runs in the live release as the app's user, with its env and venv.")),
  on: v.pipe(calendar('on'), v.description('When: a systemd calendar expression, e.g. daily, hourly, "Mon *-*-* 07:00:00", "*:0/15".')),
  timeout: v.optional(v.pipe(duration('timeout', 1, 24 * 3600, '1s to 24h', 'job timeout'), v.description('How long one run may take (default 1h).')), 3600),
});

/** Redis on the server, on a unix socket only: `true`, or its memory limit and eviction policy. */
export const RedisSchema = v.union(
  [
    v.boolean(),
    v.strictObject({
      maxmemory: v.optional(matching('redis maxmemory', /^[1-9]\d{0,9}(kb|mb|gb)$/, 'write a size in kb, mb or gb, e.g. 256mb'), '256mb'),
      policy: v.optional(
        v.picklist(
          ['noeviction', 'allkeys-lru', 'allkeys-lfu', 'allkeys-random', 'volatile-lru', 'volatile-lfu', 'volatile-random', 'volatile-ttl'],
          "must be one of Redis's maxmemory policies, e.g. allkeys-lru (a cache) or noeviction (a broker that must not lose tasks)",
        ),
        'noeviction',
      ),
    }),
  ],
  'must be true, or { maxmemory: 256mb, policy: noeviction }',
);

const processes = v.pipe(
  v.record(partName('process'), ProcessSchema, 'must map process names to { command, scale }, e.g. worker: { command: "celery -A blog worker" }'),
  v.description('Long-running processes besides the web: workers, schedulers. Each is a systemd template unit with `scale` instances.'),
);
const schedule = v.pipe(
  v.record(partName('job'), JobSchema, 'must map job names to { command, on }, e.g. clearsessions: { command: "python manage.py clearsessions", on: daily }'),
  v.description('Jobs on a schedule: a systemd timer each, never overlapping, held while a deploy switches.'),
);

export const GatewaySchema = v.strictObject({
  server: v.optional(v.picklist(['gunicorn', 'uwsgi'], 'must be gunicorn or uwsgi'), 'gunicorn'),
  workers: v.optional(v.union([v.literal('auto'), positiveInt('workers', 256)], 'must be auto (2 x CPUs + 1) or a whole number'), 'auto'),
  threads: v.optional(positiveInt('threads', 64), 1),
  timeout: v.optional(positiveInt('timeout', 3600), 30),
  // Far more requests than a worker serves between restarts, and exact in every config format.
  max_requests: v.optional(wholeNumber('max_requests', 0, 1_000_000_000, ' (0 = never recycle)'), 0),
});

export const NginxSchema = v.strictObject({
  client_max_body_size: v.optional(
    v.pipe(
      matching('size', SIZE, 'write a number with an optional k, m or g, e.g. 16m'),
      v.check((s) => sizeBytes(s)! <= MAX_BODY_SIZE, 'client_max_body_size can be at most 1024g (1 TiB); write a smaller size, e.g. 100m'),
    ),
    '16m',
  ),
  version: v.optional(matching('nginx version', /^\d+\.\d+(\.\d+)?$/, "write the server's nginx version, e.g. 1.22")),
  ipv6: v.optional(v.boolean('must be true or false'), true),
  // Two years is what the HSTS preload list recommends; browsers cap what they keep (Chromium at a
  // year), so a longer max-age buys nothing.
  hsts_max_age: v.optional(wholeNumber('hsts_max_age', 0, 2 * 31536000, ' seconds (0 = no HSTS header, 63072000 = 2 years)'), 31536000),
  hsts_subdomains: v.optional(v.boolean('must be true or false'), false),
  ocsp_stapling: v.optional(v.boolean('must be true or false'), true),
  gzip: v.optional(v.boolean('must be true or false'), true),
  default_server: v.optional(v.boolean('must be true or false'), false),
});

const localFile = (what: string, example: string) =>
  v.pipe(
    text(what, example),
    v.check((s) => !/\s/.test(s), `${what} must not contain spaces`),
  );

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

/** What a host may run; a host without `roles:` runs all of them. */
export const HOST_ROLES = ['web', 'app', 'worker', 'db'] as const;
export type HostRole = (typeof HOST_ROLES)[number];

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
    matching(
      'host key',
      /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$/,
      'write the key as "TYPE BASE64", as `stack trust ENV` records it',
    ),
  ),
  cpus: v.optional(positiveInt('cpus', 1024)),
  identity_file: v.optional(
    v.pipe(localFile('identity file', '~/.ssh/id_ed25519'), v.description('Private key for SSH; otherwise ssh-agent and ~/.ssh/config decide.')),
  ),
  roles: v.optional(
    v.pipe(
      v.array(v.picklist(HOST_ROLES, `must be a list of ${HOST_ROLES.join(', ')}`), `must be a list of roles, e.g. [web, app]`),
      v.minLength(1, `needs at least one of ${HOST_ROLES.join(', ')} (leave the key out for all of them)`),
      v.check((r) => new Set(r).size === r.length, 'lists a role twice; remove the repeat'),
      v.description('What this host runs: web (nginx), app (the gateway), worker (the processes and jobs), db (the database and Redis). Default: all.'),
    ),
  ),
  private_address: v.optional(
    v.pipe(
      text('private address', '10.0.0.5'),
      v.check(
        (s) => isIP(s) !== 0,
        (i) => `${JSON.stringify(i.input)} is not an IPv4 or IPv6 address, e.g. 10.0.0.5`,
      ),
      v.description("Where the environment's other hosts reach this one (the gateway, PostgreSQL); default: address."),
    ),
  ),
});

/** A batch of a rolling deploy: a number of hosts, or a share of them ("25%"). */
export const RollingSchema = v.strictObject({
  batch: v.pipe(
    v.union(
      [positiveInt('batch', 1000), matching('batch share', /^([1-9]\d?|100)%$/, 'write a share from 1% to 100%, e.g. 25%')],
      'must be a number of hosts (1, 2, ...) or a share of them, e.g. "25%"',
    ),
    v.description('How many hosts deploy at once; the next batch starts only when this one is healthy.'),
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
    matching(
      'ACME directory URL',
      /^https:\/\/[A-Za-z0-9.-]+(:\d+)?(\/[A-Za-z0-9._~/-]*)?$/,
      'write an https URL, e.g. https://acme-staging-v02.api.letsencrypt.org/directory',
    ),
  ),
  keep: v.optional(positiveInt('keep', 100), 5),
  hosts: v.pipe(v.array(HostSchema, 'must be a list of hosts, e.g. [{ address: 203.0.113.10, user: deploy }]'), v.minLength(1, 'needs at least one host')),
  rolling: v.optional(RollingSchema),
  app: v.optional(EnvironmentAppSchema),
  gateway: v.optional(v.partial(GatewaySchema)),
  nginx: v.optional(v.partial(NginxSchema)),
  hooks: v.optional(v.partial(HooksSchema)),
  // Partial down to `backups`, so that an environment's `backups: { keep: 30 }` keeps the top's `on`.
  database: v.optional(v.partial(v.strictObject({ ...DatabaseSchema.entries, backups: v.optional(v.partial(BackupsSchema)) }))),
  // By name: an entry is laid over the top-level one key by key (`worker: { scale: 4 }`); null removes it.
  processes: v.optional(v.record(partName('process'), v.nullable(v.partial(ProcessSchema)))),
  schedule: v.optional(v.record(partName('job'), v.nullable(v.partial(JobSchema)))),
  redis: v.optional(RedisSchema),
});

/**
 * stack's own commands: an alias may not take one of their names (a test keeps this list equal to
 * the commands src/main.ts defines).
 */
export const BUILTIN_COMMANDS = [
  'init',
  'render',
  'export',
  'setup',
  'deploy',
  'trust',
  'releases',
  'certs',
  'rollback',
  'lock',
  'audit',
  'run',
  'status',
  'logs',
  'restart',
  'maintenance',
  'ssh',
  'db',
  'schedule',
  'sandbox',
  'help',
] as const;

/** `aliases: { console: "run -t -- python manage.py shell" }`: `stack console ENV` runs that. */
const AliasesSchema = v.pipe(
  v.record(
    v.pipe(
      matching('alias name', /^[a-z][a-z0-9-]{0,30}$/, 'use lowercase letters, digits and "-", e.g. console'),
      v.check(
        (s) => !(BUILTIN_COMMANDS as readonly string[]).includes(s),
        (i) => `${String(i.input)} is a command of stack itself; an alias cannot replace it, so pick another name`,
      ),
    ),
    v.pipe(
      v.string('an alias is a stack command line as text, e.g. "run -t -- python manage.py shell"'),
      safe('alias'),
      v.check(
        (s) => (BUILTIN_COMMANDS as readonly string[]).includes(s.trim().split(/\s+/)[0] ?? ''),
        (i) =>
          `"${String(i.input)}" must start with one of stack's commands (${BUILTIN_COMMANDS.filter((c) => c !== 'help').join(', ')}), e.g. "run -t -- python manage.py shell"`,
      ),
    ),
    'must map alias names to stack command lines, e.g. console: "run -t -- python manage.py shell"',
  ),
  v.description('Shortcuts: `aliases: { console: "run -t -- python manage.py shell" }` makes `stack console ENV`.'),
);

export const InventorySchema = v.strictObject({
  app: AppSchema,
  gateway: v.optional(GatewaySchema, {}),
  nginx: v.optional(NginxSchema, {}),
  hooks: v.optional(HooksSchema, {}),
  database: v.optional(v.pipe(DatabaseSchema, v.description('PostgreSQL for the app, provisioned by setup and backed up by a timer.'))),
  processes: v.optional(processes, {}),
  schedule: v.optional(schedule, {}),
  redis: v.optional(v.pipe(RedisSchema, v.description("Redis on a unix socket only (REDIS_URL and CELERY_BROKER_URL in the app's environment).")), false),
  aliases: v.optional(AliasesSchema, {}),
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
export type Database = v.InferOutput<typeof DatabaseSchema>;
export type Process = v.InferOutput<typeof ProcessSchema>;
export type Job = v.InferOutput<typeof JobSchema>;

/** The keys each object in the schema accepts, for "did you mean" on unknown keys. */
export function knownKeys(path: readonly (string | number)[]): string[] {
  let schema: unknown = InventorySchema;
  for (const key of path) {
    schema = childSchema(schema, key);
    if (!schema) return [];
  }
  const s = unwrap(schema) as { entries?: Record<string, unknown> };
  return s?.entries ? Object.keys(s.entries) : [];
}

/** The schema of `key` inside a value of `schema` (an object's field, a record's or list's item). */
export function childSchema(schema: unknown, key: string | number): unknown {
  const s = unwrap(schema) as { type?: string; entries?: Record<string, unknown>; value?: unknown; item?: unknown } | undefined;
  if (!s) return undefined;
  if (s.type === 'strict_object' || s.type === 'object') return typeof key === 'string' && Object.hasOwn(s.entries ?? {}, key) ? s.entries![key] : undefined;
  if (s.type === 'record') return s.value;
  if (s.type === 'array') return s.item;
  return undefined;
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
