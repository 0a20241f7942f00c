/**
 * `stack status ENV [--json]`: per host, in one round trip: the live release, the managed units
 * (every process instance the inventory wants among them), each scheduled job's last and next
 * run, a request through nginx, the certificates, disk space, the lock, the last deploy,
 * maintenance mode, and drift: what a deploy would change now (the dry run's plan, from the same
 * facts). Exit 1 when anything is unhealthy: a unit not active, a job whose last run failed or
 * whose timer is not scheduled, the health check, a certificate, the backups.
 */
import { healthCheckFor, runHost } from '../apply/deploy-host.js';
import { judgeCertificates } from '../certs/report.js';
import { auditFile } from '../facts/audit.js';
import { judgeBackups } from '../facts/backups.js';
import { judgeJob, type StatusFacts, statusFact } from '../facts/status.js';
import { sslMode, type Environment } from '../inventory/resolve.js';
import type { HostRunResult, StatusHost, StatusResult } from '../ui/results.js';
import { type Layout, layoutFor } from '../views/layout.js';
import { tlsFor } from '../views/nginx.js';
import { hostSchedule, processInstances } from '../views/processes.js';
import { type Topology, topologyOf } from '../views/topology.js';
import { prepareRun } from './deploy.js';
import { eachHost, settle } from '../apply/fleet.js';
import { parallelHosts, targetHosts } from './environment.js';
import type { GlobalOptions } from './options.js';

export async function runStatus(envName: string | undefined, globals: GlobalOptions): Promise<StatusResult> {
  const { env, hostOptions } = await prepareRun(envName, 'deploy', { dryRun: true }, globals);
  const layout = layoutFor(env.app, env.gateway);
  const tls = tlsFor(env, layout);
  const health = healthCheckFor(env, tls !== null, layout);
  const scheme = tls ? 'https' : 'http';
  // Each host is asked about what it runs (its roles): nginx and the request through it on web hosts, ...
  const fact = (topology: Topology) =>
    statusFact({
      layout,
      units: statusUnits(env, layout, topology),
      jobs: hostSchedule(env, topology).map((j) => j.name),
      probe: topology.web
        ? { url: `${scheme}://${health.host}${health.path}`, resolve: `${health.host}:${tls ? 443 : 80}:127.0.0.1`, timeout: health.timeout }
        : null,
      disks: [layout.root, '/var'],
      auditFile: auditFile(layout.app),
      certs: tls && topology.web ? { file: tls.certificate, domains: env.domains } : null,
      backups: env.database !== null && topology.db,
    });
  const result: StatusResult = { kind: 'status', env: env.name, hosts: [], exitCode: 0 };
  const hosts = targetHosts(env, globals.limit);
  const outcomes = await eachHost(hosts, parallelHosts(globals, hosts.length), async (host) => {
    const progress = hosts.length > 1 ? hostOptions.progress.scope() : hostOptions.progress;
    const topology = topologyOf(env, host);
    const run = await runHost({ ...hostOptions, host, progress, statusFact: fact(topology) });
    const part = statusOf(env, run, new Date(), topology);
    globals.output.host({ kind: 'status', ...part });
    return part;
  });
  result.hosts = settle(outcomes, 'status');
  if (result.hosts.some((h) => !h.ok)) result.exitCode = 1;
  return result;
}

/**
 * The units whose state status shows on a host, each of which must be active: those of its
 * roles, every process instance the inventory wants there among them.
 */
export function statusUnits(env: Environment, layout: Layout, topology?: Topology): string[] {
  const t = topology ?? { app: true, web: true, db: true };
  return [
    ...(t.app ? [`${layout.app}.socket`, layout.unit] : []),
    ...processInstances(env, layout, topology),
    ...(t.web ? ['nginx.service'] : []),
    ...(env.database && t.db ? ['postgresql.service', `${layout.backup_unit}.timer`] : []),
  ];
}

/** One host's status from what its round trip read. Pure. */
export function statusOf(env: Environment, run: HostRunResult, now: Date, topology?: Topology): StatusHost {
  const s = run.status as StatusFacts;
  const live = s.releases.find((r) => r.live) ?? null;
  const created = live?.manifest?.created ? Date.parse(live.manifest.created) : Number.NaN;
  const certificates = s.certs
    ? judgeCertificates(env.domains, s.certs, now, sslMode(env.ssl) === 'letsencrypt' ? 'certbot' : 'you').map((c) => ({
        domain: c.domain,
        days: c.days,
        status: c.status,
      }))
    : [];
  const healthOk = s.probe === null || s.probe.code === String(env.app.health_check.status);
  const unitsOk = s.units.every((u) => u.active === 'active');
  const jobs = (s.jobs ?? []).map(judgeJob);
  const database = s.backups ? judgeBackups(s.backups, now) : null;
  return {
    host: run.host,
    release: live
      ? {
          id: live.id,
          ageSeconds: Number.isNaN(created) ? null : Math.max(0, Math.round((now.getTime() - created) / 1000)),
          commit: live.manifest?.git_commit ?? null,
        }
      : null,
    units: s.units,
    jobs,
    health: s.probe ? { path: env.app.health, code: s.probe.code, ms: Math.round(s.probe.seconds * 1000), ok: healthOk } : null,
    certificates,
    disk: s.disk.map((d) => ({
      dir: d.dir,
      freeMiB: Math.floor(d.freeKiB / 1024),
      usedPercent: d.totalKiB > 0 ? Math.round(((d.totalKiB - d.freeKiB) / d.totalKiB) * 100) : 0,
    })),
    lock: run.lockHolder ?? null,
    lastDeploy: s.lastAudit,
    maintenance: s.maintenance,
    drift: run.changes,
    database,
    // A db host of its own runs no release.
    ok:
      (live !== null || (topology !== undefined && !topology.app && !topology.worker)) &&
      unitsOk &&
      jobs.every((j) => j.ok) &&
      healthOk &&
      certificates.every((c) => c.status === 'ok') &&
      (database?.ok ?? true),
    roundTrips: run.execs,
    ms: run.ms,
  };
}
