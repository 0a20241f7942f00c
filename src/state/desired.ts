/**
 * The desired state of one host: every file with its content, mode, owner, validation and the
 * handlers it fires, plus the packages, users, directories and services around them. `render`
 * prints it; `deploy` plans against it. Nothing here touches a server.
 */
import type { Environment } from '../inventory/resolve.js';
import { sslMode } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { displayContent, type Secret, SecretText, type FileContent } from '../secrets/secret.js';
import type { CustomCertificate } from '../certs/inspect.js';
import { loadRoles, matches, type Role, type RoleFile } from '../roles/load.js';
import type { TemplateEngine } from '../templates/engine.js';
import { backupProgram } from '../remote/library.js';
import { backupView } from '../views/database.js';
import { redisView } from '../views/redis.js';
import { envFileContent } from '../views/envfile.js';
import type { HostFacts } from '../views/facts.js';
import { appUnitView, gunicornView, uwsgiView } from '../views/gateway.js';
import { expandPlaceholders, jobUnit, layoutFor, type Layout } from '../views/layout.js';
import { hostSchedule, partUnitFiles, processInstances } from '../views/processes.js';
import { acmeStandInView, nginxSiteView } from '../views/nginx.js';
import { type Topology, topologyOf } from '../views/topology.js';
import { firewallRules, firewallUnit, firewallView } from '../views/firewall.js';

/**
 * Which role files a host with roles takes: nginx on web hosts; the app's user, release,
 * environment (and the gateway, on app hosts) where its code runs; PostgreSQL, its backups and
 * Redis on the db host.
 */
function hostTakes(role: string, t: Topology): boolean {
  switch (role) {
    case 'web':
      return t.web;
    case 'app':
      return t.app || t.worker;
    case 'database':
    case 'redis':
      return t.db;
    default:
      return true;
  }
}

export interface DesiredFile {
  path: string;
  content: FileContent;
  mode: string;
  owner: string;
  group: string;
  role: string;
  /** Which real tool checks this file before it goes live. */
  validate?: 'nginx' | 'systemd';
  notify: string[];
  /** The template it came from (e.g. `nginx/site.conf`), or the generator. */
  source: string;
  /** The project's override file, when one replaced the built-in template. */
  override?: string;
  /** Made by code rather than a template (env file, uploaded certificate). */
  generator?: string;
  /** Wholly secret (a private key): its content never comes back from the server, not even redacted. */
  secret?: boolean;
}

export interface DesiredLink {
  path: string;
  target: string;
  role: string;
  notify: string[];
}

export interface DesiredDir {
  path: string;
  mode: string;
  owner: string;
  group: string;
  role: string;
}

export interface Handler {
  name: string;
  description: string;
  command: string;
  /** The service it (re)starts, if any. */
  service?: string;
}

export interface DesiredState {
  host: Host;
  layout: Layout;
  packages: string[];
  users: { name: string; home: string; system: boolean }[];
  memberships: { user: string; group: string; absent?: boolean }[];
  dirs: DesiredDir[];
  files: DesiredFile[];
  links: DesiredLink[];
  removes: { path: string; role: string; notify: string[] }[];
  services: string[];
  /** In the order they run: daemon-reload before a restart, the app before nginx. */
  handlers: Handler[];
  /** With ssl: letsencrypt, the nginx block that answers ACME challenges while certbot runs. */
  acmeStandIn: string | null;
  /** The process instances and job timers that must run (their unit files are in `files`). */
  parts: { instances: string[]; timers: string[] };
}

export interface DesiredOptions {
  engine: TemplateEngine;
  facts: HostFacts;
  /** Limit to these roles (`--only`). */
  only?: string[];
  secrets?: ReadonlyMap<string, Secret>;
  roles?: Role[];
  /** The checked files of `ssl: { cert, key }` (src/certs/custom.ts). */
  certificate?: CustomCertificate | null;
}

export async function buildDesiredState(env: Environment, host: Host, options: DesiredOptions): Promise<DesiredState> {
  const layout = layoutFor(env.app, env.gateway);
  const expand = (s: string) => expandPlaceholders(s, layout);
  const topology = topologyOf(env, host);
  const context = {
    // Where the host is in its environment (roles/*.yml `when:`): its gateway, and whether web
    // hosts elsewhere reach it over TCP (its firewall).
    gateway_host: topology.app,
    gateway_tcp: topology.gatewayClients.length > 0,
    gateway: env.gateway.server,
    ssl: sslMode(env.ssl),
    static: env.app.static !== undefined,
    media: env.app.media !== undefined,
    ssl_chain: typeof env.ssl === 'object' && env.ssl.chain !== undefined,
    database: env.database !== null,
    redis: env.redis !== null,
  };
  const roles = (options.roles ?? loadRoles()).filter((r) => (!options.only || options.only.includes(r.name)) && hostTakes(r.name, topology));
  const state: DesiredState = {
    host,
    layout,
    packages: [],
    users: [],
    memberships: [],
    dirs: [],
    files: [],
    links: [],
    removes: [],
    services: [],
    handlers: [],
    acmeStandIn: null,
    parts: { instances: [], timers: [] },
  };
  for (const role of roles) {
    for (const p of role.packages) {
      const name = typeof p === 'string' ? p : matches(p.when, context) ? p.name : undefined;
      if (name && !state.packages.includes(name)) state.packages.push(name);
    }
    state.users.push(...role.users.map((u) => ({ ...u, name: expand(u.name), home: expand(u.home) })));
    state.memberships.push(...role.memberships.map((m) => ({ user: expand(m.user), group: expand(m.group), ...(m.absent ? { absent: true } : {}) })));
    for (const d of role.dirs) {
      if (!matches(d.when, context)) continue;
      state.dirs.push({ path: expand(d.path), mode: d.mode, owner: expand(d.owner), group: expand(d.group), role: role.name });
    }
    for (const f of role.files) {
      if (!matches(f.when, context)) continue;
      state.files.push(await desiredFile(f, role.name, env, layout, options, expand, topology));
    }
    state.links.push(...role.links.map((l) => ({ path: expand(l.path), target: expand(l.target), role: role.name, notify: l.notify })));
    state.removes.push(...role.removes.map((r) => ({ path: expand(r.path), role: role.name, notify: r.notify })));
    for (const service of role.services) {
      const name = typeof service === 'string' ? service : matches(service.when, context) ? service.name : undefined;
      if (name) state.services.push(expand(name));
    }
    for (const [name, h] of Object.entries(role.handlers)) {
      state.handlers.push({ name, description: expand(h.description), command: expand(h.command), service: h.service && expand(h.service) });
    }
  }
  // What the app itself needs from Debian (app.packages) comes with the role that runs it, and so
  // do its processes and scheduled jobs: one unit file each, as many as the inventory names.
  if (roles.some((r) => r.name === 'app')) {
    for (const name of env.app.packages) if (!state.packages.includes(name)) state.packages.push(name);
    for (const part of partUnitFiles(env, layout, topology)) {
      const rendered = await options.engine.render(part.template, part.view);
      state.files.push({
        path: part.path,
        content: rendered.content,
        mode: '0644',
        owner: 'root',
        group: 'root',
        role: 'app',
        validate: 'systemd',
        notify: ['daemon-reload'],
        source: part.template,
        override: rendered.override,
      });
    }
    state.parts = {
      instances: processInstances(env, layout, topology),
      timers: hostSchedule(env, topology).map((j) => `${jobUnit(layout, j.name)}.timer`),
    };
    if (state.parts.instances.length + state.parts.timers.length > 0) state.services.push(layout.target);
  }
  // Hosts elsewhere reach this one's gateway, or its PostgreSQL: a firewall lets only them in.
  const guarded =
    (context.gateway_tcp && roles.some((r) => r.name === 'app')) ||
    (topology.dbClients.length > 0 && context.database && roles.some((r) => r.name === 'database'));
  if (guarded) addFirewall(state, env, layout, topology);
  // A handler that restarts a service this host does not run (the gateway on a worker host) has
  // nothing to restart. A host with every role keeps them all, as a single server always did.
  if (!topology.all) state.handlers = state.handlers.filter((h) => !h.service || h.service === 'nginx' || state.services.includes(h.service));
  if (context.ssl === 'letsencrypt' && roles.some((r) => r.name === 'web')) {
    const standIn = await options.engine.render('nginx/acme-stand-in.conf', acmeStandInView(env, layout));
    state.acmeStandIn = displayContent(standIn.content);
  }
  return state;
}

/**
 * A host that hosts elsewhere reach on its private address (the gateway, PostgreSQL): its
 * nftables table lets only them in (src/views/firewall.ts), loaded before the gateway's socket
 * listens. Made by code, like the process units: the rules follow from the environment's hosts,
 * not from a template.
 */
function addFirewall(state: DesiredState, env: Environment, layout: Layout, topology: Topology): void {
  const view = firewallView(env, layout, topology);
  // Its own: the gateway's and the database's alike, and written by setup too (src/plan/plan.ts).
  const role = 'firewall';
  if (!state.packages.includes('nftables')) state.packages.push('nftables');
  if (!state.dirs.some((d) => d.path === '/etc/stack')) state.dirs.push({ path: '/etc/stack', mode: '0755', owner: 'root', group: 'root', role });
  const generated = { mode: '0644', owner: 'root', group: 'root', role, source: 'generated: firewall (src/views/firewall.ts)' };
  state.files.push(
    // Setup writes and loads them already: it (re)starts the gateway's socket, which requires
    // them, and PostgreSQL listens on the private address from setup on.
    { ...generated, path: view.rulesFile, content: firewallRules(view), notify: ['restart-firewall'] },
    // Only the rules load it again: a changed unit needs only daemon-reload.
    { ...generated, path: `/etc/systemd/system/${view.unit}`, content: firewallUnit(view), validate: 'systemd', notify: ['daemon-reload'] },
  );
  state.services.unshift(view.unit);
  // daemon-reload comes with the app role: a db host without it needs one for this unit to change.
  if (!state.handlers.some((h) => h.name === 'daemon-reload'))
    state.handlers.unshift({ name: 'daemon-reload', description: 'reload systemd units', command: 'systemctl daemon-reload' });
  // Right after daemon-reload: the rules are in place before the socket restarts on the port.
  const at = state.handlers.findIndex((h) => h.name === 'daemon-reload') + 1;
  state.handlers.splice(at, 0, {
    name: 'restart-firewall',
    description: `load the firewall of ${env.app.name} (${view.unit})`,
    // A reload when it runs (new rules, one transaction): a restart would go on to the socket,
    // which requires the unit, and so to the app. A start when it does not run yet.
    command: `systemctl reload-or-restart ${view.unit}`,
    service: view.unit,
  });
}

async function desiredFile(
  f: RoleFile,
  role: string,
  env: Environment,
  layout: Layout,
  options: DesiredOptions,
  expand: (s: string) => string,
  topology: Topology,
): Promise<DesiredFile> {
  const base = {
    generator: f.generator,
    path: expand(f.path),
    mode: f.mode,
    owner: expand(f.owner),
    group: expand(f.group),
    role,
    validate: f.validate,
    notify: f.notify,
  };
  if (f.generator === 'env') {
    return { ...base, content: envFileContent(env, options.secrets, topology), source: 'generated: environment file' };
  }
  if (f.generator === 'db-backup') {
    return { ...base, content: backupProgram(), source: 'generated: backup program (src/remote/sh/db.sh)' };
  }
  if (f.generator?.startsWith('certificate')) {
    const cert = options.certificate;
    if (!cert) throw new Error(`${f.path}: the custom certificate was not loaded`);
    const source = 'uploaded: ssl: in the inventory';
    if (f.generator === 'certificate-key') return { ...base, content: new SecretText([cert.key]), source, secret: true };
    return { ...base, content: f.generator === 'certificate' ? cert.fullchain : (cert.chain ?? ''), source };
  }
  const rendered = await options.engine.render(f.template!, viewFor(f.view, env, layout, options.facts, topology));
  return { ...base, content: rendered.content, source: f.template!, override: rendered.override };
}

function viewFor(view: RoleFile['view'], env: Environment, layout: Layout, facts: HostFacts, topology: Topology): object {
  switch (view) {
    case 'nginx':
      return nginxSiteView(env, layout, facts, topology);
    case 'unit':
      return appUnitView(env, layout, topology);
    case 'gunicorn':
      return gunicornView(env, layout, facts, topology);
    case 'uwsgi':
      return uwsgiView(env, layout, facts, topology);
    case 'database':
      return backupView(env, layout);
    case 'redis':
      return redisView(env, layout);
    case undefined:
      // Small templates (the certbot hook) need only the app's name.
      return { app: env.app.name };
  }
}

/**
 * The files a local check reads as configuration: nginx sites and systemd units, as printable
 * text. Uploaded certificates are validated on the server (nginx -t loads them) but are not sites.
 */
export function configFilesFor(state: DesiredState, tool: 'nginx' | 'systemd'): { path: string; content: string }[] {
  return state.files.filter((f) => f.validate === tool && f.generator === undefined).map((f) => ({ path: f.path, content: displayContent(f.content) }));
}
