/** The gateway server's own settings (gunicorn.conf.py or the uWSGI ini) and its systemd unit. */
import type { Environment } from '../inventory/resolve.js';
import type { HostFacts } from './facts.js';
import type { Layout } from './layout.js';
import { GATEWAY_PORT, hostPort, type Topology } from './topology.js';

/**
 * Where the gateway listens for web hosts elsewhere, on this host's private address; null when
 * only this host's own nginx uses it (the unix socket alone).
 */
export function gatewayTcp(topology: Topology | undefined): string | null {
  return topology && topology.gatewayClients.length > 0 ? hostPort(topology.privateAddress, GATEWAY_PORT) : null;
}

export interface GunicornSettings {
  app: string;
  wsgi: string;
  chdir: string;
  bind: string;
  /** Also listening on the private address for other web hosts (systemd holds both sockets). */
  tcpBind: string | null;
  /** A number, or a Python expression evaluated on the server when workers: auto and the CPU count is unknown. */
  workers: string;
  workersNote: string;
  threads: number;
  timeout: number;
  gracefulTimeout: number;
  maxRequests: number;
  maxRequestsJitter: number;
}

export interface UwsgiSettings {
  app: string;
  module: string;
  chdir: string;
  virtualenv: string;
  socket: string;
  /** Also listening on the private address for other web hosts. */
  tcpSocket: string | null;
  /** A number, or uWSGI's own arithmetic on `%k` (its CPU count) when unknown. */
  processes: string;
  processesNote: string;
  threads: number;
  /**
   * Stop gracefully on SIGTERM (each worker finishes its request). Only with one thread per
   * worker: uWSGI 2.0.21 (Debian 12) can hang on a graceful stop of threaded workers, holding
   * requests for tens of seconds (measured by bench/restart-under-load.mjs, THREADS=2), which
   * is worse than the rare request die-on-term loses.
   */
  gracefulStop: boolean;
  harakiri: number;
  maxRequests: number;
}

export interface AppUnit {
  app: string;
  description: string;
  user: string;
  group: string;
  workingDirectory: string;
  environmentFile: string;
  notifyAccess: 'main' | 'all';
  execStart: string;
  execReload: string;
  /** `<app>.socket`: systemd listens on `socket` and hands it to each new process. */
  socketUnit: string;
  /** Services the app talks to (PostgreSQL, its Redis): started before it. */
  uses: string[];
  socket: string;
  /** The private address:port web hosts elsewhere connect to, or null. */
  tcpListen: string | null;
  /** With tcpListen: the unit that loads the firewall letting only the web hosts in. */
  firewallUnit: string | null;
  /** The group that may connect to the socket: nginx's. */
  socketGroup: string;
  readWritePaths: string[];
  timeoutStopSec: number;
}

function workerCount(env: Environment, facts: HostFacts): { fixed: number | null; note: string } {
  const w = env.gateway.workers;
  if (w !== 'auto') return { fixed: w, note: `workers: ${w} in the inventory` };
  if (facts.cpus) return { fixed: facts.cpus * 2 + 1, note: `workers: auto = 2 x ${facts.cpus} CPUs + 1` };
  return { fixed: null, note: 'workers: auto = 2 x CPUs + 1, counted on the server at start' };
}

export function gunicornView(env: Environment, layout: Layout, facts: HostFacts, topology?: Topology): GunicornSettings {
  const { fixed, note } = workerCount(env, facts);
  return {
    app: env.app.name,
    wsgi: env.app.wsgi,
    chdir: layout.current,
    bind: `unix:${layout.socket}`,
    tcpBind: gatewayTcp(topology),
    workers: fixed === null ? 'multiprocessing.cpu_count() * 2 + 1' : String(fixed),
    workersNote: note,
    threads: env.gateway.threads,
    timeout: env.gateway.timeout,
    gracefulTimeout: env.gateway.timeout,
    maxRequests: env.gateway.max_requests,
    maxRequestsJitter: Math.floor(env.gateway.max_requests / 10),
  };
}

export function uwsgiView(env: Environment, layout: Layout, facts: HostFacts, topology?: Topology): UwsgiSettings {
  const { fixed, note } = workerCount(env, facts);
  return {
    app: env.app.name,
    module: env.app.wsgi,
    chdir: layout.current,
    virtualenv: layout.venv,
    socket: layout.socket,
    tcpSocket: gatewayTcp(topology),
    processes: fixed === null ? '%(%k * 2 + 1)' : String(fixed),
    processesNote: note,
    threads: env.gateway.threads,
    gracefulStop: env.gateway.threads === 1,
    harakiri: env.gateway.timeout,
    maxRequests: env.gateway.max_requests,
  };
}

/**
 * @param topology where the host is in its environment; the database and Redis are started first
 *   only where they run on this host.
 */
export function appUnitView(env: Environment, layout: Layout, topology?: Topology): AppUnit {
  const localDb = !topology || topology.db;
  const uwsgi = env.gateway.server === 'uwsgi';
  const python = `${layout.venv}/bin/python`;
  return {
    app: env.app.name,
    description: `${env.app.name} (${env.gateway.server}), deployed by stack`,
    user: env.app.name,
    group: env.app.name,
    workingDirectory: layout.current,
    environmentFile: layout.env_file,
    notifyAccess: uwsgi ? 'all' : 'main',
    // `python -m gunicorn` works whether gunicorn came from requirements or from a
    // --system-site-packages venv, and always runs under the release's own interpreter.
    execStart: uwsgi
      ? `/usr/bin/uwsgi --ini ${layout.config_dir}/uwsgi.ini`
      : `${python} -m gunicorn --config ${layout.config_dir}/gunicorn.conf.py ${env.app.wsgi}`,
    execReload: '/bin/kill -s HUP $MAINPID',
    socketUnit: `${env.app.name}.socket`,
    uses: [...(env.database && localDb ? ['postgresql.service'] : []), ...(env.redis && localDb ? [layout.redis_unit] : [])],
    socket: layout.socket,
    tcpListen: gatewayTcp(topology),
    firewallUnit: gatewayTcp(topology) ? `${env.app.name}-firewall.service` : null,
    socketGroup: layout.web_user,
    readWritePaths: [layout.shared, ...(env.app.media ? [env.app.media.path] : [])],
    timeoutStopSec: env.gateway.timeout + 10,
  };
}
