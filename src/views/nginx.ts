/** The nginx site as a view model: every decision made here, the template only lays it out. */
import path from 'node:path';
import type { Environment } from '../inventory/resolve.js';
import { sslMode } from '../inventory/resolve.js';
import type { HostFacts } from './facts.js';
import { versionAtLeast } from './facts.js';
import type { Layout } from './layout.js';
import { GATEWAY_PORT, hostPort, type Topology, UPSTREAM_FAIL_TIMEOUT, UPSTREAM_MAX_FAILS } from './topology.js';

export interface NginxTls {
  certificate: string;
  certificateKey: string;
  /** CA chain for OCSP stapling; absent when there is no chain (self-signed). */
  trustedCertificate: string | null;
  stapling: boolean;
  protocols: string;
  ciphers: string;
}

export interface NginxSite {
  app: string;
  upstream: string;
  /** `unix:/run/<app>/<server>.sock` */
  upstreamServer: string;
  /** Each `server` line of the upstream: this host's socket, and the other app hosts' gateways. */
  upstreamServers: string[];
  /** Several app hosts: a request that cannot reach one goes to the next (connect error or timeout). */
  balanced: boolean;
  gateway: 'gunicorn' | 'uwsgi';
  canonical: string;
  /** Other domains, redirected to the canonical one. */
  aliases: string[];
  listenHttp: string[];
  listenHttps: string[];
  /** The same for the blocks that redirect other names: never default_server. */
  listenAliasHttp: string[];
  listenAliasHttps: string[];
  /** nginx >= 1.25.1 turns HTTP/2 on with its own directive; older ones take it on `listen`. */
  http2Directive: boolean;
  tls: NginxTls | null;
  acmeWebroot: string;
  hsts: string | null;
  clientMaxBodySize: string;
  /** Seconds nginx waits for the app; a little longer than the gateway's own timeout. */
  readTimeout: number;
  gzip: boolean;
  static: { url: string; alias: string; maxAge: string } | null;
  media: { url: string; alias: string } | null;
  accessLog: string;
  errorLog: string;
  maintenance: { dir: string; page: string; file: string; healthPath: string; retryAfter: number };
}

/** What a maintenance page tells clients and crawlers: come back in five minutes. */
export const MAINTENANCE_RETRY_AFTER = 300;

// Mozilla's "intermediate" TLS profile (ECDHE suites only: DHE needs a dhparam file of its own).
const TLS_PROTOCOLS = 'TLSv1.2 TLSv1.3';
const TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export function tlsFor(env: Environment, layout: Layout): NginxTls | null {
  const mode = sslMode(env.ssl);
  const canonical = env.domains[0]!;
  const policy = { protocols: TLS_PROTOCOLS, ciphers: TLS_CIPHERS };
  switch (mode) {
    case 'none':
      return null;
    case 'letsencrypt': {
      const live = `/etc/letsencrypt/live/${canonical}`;
      return {
        ...policy,
        certificate: `${live}/fullchain.pem`,
        certificateKey: `${live}/privkey.pem`,
        trustedCertificate: `${live}/chain.pem`,
        stapling: env.nginx.ocsp_stapling,
      };
    }
    case 'self-signed':
      return {
        ...policy,
        certificate: `${layout.cert_dir}/selfsigned.crt`,
        certificateKey: `${layout.cert_dir}/selfsigned.key`,
        trustedCertificate: null,
        stapling: false,
      };
    case 'custom': {
      const hasChain = typeof env.ssl === 'object' && env.ssl.chain !== undefined;
      return {
        ...policy,
        certificate: `${layout.cert_dir}/fullchain.pem`,
        certificateKey: `${layout.cert_dir}/privkey.pem`,
        trustedCertificate: hasChain ? `${layout.cert_dir}/chain.pem` : null,
        stapling: hasChain && env.nginx.ocsp_stapling,
      };
    }
  }
}

/**
 * The gateways nginx sends requests to. One server (its own socket) is never marked failed: there
 * is nowhere else to go. Several are balanced: one that refuses or times out is skipped by the
 * request (next upstream) and, after a few failures, left alone for a while.
 */
function upstreamServers(layout: Layout, topology: Topology | undefined): string[] {
  const own = `unix:${layout.socket}`;
  const servers = topology?.upstreams ?? [{ local: true as const }];
  if (servers.length === 1 && servers[0]!.local) return [`${own} fail_timeout=0`];
  const limits = `max_fails=${UPSTREAM_MAX_FAILS} fail_timeout=${UPSTREAM_FAIL_TIMEOUT}`;
  return servers.map((s) => `${s.local ? own : hostPort(s.address, GATEWAY_PORT)} ${limits}`);
}

export function nginxSiteView(env: Environment, layout: Layout, facts: HostFacts, topology?: Topology): NginxSite {
  const { app, gateway, nginx } = env;
  const servers = upstreamServers(layout, topology);
  const tls = tlsFor(env, layout);
  const http2Directive = versionAtLeast(facts.nginxVersion, [1, 25, 1]);
  const def = nginx.default_server ? ' default_server' : '';
  // Only the canonical name's blocks may be default_server: nginx refuses two on one port.
  const listen = (port: string, extra: string, canonical = true) => {
    const d = canonical ? def : '';
    return [`${port}${extra}${d}`, ...(nginx.ipv6 ? [`[::]:${port}${extra}${d}`] : [])];
  };
  const hstsParts = [`max-age=${nginx.hsts_max_age}`, ...(nginx.hsts_subdomains ? ['includeSubDomains'] : [])];
  return {
    app: app.name,
    upstream: `${app.name.replace(/-/g, '_')}_app`,
    upstreamServer: `unix:${layout.socket}`,
    upstreamServers: servers,
    balanced: servers.length > 1,
    gateway: gateway.server,
    canonical: env.domains[0]!,
    aliases: env.domains.slice(1),
    listenHttp: listen('80', ''),
    listenHttps: tls ? listen('443', http2Directive ? ' ssl' : ' ssl http2') : [],
    listenAliasHttp: listen('80', '', false),
    listenAliasHttps: tls ? listen('443', http2Directive ? ' ssl' : ' ssl http2', false) : [],
    http2Directive,
    tls,
    acmeWebroot: layout.acme_webroot,
    hsts: tls && nginx.hsts_max_age > 0 ? hstsParts.join('; ') : null,
    clientMaxBodySize: nginx.client_max_body_size,
    readTimeout: gateway.timeout + 5,
    gzip: nginx.gzip,
    static: app.static ? { url: app.static.url, alias: `${layout.current}/${trimSlashes(app.static.path)}/`, maxAge: app.static.max_age } : null,
    media: app.media ? { url: app.media.url, alias: `${app.media.path.replace(/\/+$/, '')}/` } : null,
    accessLog: nginxLogFiles(app.name).access,
    errorLog: nginxLogFiles(app.name).error,
    maintenance: {
      dir: path.posix.dirname(layout.maintenance_page),
      page: path.posix.basename(layout.maintenance_page),
      file: layout.maintenance_page,
      healthPath: app.health.split('?')[0]!,
      retryAfter: MAINTENANCE_RETRY_AFTER,
    },
  };
}

function trimSlashes(p: string): string {
  return p.replace(/^\.\//, '').replace(/\/+$/, '');
}

/** The ACME stand-in block (templates/nginx/acme-stand-in.conf.hbs) used while certbot runs. */
export interface AcmeStandIn {
  app: string;
  /** Never default_server: the live site may be, and two would not pass nginx -t. */
  listen: string[];
  /** Filled in on the server with the domains nginx does not answer yet. */
  serverNames: string;
  acmeWebroot: string;
}

/** The domains in an ACME stand-in are chosen on the server; this is where they go. */
export const STAND_IN_DOMAINS = 'STACK_DOMAINS';

export function acmeStandInView(env: Environment, layout: Layout): AcmeStandIn {
  return { app: env.app.name, listen: ['80', ...(env.nginx.ipv6 ? ['[::]:80'] : [])], serverNames: STAND_IN_DOMAINS, acmeWebroot: layout.acme_webroot };
}

/** nginx's log files of an app's site (`stack logs` reads them). */
export function nginxLogFiles(app: string): { access: string; error: string } {
  return { access: `/var/log/nginx/${app}.access.log`, error: `/var/log/nginx/${app}.error.log` };
}
