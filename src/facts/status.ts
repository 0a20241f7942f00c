/**
 * What `stack status` asks a host besides the deploy's own facts, in the same round trip: the
 * managed units, one request through nginx, free disk space, maintenance mode, the releases,
 * the last audit entry, the scheduled jobs' timers and last runs and, with TLS, the
 * certificates nginx serves.
 */
import { shCommand } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import { type AuditRow, auditFact } from './audit.js';
import { certsFact } from './certs.js';
import type { ServedCertificates } from '../certs/report.js';
import { type BackupFacts, backupsFact } from './backups.js';
import { records, type Fact } from './fact.js';
import { type ReleaseEntry, releasesFact } from './releases.js';

export interface UnitState {
  name: string;
  active: string;
  sub: string;
  /** Seconds in that state. */
  seconds: number;
}

/** A scheduled job as systemd knows it (fact_jobs): its timer and its service's last run. */
export interface JobState {
  name: string;
  /** The timer's ActiveState: `active` while it waits for the next run. */
  timer: string;
  /** When the timer last started the job and will next, as ISO 8601 (UTC); null: never, or not scheduled. */
  last: string | null;
  next: string | null;
  /** The service's ActiveState: `activating` while a run goes on. */
  service: string;
  /** systemd's result of the service's last run: success, exit-code, signal, timeout, ... */
  result: string;
  exitStatus: number | null;
  /** The service has run since the server booted (its result is of that run). */
  ranSinceBoot: boolean;
}

/** A job as `stack status` and `stack schedule list` report it. */
export interface JobVerdict {
  name: string;
  last: string | null;
  next: string | null;
  /**
   * The last run's result as systemd says it (success, exit-code, signal, timeout, ...),
   * `running` while one runs, `unknown` when it ran before the server last booted, null when
   * it never ran.
   */
  result: string | null;
  exitStatus: number | null;
  /** The timer waits for the next run (false: the job never runs by itself). */
  scheduled: boolean;
  /** The last run did not fail and the timer is scheduled. */
  ok: boolean;
  problem: string | null;
}

export interface StatusFacts {
  units: UnitState[];
  /** The scheduled jobs asked about (none when the inventory has no `schedule:`). */
  jobs?: JobState[];
  /** Null on a host without nginx: nothing to ask there. */
  probe: { code: string; seconds: number } | null;
  disk: { dir: string; freeKiB: number; totalKiB: number }[];
  maintenance: boolean;
  releases: ReleaseEntry[];
  lastAudit: AuditRow | null;
  certs: ServedCertificates | null;
  /** With `database:`: the backups and their timer. */
  backups: BackupFacts | null;
}

export interface StatusRequest {
  layout: Layout;
  units: string[];
  /** The scheduled jobs by name (their units are APP.job.NAME.timer and .service). */
  jobs?: string[];
  probe: { url: string; resolve: string; timeout: number } | null;
  disks: string[];
  auditFile: string;
  /** With TLS: the certificate file and the domains to ask nginx about. */
  certs: { file: string; domains: string[] } | null;
  /** With `database:`: read the backups too. */
  backups?: boolean;
}

export function statusFact(r: StatusRequest): Fact<StatusFacts> {
  const releases = releasesFact(r.layout);
  const audit = auditFact(r.auditFile, 1);
  const certs = r.certs ? certsFact(r.certs.file, r.certs.domains) : null;
  const backups = r.backups ? backupsFact(r.layout) : null;
  const jobs = jobsFact(r.layout, r.jobs ?? []);
  return {
    what: 'read the status',
    lines: [
      shCommand('fact_unit', ...r.units),
      ...jobs.lines,
      ...(r.probe ? [shCommand('fact_probe', r.probe.url, r.probe.resolve, String(r.probe.timeout))] : []),
      shCommand('fact_disk', ...r.disks),
      shCommand('fact_present', r.layout.maintenance_page),
      ...releases.lines,
      ...audit.lines,
      ...(certs?.lines ?? []),
      ...(backups?.lines ?? []),
    ],
    parse: (output) => ({
      units: records(output, 'unit').map(([name, active, sub, seconds]) => ({ name: name!, active: active!, sub: sub!, seconds: Number(seconds) })),
      jobs: jobs.parse(output),
      probe: r.probe ? ((p) => ({ code: p[0] || '000', seconds: Number(p[1] ?? 0) }))(records(output, 'probe')[0] ?? []) : null,
      disk: records(output, 'space').map(([dir, free, total]) => ({ dir: dir!, freeKiB: Number(free), totalKiB: Number(total) })),
      maintenance: records(output, 'present').some(([p]) => p === r.layout.maintenance_page),
      releases: releases.parse(output),
      lastAudit: audit.parse(output).at(-1) ?? null,
      certs: certs ? certs.parse(output) : null,
      backups: backups ? backups.parse(output) : null,
    }),
  };
}

/** The jobs' timers and last runs (fact_jobs); no line at all when there are none. */
export function jobsFact(layout: Layout, names: string[]): Fact<JobState[]> {
  return {
    what: 'read the scheduled jobs',
    lines: names.length > 0 ? [shCommand('fact_jobs', layout.app, ...names)] : [],
    parse: parseJobs,
  };
}

export function parseJobs(output: string): JobState[] {
  const dash = (s: string | undefined) => (!s || s === '-' ? null : s);
  return records(output, 'job')
    .filter(([name]) => name)
    .map(([name, timer, last, next, service, result, status, started]) => ({
      name: name!,
      timer: dash(timer) ?? 'unknown',
      last: systemdTime(last),
      next: systemdTime(next),
      service: dash(service) ?? 'unknown',
      result: dash(result) ?? '',
      exitStatus: status && /^\d+$/.test(status) ? Number(status) : null,
      ranSinceBoot: dash(started) !== null,
    }));
}

/**
 * A time as `TZ=UTC systemctl show` writes it (`Tue 2026-12-01 03:00:04 UTC`) in ISO 8601;
 * another form is kept as it is (it is still worth showing), nothing is null.
 */
export function systemdTime(text: string | undefined): string | null {
  if (!text || text === '-' || text === 'n/a') return null;
  const m = text.match(/^(?:\w{3} )?(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.\d+)? UTC$/);
  return m ? `${m[1]}T${m[2]}Z` : text;
}

/** States of a unit that is running or about to. */
const RUNNING = new Set(['activating', 'active', 'reloading', 'deactivating']);

/**
 * A job is fine when its timer waits for the next run and its last run did not fail. A run
 * before the last boot left no result (systemd keeps it in memory only): not a failure.
 */
export function judgeJob(j: JobState): JobVerdict {
  const result = RUNNING.has(j.service) ? 'running' : j.ranSinceBoot ? j.result || 'unknown' : j.last === null ? null : 'unknown';
  const failed = result !== null && !['success', 'running', 'unknown'].includes(result);
  const scheduled = j.timer === 'active';
  const problem = failed
    ? `the last run FAILED (${result}${j.exitStatus ? `, status ${j.exitStatus}` : ''})`
    : !scheduled
      ? `not scheduled: its timer is ${j.timer}`
      : null;
  return { name: j.name, last: j.last, next: j.next, result, exitStatus: j.exitStatus, scheduled, ok: problem === null, problem };
}
