/**
 * One environment's complete settings: the top-level sections with the environment's own
 * overrides laid over them, plus the rules that span several fields.
 */
import { isIP } from 'node:net';
import * as v from 'valibot';
import {
  DatabaseSchema,
  JobSchema,
  ProcessSchema,
  type Job,
  type Process,
  durationSeconds,
  HOOK_TIMEOUT,
  type App,
  type Database,
  type Gateway,
  type Hooks,
  type Host,
  type InventoryDocument,
  type Nginx,
  HOST_ROLES,
  type HostRole,
  type Ssl,
} from './schema.js';
import type { FieldPath } from './locate.js';

/** The hooks of one environment; `timeout` is in seconds, whatever unit the inventory used. */
export type ResolvedHooks = Omit<Hooks, 'timeout'> & {
  /** How long each server hook (build, before_activate, after_activate) may run, in seconds. */
  timeout: number;
};

export interface Environment {
  name: string;
  app: App;
  gateway: Gateway;
  nginx: Nginx;
  hooks: ResolvedHooks;
  /** The first is canonical; the others redirect to it. */
  domains: string[];
  ssl: Ssl;
  email?: string;
  acme_server?: string;
  keep: number;
  hosts: Host[];
  /** Deploy in batches of this many hosts, each healthy before the next; null: all hosts at once. */
  rolling: { batch: number | string } | null;
  /** PostgreSQL provisioned for the app, or null when the inventory has no `database:`. */
  database: ResolvedDatabase | null;
  /** Processes besides the web, by name, in the inventory's order. */
  processes: ResolvedProcess[];
  /** Jobs on a schedule. */
  schedule: ResolvedJob[];
  /** Redis on a unix socket, or null. */
  redis: { maxmemory: string; policy: string } | null;
}

export interface ResolvedProcess {
  name: string;
  command: string;
  scale: number;
  /** Seconds a stop waits after SIGTERM. */
  stopSeconds: number;
  /** Runs on the environment's first worker host only. */
  singleton: boolean;
}

export interface ResolvedJob {
  name: string;
  command: string;
  on: string;
  timeoutSeconds: number;
}

/** `database:` with every default filled: the database's name is the app's unless set. */
export type ResolvedDatabase = Database & { name: string };

export type SslMode = 'none' | 'letsencrypt' | 'self-signed' | 'custom';

export function sslMode(ssl: Ssl): SslMode {
  return typeof ssl === 'string' ? ssl : 'custom';
}

/**
 * A problem's path is relative to the environment, and reported there when the environment sets
 * that field, else at the top level; an `exact` path is already the whole path in the inventory
 * (a merged list item, whose index in the merged list is in neither place).
 */
export interface ResolveProblem {
  path: FieldPath;
  message: string;
  exact?: boolean;
}

type Resolved = { ok: true; environment: Environment } | { ok: false; problems: ResolveProblem[] };

export function resolveEnvironment(doc: InventoryDocument, name: string): Resolved {
  const env = doc.environments[name]!;
  const merged = mergeEnvAndSecrets(doc.app, env.app, name);
  const environment: Environment = {
    name,
    app: { ...overlay(doc.app, { ...env.app, env: undefined, secrets: undefined }), env: merged.env, secrets: merged.secrets },
    gateway: overlay(doc.gateway, env.gateway),
    nginx: overlay(doc.nginx, env.nginx),
    hooks: resolveHooks(overlay(doc.hooks, env.hooks)),
    domains: env.domains,
    ssl: env.ssl,
    email: env.email,
    acme_server: env.acme_server,
    keep: env.keep,
    hosts: env.hosts,
    rolling: env.rolling ?? null,
    database: null,
    processes: [],
    schedule: [],
    redis: resolveRedis(env.redis ?? doc.redis),
  };
  environment.database = resolveDatabase(doc, env.database, environment.app.name);
  const parts: ResolveProblem[] = [];
  environment.processes = byName(doc.processes, env.processes, 'processes', name, parts).map(([n, p]) => {
    const process = v.parse(ProcessSchema, p) as Process;
    return {
      name: n,
      command: process.command,
      scale: process.scale,
      stopSeconds: durationSeconds(process.stop_timeout, ['s', 'm', 'h'])!,
      singleton: process.singleton,
    };
  });
  environment.schedule = byName(doc.schedule, env.schedule, 'schedule', name, parts).map(([n, j]) => {
    const job = v.parse(JobSchema, j) as Job;
    return { name: n, command: job.command, on: job.on, timeoutSeconds: durationSeconds(job.timeout, ['s', 'm', 'h'])! };
  });
  const problems = [...merged.problems, ...parts, ...crossFieldProblems(environment, merged.origins)];
  return problems.length > 0 ? { ok: false, problems } : { ok: true, environment };
}

/**
 * The top-level `database:` with the environment's overrides laid over it (`backups` key by key);
 * an environment may also add a database the top level does not have. Both halves were
 * validated already, so parsing the merge only fills the defaults.
 */
function resolveDatabase(doc: InventoryDocument, own: EnvironmentDatabase | undefined, app: string): ResolvedDatabase | null {
  if (!doc.database && !own) return null;
  const base: Partial<Database> = doc.database ?? {};
  const merged = { ...overlay(base, { ...own, backups: undefined }), backups: overlay(base.backups ?? {}, own?.backups) };
  const database = v.parse(DatabaseSchema, merged);
  // The environment's own app name (a staging app beside production) names its database too.
  return { ...database, name: database.name ?? app };
}

type EnvironmentDatabase = NonNullable<InventoryDocument['environments'][string]['database']>;

/**
 * Named entries (processes, jobs): the environment's laid over the top-level ones key by key,
 * `null` removing one. An entry the environment adds must be whole (a command); one that is not
 * is a problem at its place, and left out.
 */
function byName<T extends { command: string }>(
  top: Record<string, T>,
  own: Record<string, Partial<T> | null> | undefined,
  section: 'processes' | 'schedule',
  envName: string,
  problems: ResolveProblem[],
): [string, T][] {
  const merged = new Map<string, Partial<T>>(Object.entries(top));
  for (const [name, entry] of Object.entries(own ?? {})) {
    if (entry === null) merged.delete(name);
    else merged.set(name, { ...merged.get(name), ...(Object.fromEntries(Object.entries(entry).filter(([, value]) => value !== undefined)) as Partial<T>) });
  }
  const out: [string, T][] = [];
  for (const [name, entry] of merged) {
    if (entry.command === undefined) {
      problems.push({
        path: ['environments', envName, section, name],
        exact: true,
        message: `${name} is not in the top-level ${section}, so it needs its own command here`,
      });
    } else out.push([name, entry as T]);
  }
  return out;
}

/** `redis: true` takes the defaults; `false` or nothing is no Redis. */
function resolveRedis(redis: InventoryDocument['redis'] | undefined): Environment['redis'] {
  if (!redis) return null;
  const o: { maxmemory?: string; policy?: string } = redis === true ? {} : redis;
  return { maxmemory: o.maxmemory ?? '256mb', policy: o.policy ?? 'noeviction' };
}

function resolveHooks(hooks: Hooks): ResolvedHooks {
  const { timeout, ...lists } = hooks;
  // The schema has checked the value, so it converts.
  return { ...lists, timeout: timeout === undefined ? HOOK_TIMEOUT.defaultSeconds : durationSeconds(timeout, ['s', 'm', 'h'])! };
}

type EnvironmentApp = NonNullable<InventoryDocument['environments'][string]['app']>;

/**
 * `env` and `secrets` of an environment are merged into the top-level ones key by key: `NAME:
 * null` removes an inherited variable, `-NAME` an inherited secret. `origins[i]` is where the
 * i-th merged secret was written, for problems about it.
 */
function mergeEnvAndSecrets(
  app: App,
  own: EnvironmentApp | undefined,
  envName: string,
): { env: App['env']; secrets: string[]; origins: FieldPath[]; problems: ResolveProblem[] } {
  const env: App['env'] = { ...app.env };
  for (const [key, value] of Object.entries(own?.env ?? {})) {
    if (value === null) delete env[key];
    else env[key] = value;
  }
  const secrets = [...app.secrets];
  const origins: FieldPath[] = app.secrets.map((_, i) => ['app', 'secrets', i]);
  const problems: ResolveProblem[] = [];
  (own?.secrets ?? []).forEach((entry, i) => {
    const here: FieldPath = ['environments', envName, 'app', 'secrets', i];
    if (typeof entry === 'string') {
      secrets.push(entry);
      origins.push(here);
      return;
    }
    const at = secrets.indexOf(entry.remove);
    if (at < 0) {
      problems.push({
        path: here,
        exact: true,
        message: `-${entry.remove} removes an inherited secret, but app.secrets does not list ${entry.remove}; remove this entry`,
      });
      return;
    }
    secrets.splice(at, 1);
    origins.splice(at, 1);
  });
  return { env, secrets, origins, problems };
}

/** Override values win key by key; nested objects (static, media) are replaced whole. */
function overlay<T extends object>(base: T, override: Partial<T> | undefined): T {
  const out = { ...base };
  for (const [key, value] of Object.entries(override ?? {})) {
    if (value !== undefined) (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

/** pg_hba.conf's keywords, and the databases every cluster has. */
const PG_RESERVED_DATABASES = new Set(['all', 'sameuser', 'samerole', 'samegroup', 'replication', 'postgres', 'template0', 'template1']);
/** pg_hba.conf's keywords, and role names PostgreSQL keeps for itself. */
const PG_RESERVED_ROLES = new Set(['all', 'sameuser', 'samerole', 'samegroup', 'replication', 'public', 'none', 'postgres', 'current-user', 'session-user']);

/** What `database:` puts in the app's environment (src/views/envfile.ts databaseEnv). */
const DATABASE_VARIABLES = ['DATABASE_URL', 'PGHOST', 'PGDATABASE', 'PGUSER'];
/** What `redis:` puts there (redisEnv). */
const REDIS_VARIABLES = ['REDIS_URL', 'CELERY_BROKER_URL'];

function crossFieldProblems(env: Environment, secretOrigins: FieldPath[]): ResolveProblem[] {
  const problems: ResolveProblem[] = [];
  const mode = sslMode(env.ssl);
  if (mode === 'letsencrypt' && !env.email) {
    problems.push({ path: ['ssl'], message: 'letsencrypt needs an email: for the account; add email: ops@example.com to this environment' });
  }
  if (mode === 'letsencrypt') {
    env.domains.forEach((d, i) => {
      if (/^\d+\.\d+\.\d+\.\d+$/.test(d)) {
        problems.push({
          path: ['domains', i],
          message: "Let's Encrypt issues certificates for domain names, not IP addresses; use a domain or ssl: self-signed",
        });
      }
    });
  }
  if (env.acme_server && mode !== 'letsencrypt') {
    problems.push({ path: ['acme_server'], message: 'only used with ssl: letsencrypt; remove it or set ssl: letsencrypt' });
  }
  // Sets, not indexOf: an inventory may list thousands of names, and a scan per name is quadratic.
  const domains = new Set<string>();
  env.domains.forEach((d, i) => {
    if (domains.has(d)) problems.push({ path: ['domains', i], message: `${d} is listed twice; remove the repeat` });
    domains.add(d);
  });
  const envNames = new Set(Object.keys(env.app.env));
  const secrets = new Set<string>();
  env.app.secrets.forEach((s, i) => {
    const path = secretOrigins[i]!;
    if (envNames.has(s)) problems.push({ path, exact: true, message: `${s} is both in env: and in secrets:; keep it in secrets: only` });
    if (secrets.has(s)) problems.push({ path, exact: true, message: `${s} is listed twice; remove the repeat` });
    secrets.add(s);
  });
  // Words with a meaning of their own in pg_hba.conf or to PostgreSQL cannot name the app's
  // role or database: `all` in the app's pg_hba lines would reject every other app.
  if (env.database) {
    if (PG_RESERVED_DATABASES.has(env.database.name)) {
      problems.push({
        path: ['database', 'name'],
        message: `${env.database.name} means something else to PostgreSQL (a pg_hba.conf keyword or a database of its own); set database.name to another name`,
      });
    }
    if (PG_RESERVED_ROLES.has(env.app.name)) {
      problems.push({
        path: ['app', 'name'],
        message: `with database:, the app's name is its PostgreSQL role, and ${env.app.name} means something else to PostgreSQL; pick another app name`,
      });
    }
  }
  // With `database:` or `redis:`, stack writes these itself; a second value would be ambiguous.
  for (const [section, names] of [
    ['database', env.database ? DATABASE_VARIABLES : []],
    ['redis', env.redis ? REDIS_VARIABLES : []],
  ] as const) {
    const fix = `stack sets it from ${section}:; remove it here (or remove ${section}: when the ${section === 'database' ? 'database' : 'Redis'} lives elsewhere)`;
    for (const name of names) {
      if (envNames.has(name)) problems.push({ path: ['app', 'env', name], message: `${name}: ${fix}` });
      const at = env.app.secrets.indexOf(name);
      if (at >= 0) problems.push({ path: secretOrigins[at]!, exact: true, message: `${name}: ${fix}` });
    }
  }
  // `stack logs ENV NAME` and `stack restart ENV NAME` take these names: each must mean one thing.
  const taken = new Map([
    ['app', 'the web'],
    ['web', 'the web'],
    ['nginx', 'nginx'],
  ]);
  for (const [section, names] of [
    ['processes', env.processes.map((p) => p.name)],
    ['schedule', env.schedule.map((j) => j.name)],
  ] as const) {
    for (const name of names) {
      const other = taken.get(name);
      if (other) problems.push({ path: [section, name], message: `${name} already names ${other} in stack logs and stack restart; pick another name` });
      taken.set(name, section === 'processes' ? `the process ${name}` : `the job ${name}`);
    }
  }
  if (env.app.static && env.app.media && env.app.static.url === env.app.media.url) {
    problems.push({ path: ['app', 'media', 'url'], message: 'static and media need different URL prefixes, e.g. /static/ and /media/' });
  }
  problems.push(...topologyProblems(env));
  const seen = new Set<string>();
  env.hosts.forEach((h, i) => {
    const key = `${h.address}:${h.port ?? 22}`;
    if (seen.has(key)) problems.push({ path: ['hosts', i, 'address'], message: `${key} is listed twice; remove the repeat` });
    seen.add(key);
  });
  return problems;
}

/** The roles a host runs: those listed, or all of them. */
export function hostRoles(host: Host): readonly HostRole[] {
  return host.roles ?? HOST_ROLES;
}

/**
 * A host that others reach on its private address, or let in by it, needs an IP address there:
 * the address goes as it is into the gateway's socket and nginx's upstreams, PostgreSQL's
 * listen_addresses, pg_hba.conf (`ADDRESS/32`) and the nftables rules, none of which would take a
 * host name (or would resolve it once, to who knows what). `private_address` is checked to be
 * one; `address` may be a host name, which is fine for SSH alone.
 */
function addressProblems(env: Environment): ResolveProblem[] {
  const problems: ResolveProblem[] = [];
  const has = (h: Host, role: HostRole) => hostRoles(h).includes(role);
  env.hosts.forEach((host, i) => {
    if (isIP(host.private_address ?? host.address) !== 0) return;
    const others = env.hosts.filter((_, j) => j !== i);
    const why: string[] = [];
    if (has(host, 'app') && others.some((h) => has(h, 'web'))) why.push('web hosts elsewhere reach its gateway');
    if (has(host, 'web') && others.some((h) => has(h, 'app'))) why.push('the app hosts elsewhere let it in by address');
    if (env.database && has(host, 'db') && others.some((h) => has(h, 'app') || has(h, 'worker')))
      why.push('app and worker hosts elsewhere reach PostgreSQL on it');
    if (env.database && (has(host, 'app') || has(host, 'worker')) && others.some((h) => has(h, 'db'))) why.push('the db host lets it in by address');
    if (why.length === 0) return;
    // Exact: the key is missing, and only a whole path finds the host's own line rather than the top of the file.
    problems.push({
      path: ['environments', env.name, 'hosts', i, 'private_address'],
      exact: true,
      message: `${host.address} is a host name, and ${why.join(', and ')}: give it private_address, its IP address on the network the hosts share (e.g. 10.0.0.5)`,
    });
  });
  return problems;
}

/** Every part the inventory asks for needs a host to run it; a singleton cannot run twice. */
function topologyProblems(env: Environment): ResolveProblem[] {
  const problems: ResolveProblem[] = [];
  const has = (role: HostRole) => env.hosts.some((h) => hostRoles(h).includes(role));
  const noHost = (role: HostRole, what: string) =>
    problems.push({ path: ['hosts'], message: `no host has the role ${role}, so nothing would run ${what}; add ${role} to a host's roles` });
  if (!has('web')) noHost('web', 'nginx');
  if (!has('app')) noHost('app', 'the gateway');
  if (env.processes.length + env.schedule.length > 0 && !has('worker')) noHost('worker', 'the processes and scheduled jobs');
  if ((env.database || env.redis) && !has('db')) noHost('db', env.database ? 'the database' : 'Redis');
  // Without any `roles:`, every host runs everything on its own (identical servers, each with
  // its own database): the checks below are about hosts that share the work.
  const shared = env.hosts.some((h) => h.roles !== undefined);
  const dbHosts = env.hosts.filter((h) => hostRoles(h).includes('db'));
  if (shared && dbHosts.length > 1)
    problems.push({ path: ['hosts'], message: 'several hosts have the role db; one database host per environment (give db to one host only)' });
  const codeElsewhere = env.hosts.findIndex((h) => (hostRoles(h).includes('app') || hostRoles(h).includes('worker')) && !hostRoles(h).includes('db'));
  if (shared && env.redis && codeElsewhere >= 0)
    problems.push({
      path: ['hosts', codeElsewhere, 'roles'],
      message:
        'Redis runs on the db host on a unix socket, which app and worker hosts elsewhere cannot reach; give this host the db role too (one host runs the app, its workers and Redis), or remove redis:',
    });
  const webOnly = env.hosts.findIndex((h) => hostRoles(h).includes('web') && !hostRoles(h).includes('app'));
  if (shared && webOnly >= 0 && (env.app.static || env.app.media))
    problems.push({
      path: ['hosts', webOnly, 'roles'],
      message: `nginx serves ${env.app.static ? 'static files' : 'uploads'} from the release on its own host, and a web host without the app role has none; give it the app role too, or let the app serve them`,
    });
  const appHosts = env.hosts.filter((h) => hostRoles(h).includes('app'));
  if (shared && env.app.media && appHosts.length > 1)
    problems.push({
      path: ['app', 'media'],
      message: `uploads are kept on the app host that received them, and ${appHosts.length} app hosts share the requests; keep media elsewhere (object storage) and remove media:, or run the app on one host`,
    });
  if (shared) problems.push(...addressProblems(env));
  for (const p of env.processes) {
    if (p.singleton && p.scale > 1)
      problems.push({ path: ['processes', p.name, 'scale'], message: `${p.name} is a singleton (one instance on one host); its scale is 0 or 1` });
  }
  return problems;
}
