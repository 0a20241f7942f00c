/**
 * `stack status ENV [--json]`: per host, in one round trip: the live release, the managed units,
 * a request through nginx, the certificates, disk space, the lock, the last deploy, maintenance
 * mode, and drift: what a deploy would change now (the dry run's plan, from the same facts).
 * Exit 1 when anything is unhealthy.
 */
import { healthCheckFor, runHost } from '../apply/deploy-host.js';
import { judgeCertificates } from '../certs/report.js';
import { auditFile } from '../facts/audit.js';
import { judgeBackups } from '../facts/backups.js';
import { type StatusFacts, statusFact } from '../facts/status.js';
import { sslMode, type Environment } from '../inventory/resolve.js';
import type { HostRunResult, StatusHost, StatusResult } from '../ui/results.js';
import { layoutFor } from '../views/layout.js';
import { tlsFor } from '../views/nginx.js';
import { prepareRun } from './deploy.js';
import type { GlobalOptions } from './options.js';

export async function runStatus(envName: string | undefined, globals: GlobalOptions): Promise<StatusResult> {
  const { env, hostOptions } = await prepareRun(envName, 'deploy', { dryRun: true }, globals);
  const layout = layoutFor(env.app, env.gateway);
  const tls = tlsFor(env, layout);
  const health = healthCheckFor(env, tls !== null, layout);
  const scheme = tls ? 'https' : 'http';
  const fact = statusFact({
    layout,
    units: [`${layout.app}.socket`, layout.unit, 'nginx.service', ...(env.database ? ['postgresql.service', `${layout.backup_unit}.timer`] : [])],
    probe: { url: `${scheme}://${health.host}${health.path}`, resolve: `${health.host}:${tls ? 443 : 80}:127.0.0.1`, timeout: health.timeout },
    disks: [layout.root, '/var'],
    auditFile: auditFile(layout.app),
    certs: tls ? { file: tls.certificate, domains: env.domains } : null,
    backups: env.database !== null,
  });
  const result: StatusResult = { kind: 'status', env: env.name, hosts: [], exitCode: 0 };
  for (const host of env.hosts) {
    const run = await runHost({ ...hostOptions, host, statusFact: fact });
    const part = statusOf(env, run, new Date());
    result.hosts.push(part);
    globals.output.host({ kind: 'status', ...part });
  }
  if (result.hosts.some((h) => !h.ok)) result.exitCode = 1;
  return result;
}

/** One host's status from what its round trip read. Pure. */
export function statusOf(env: Environment, run: HostRunResult, now: Date): StatusHost {
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
  const healthOk = s.probe.code === String(env.app.health_check.status);
  const unitsOk = s.units.every((u) => u.active === 'active');
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
    health: { path: env.app.health, code: s.probe.code, ms: Math.round(s.probe.seconds * 1000), ok: healthOk },
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
    ok: live !== null && unitsOk && healthOk && certificates.every((c) => c.status === 'ok') && (database?.ok ?? true),
    roundTrips: run.execs,
    ms: run.ms,
  };
}
