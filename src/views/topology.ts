/**
 * Where each part of an environment runs when its hosts carry roles (web, app, worker, db), seen
 * from one host: what it runs itself, and whom it talks to or lets in. Pure. A host with every
 * role and no other host is the single server stack has always rendered: its files stay the same.
 */
import { hostRoles, type Environment } from '../inventory/resolve.js';
import type { Host, HostRole } from '../inventory/schema.js';

/** Where an app host's gateway listens for web hosts elsewhere (TCP, private address only). */
export const GATEWAY_PORT = 8000;
/** PostgreSQL's port on the db host, for app and worker hosts elsewhere. */
export const POSTGRES_PORT = 5432;
/** How nginx stops sending to an app host that fails: after this many failures, for this long. */
export const UPSTREAM_MAX_FAILS = 2;
export const UPSTREAM_FAIL_TIMEOUT = '10s';
/** Where the db host keeps the app role's password: root's alone, made there, never sent but to stack. */
export function dbPasswordFile(app: string): string {
  return `/etc/stack/${app}-db-password`;
}

/** The key of the database password in the secrets map (src/apply/cluster.ts fills it). */
export const DB_PASSWORD_SECRET = 'STACK_DB_PASSWORD';

export type Upstream = { local: true } | { local: false; address: string };

export interface Topology {
  web: boolean;
  app: boolean;
  worker: boolean;
  db: boolean;
  /** Every role: renders exactly as a single server did. */
  all: boolean;
  privateAddress: string;
  /** What nginx balances over, on a web host: its own socket (when it is an app host too) first, then the other app hosts. */
  upstreams: Upstream[];
  /** Private addresses of the web hosts other than this one, which reach this host's gateway over TCP. */
  gatewayClients: string[];
  /** The db host's private address when the database is on another host, else null. */
  remoteDb: string | null;
  /** On the db host: the private addresses of the app and worker hosts elsewhere, which connect over TCP. */
  dbClients: string[];
  /** This is the environment's first worker host: singleton processes run here. */
  firstWorker: boolean;
}

export function sameHost(a: Host, b: Host): boolean {
  return a.address === b.address && (a.port ?? 22) === (b.port ?? 22);
}

export function privateAddress(host: Host): string {
  return host.private_address ?? host.address;
}

const has = (h: Host, role: HostRole) => hostRoles(h).includes(role);

/**
 * Whether the environment's hosts share the work by roles. When no host says `roles:`, each host
 * runs everything on its own (several identical servers, as before roles existed).
 */
export function hasRoles(env: Environment): boolean {
  return env.hosts.some((h) => h.roles !== undefined);
}

const STANDALONE = {
  web: true,
  app: true,
  worker: true,
  db: true,
  all: true,
  upstreams: [{ local: true as const }],
  gatewayClients: [],
  remoteDb: null,
  dbClients: [],
  firstWorker: true,
};

export function topologyOf(env: Environment, host: Host): Topology {
  if (!hasRoles(env)) return { ...STANDALONE, privateAddress: privateAddress(host) };
  const others = env.hosts.filter((h) => !sameHost(h, host));
  const roles = hostRoles(host);
  const app = roles.includes('app');
  const web = roles.includes('web');
  const worker = roles.includes('worker');
  const db = roles.includes('db');
  const dbHost = env.hosts.find((h) => has(h, 'db'));
  const upstreams: Topology['upstreams'] = web
    ? [...(app ? [{ local: true as const }] : []), ...others.filter((h) => has(h, 'app')).map((h) => ({ local: false as const, address: privateAddress(h) }))]
    : [];
  const firstWorkerHost = env.hosts.find((h) => has(h, 'worker'));
  return {
    web,
    app,
    worker,
    db,
    all: web && app && worker && db,
    privateAddress: privateAddress(host),
    upstreams,
    gatewayClients: app ? others.filter((h) => has(h, 'web')).map(privateAddress) : [],
    remoteDb: env.database && dbHost && !sameHost(dbHost, host) && (app || worker) ? privateAddress(dbHost) : null,
    dbClients: db ? others.filter((h) => has(h, 'app') || has(h, 'worker')).map(privateAddress) : [],
    firstWorker: firstWorkerHost !== undefined && sameHost(firstWorkerHost, host),
  };
}

/** host:port for nginx, systemd and URLs: an IPv6 address in brackets. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The environment's db host, when a host other than the app and worker hosts runs the database. */
export function separateDbHost(env: Environment): Host | null {
  if (!env.database || !hasRoles(env)) return null;
  const dbHost = env.hosts.find((h) => has(h, 'db'));
  if (!dbHost) return null;
  const elsewhere = env.hosts.some((h) => !sameHost(h, dbHost) && (has(h, 'app') || has(h, 'worker')));
  return elsewhere ? dbHost : null;
}
