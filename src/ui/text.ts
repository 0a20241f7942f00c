/**
 * Results as a person reads them in a terminal. At the default level this is exactly what the
 * commands printed before results became data: scripts and tests read these lines.
 */
import pc from 'picocolors';
import type { HostRunResult } from './results.js';
import { describeHolder } from '../facts/lock.js';
import { formatCertificates } from '../certs/report.js';
import { formatPlan } from '../plan/print.js';
import { describeStep, formatSteps } from '../plan/steps.js';
import type { Level } from './output.js';
import type { AuditHost, BackupsHost, CertsResult, CertsHost, LockHost, LockResult, ReleaseRow, ReleasesHost, StatusHost } from './results.js';
import type { BackupVerdict } from '../facts/backups.js';
import type { JobVerdict } from '../facts/status.js';

export function formatReleases(releases: readonly ReleaseRow[]): string {
  if (releases.length === 0) return '  no releases yet: run `stack deploy`';
  return releases
    .map((r) => {
      const m = r.manifest;
      const source = m ? (m.git_commit ? `git ${m.git_commit.slice(0, 10)}` : `source ${m.source_hash.slice(0, 10)}`) : 'incomplete';
      const detail = m
        ? `${m.created.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}  ${m.by}  ${source}${m.code_from ? `  (code of ${m.code_from})` : ''}`
        : 'incomplete (never went live)';
      return `${r.live ? pc.green('* ') : '  '}${r.id}  ${detail}${r.live ? pc.green('  live') : ''}`;
    })
    .join('\n');
}

export function releasesText(h: ReleasesHost): string {
  return `${pc.bold(h.host)}\n${formatReleases(h.releases)}\n`;
}

export function certsText(h: CertsHost, ssl: CertsResult['ssl']): string {
  return `${pc.bold(h.host)} (${ssl === 'custom' ? 'custom certificate' : ssl})\n${formatCertificates(h.certificates)}\n`;
}

export function noCertificatesText(env: string): string {
  return `${env} has ssl: none, so there are no certificates; set ssl: letsencrypt, self-signed or { cert, key }\n`;
}

export function lockText(h: LockHost, action: LockResult['action']): string {
  if (!h.locked) return `${h.host}: not locked\n`;
  if (action === 'release') return `${h.host}: ${pc.yellow('released')} the lock held by ${describeHolder(h.holder)}\n`;
  const note = h.stepRunning
    ? ' (one of its steps is running on the server right now)'
    : h.stale
      ? pc.yellow(` (stale: ${h.stale}; the next deploy clears it)`)
      : '';
  return `${h.host}: locked by ${describeHolder(h.holder)}${note}\n`;
}

export function auditText(h: AuditHost): string {
  const lines = [pc.bold(h.host)];
  if (h.entries.length === 0) lines.push('  nothing recorded yet');
  for (const e of h.entries) {
    if ('raw' in e) {
      lines.push(`  ${e.raw}`);
      continue;
    }
    const result = e.result === 'ok' ? pc.green('ok') : pc.red(`${e.result}${e.step ? `: ${e.step}` : ''}`);
    lines.push(`  ${e.time}  ${e.who}  ${e.command}${e.release ? `  release ${e.release}` : ''}  ${result}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * One host of a deploy or setup, as lines for stderr (where progress goes: the plan is read
 * between the steps). A dry run shows its plan, whole or (quiet) as its count of changes; a
 * deploy that ran shows its steps only with -v. Empty when there is nothing to show.
 */
export function deployHostLines(r: HostRunResult, env: string, dryRun: boolean, level: Level): string[] {
  if (!dryRun) {
    if (level !== 'verbose') return [];
    return [`${r.host}: ${r.steps.map(describeStep).join(', ')} (${roundTrips(r.execs)} in ${seconds(r.ms)})`];
  }
  const plan = formatPlan(r.plan, `${r.label} (${env})`);
  const lines = level === 'quiet' ? [plan.split('\n', 1)[0]!] : [plan, formatSteps(r.steps)];
  // Shown even with -q: someone else may be changing this host right now.
  if (r.lockHolder) lines.push(pc.yellow(`note: ${describeHolder(r.lockHolder)} holds the deploy lock right now`));
  return lines;
}

/**
 * A dry run of several hosts: hosts whose plans read the same (the same diffs, the same steps)
 * are shown once, under "3 hosts (a, b, c)", so the difference between hosts stands out.
 */
export function foldedDeployLines(results: readonly HostRunResult[], env: string, level: Level): string[] {
  const mark = '\u0000host\u0000';
  const groups = new Map<string, HostRunResult[]>();
  for (const r of results) {
    const key = deployHostLines({ ...r, label: mark }, env, true, level).join('\n');
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const out: string[] = [];
  for (const [text, rs] of groups) {
    const label = rs.length === 1 ? rs[0]!.label : `${rs.length} hosts (${rs.map((r) => r.label).join(', ')})`;
    out.push(text.split(mark).join(label));
  }
  return out;
}

/** The last line of a deploy: what changed where; `detail` adds each host's round trips and time. */
export function summaryLine(results: readonly HostRunResult[], dryRun: boolean, ms: number, detail = false): string {
  const changes = results.reduce((n, r) => n + r.changes, 0);
  const verb = dryRun ? 'would change' : 'changed';
  const hosts = results
    .map(
      (r) =>
        `${r.host}: ${r.changes} change${r.changes === 1 ? '' : 's'}${r.release ? `, release ${r.release}` : ''}${r.backup ? `, database backup ${r.backup}` : ''}${r.health ? `, health ${r.health}` : ''}${detail ? `, ${r.execs} ssh round trips in ${seconds(r.ms)}` : ''}`,
    )
    .join('; ');
  return `${dryRun ? pc.yellow('dry run:') : pc.green('done:')} ${verb} ${changes} thing${changes === 1 ? '' : 's'} on ${results.length} host${results.length === 1 ? '' : 's'} in ${seconds(ms)} (${hosts})`;
}

function roundTrips(n: number): string {
  return `${n} SSH round trip${n === 1 ? '' : 's'}`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** A duration as people say it: 45s, 12m, 3h, 5d. */
export function ago(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)}m`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

export function statusText(h: StatusHost): string {
  const bad = (text: string) => pc.red(text);
  const lines = [`${pc.bold(h.host)}  ${h.ok ? pc.green('ok') : bad('NOT OK')}`];
  const r = h.release;
  lines.push(
    `  release      ${r ? `${r.id}${r.ageSeconds !== null ? ` (${ago(r.ageSeconds)} ago)` : ''}${r.commit ? `, git ${r.commit.slice(0, 10)}` : ''}` : bad('none live: run stack deploy')}`,
  );
  for (const u of h.units) {
    const state = `${u.active}${u.sub && u.sub !== u.active ? ` (${u.sub})` : ''}`;
    lines.push(`  ${u.name.padEnd(12)} ${u.active === 'active' ? state : bad(state)} for ${ago(u.seconds)}`);
  }
  for (const j of h.jobs) lines.push(`  job ${j.name}  ${jobText(j)}`);
  if (h.health) lines.push(`  health       GET ${h.health.path} ${h.health.ok ? h.health.code : bad(h.health.code)} in ${h.health.ms} ms`);
  for (const c of h.certificates) {
    const text = `${c.domain}: ${c.days === null ? c.status : `${c.days} days left`}${c.status === 'ok' || c.days === null ? '' : ` (${c.status})`}`;
    lines.push(`  certificate  ${c.status === 'ok' ? text : bad(text)}`);
  }
  lines.push(`  disk         ${h.disk.map((d) => `${d.dir} ${d.freeMiB} MiB free (${d.usedPercent}% used)`).join(', ')}`);
  lines.push(`  lock         ${h.lock ? `held by ${describeHolder(h.lock)}` : 'free'}`);
  const last = h.lastDeploy;
  lines.push(
    `  last         ${last === null ? 'nothing recorded yet' : 'raw' in last ? last.raw : `${last.command} by ${last.who} at ${last.time}: ${last.result === 'ok' ? 'ok' : bad(`${last.result}${last.step ? ` (${last.step})` : ''}`)}`}`,
  );
  if (h.database) lines.push(`  backups      ${backupLine(h.database)}`);
  if (h.maintenance) lines.push(`  maintenance  ${pc.yellow('on')} (stack maintenance ENV off)`);
  lines.push(
    `  drift        ${h.drift === 0 ? 'none: the server is what the inventory and the code make' : pc.yellow(`${h.drift} change(s) a deploy would make (stack deploy ENV --dry-run shows them)`)}`,
  );
  lines.push(pc.dim(`  checked in ${roundTrips(h.roundTrips)}, ${seconds(h.ms)}`));
  return `${lines.join('\n')}\n`;
}

/** A time of a result (ISO 8601, UTC) as a person reads it: 2026-12-01 03:00:04 UTC. */
export function utcText(iso: string): string {
  const m = iso.match(/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})Z$/);
  return m ? `${m[1]} ${m[2]} UTC` : iso;
}

/**
 * A scheduled job's last and next run, for `stack status` and `stack schedule list`:
 * `last 2026-12-01 03:00:04 UTC (success), next 2026-12-02 03:00:02 UTC`; a failed run and a
 * timer that is not scheduled in red.
 */
export function jobText(j: JobVerdict): string {
  const at = j.last ? utcText(j.last) : 'not by its timer yet';
  const last =
    j.result === null
      ? 'never run yet'
      : j.result === 'running'
        ? pc.cyan('running now')
        : j.result === 'success'
          ? `last ${at} (success)`
          : j.result === 'unknown'
            ? `last ${at} (result unknown: it ran before the server last booted)`
            : pc.red(`last ${at} FAILED (${j.result}${j.exitStatus ? `, status ${j.exitStatus}` : ''})`);
  const next = j.next ? `next ${utcText(j.next)}` : '';
  const unscheduled = j.scheduled ? '' : pc.red('not scheduled (its timer is not running)');
  return [last, next, unscheduled].filter(Boolean).join(', ');
}

/** `stack schedule list`: one host's jobs, each with its schedule (`on`), last and next run. */
export function scheduleText(host: string, jobs: { on: string; verdict: JobVerdict }[]): string {
  const ok = jobs.every((j) => j.verdict.ok);
  const name = Math.max(...jobs.map((j) => j.verdict.name.length));
  const on = Math.max(...jobs.map((j) => j.on.length));
  const lines = [`${pc.bold(host)}  ${ok ? pc.green('ok') : pc.red('NOT OK')}`];
  for (const j of jobs) lines.push(`  ${j.verdict.name.padEnd(name)}  ${pc.dim(j.on.padEnd(on))}  ${jobText(j.verdict)}`);
  return `${lines.join('\n')}\n`;
}

/** The backups in one line: the newest, and a failure since loudly. */
function backupLine(v: BackupVerdict): string {
  const newest = v.newest ? `newest ${v.newest.id} (${ago(v.newest.ageSeconds)} ago)` : 'none yet';
  const next = v.next ? `, next ${v.next}` : '';
  if (v.failure?.current) return pc.red(`FAILED at ${v.failure.at}: ${v.failure.reason.split('\n').at(-1) ?? ''} (${newest}; stack db backups ENV)`);
  if (v.problem) return pc.red(`${v.problem} (${newest})`);
  return `${newest}${next}`;
}

/** `stack db backups`: a table, newest first, and the last failure above it when it is current. */
export function backupsText(h: BackupsHost): string {
  const v = h.verdict;
  const lines = [`${pc.bold(h.host)}  ${h.dir}  ${v.ok ? pc.green('ok') : pc.red('NOT OK')}`];
  if (v.failure) {
    const head = v.failure.current
      ? pc.red(`  LAST BACKUP FAILED at ${v.failure.at} (the timer's; none of its backups succeeded since)`)
      : `  last failure ${v.failure.at} (the timer's backup succeeded since)`;
    lines.push(head, ...v.failure.reason.split('\n').map((l) => `    ${v.failure!.current ? pc.red(l) : pc.dim(l)}`));
  }
  if (v.problem && !v.failure?.current) lines.push(pc.red(`  ${v.problem}`));
  lines.push(`  timer: next ${v.next ?? 'not scheduled'}${h.timer?.last ? `, last ${h.timer.last} (${h.timer.result || '?'})` : ''}`);
  if (h.backups.length === 0) lines.push('  no backups yet: `stack db backup ENV` takes one now');
  else {
    const now = Date.now() / 1000;
    lines.push(pc.dim(`  ${'id'.padEnd(26)} ${'size'.padStart(10)}  ${'age'.padStart(5)}  ${'made by'.padEnd(8)} checked`));
    for (const b of h.backups) {
      const checked = b.tables === null ? 'table of contents read' : `restored, ${b.tables} tables`;
      lines.push(`  ${b.id.padEnd(26)} ${formatBytes(b.bytes).padStart(10)}  ${ago(Math.max(0, now - b.created)).padStart(5)}  ${b.kind.padEnd(8)} ${checked}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Bytes as people read them: 812 B, 14.2 KiB, 96.0 MiB. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}
