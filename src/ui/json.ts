/**
 * Results as JSON documents for scripts: one per command, field names stable and documented in
 * the README ("Output for scripts"). Each view is built field by field rather than by dumping
 * the internal types, so a refactoring inside stack does not change what a script reads.
 *
 * Every diff here is the one the text shows: computed from the redacted (printable) contents,
 * with the env file's remote content redacted as it was read (redactEnvFileText). The output
 * then passes every string through the redaction of known secret values, as it does the text.
 */
import { createTwoFilesPatch } from 'diff';
import type { HostRunResult } from './results.js';
import type { DomainCertificate } from '../certs/report.js';
import type { LockHolder } from '../facts/lock.js';
import type { FileChange, Plan } from '../plan/plan.js';
import { describeStep } from '../plan/steps.js';
import { displayContent } from '../secrets/secret.js';
import { commandName, type AuditRow, type CommandResult, type ReleaseRow } from './results.js';

export function jsonOf(r: CommandResult): Record<string, unknown> {
  const command = commandName(r);
  switch (r.kind) {
    case 'releases':
      return { command, env: r.env, hosts: r.hosts.map((h) => ({ host: h.host, releases: h.releases.map(releaseJson) })) };
    case 'certs':
      return {
        command,
        env: r.env,
        ssl: r.ssl,
        ok: r.hosts.every((h) => h.certificates.every((c) => c.status === 'ok')),
        hosts: r.hosts.map((h) => ({ host: h.host, certificates: h.certificates.map(certificateJson) })),
      };
    case 'lock':
      return {
        command,
        env: r.env,
        hosts: r.hosts.map((h) => ({ host: h.host, locked: h.locked, holder: holderJson(h.holder), stepRunning: h.stepRunning, stale: h.stale })),
      };
    case 'audit':
      return { command, env: r.env, hosts: r.hosts.map((h) => ({ host: h.host, entries: h.entries.map(auditJson) })) };
    case 'backups':
      return {
        command,
        env: r.env,
        ok: r.hosts.every((h) => h.verdict.ok),
        hosts: r.hosts.map((h) => ({
          host: h.host,
          dir: h.dir,
          ok: h.verdict.ok,
          problem: h.verdict.problem,
          lastFailure: h.verdict.failure,
          next: h.verdict.next,
          timer: h.timer,
          backups: h.backups.map((b) => ({
            id: b.id,
            kind: b.kind,
            bytes: b.bytes,
            created: new Date(b.created * 1000).toISOString(),
            tables: b.tables,
            seconds: b.seconds,
          })),
        })),
      };
    case 'status':
      return {
        command,
        env: r.env,
        ok: r.hosts.every((h) => h.ok),
        hosts: r.hosts.map((h) => ({
          host: h.host,
          ok: h.ok,
          release: h.release,
          units: h.units.map((u) => ({ name: u.name, active: u.active, sub: u.sub, seconds: u.seconds })),
          jobs: h.jobs.map((j) => ({
            name: j.name,
            last: j.last,
            next: j.next,
            result: j.result,
            exitStatus: j.exitStatus,
            scheduled: j.scheduled,
            ok: j.ok,
            problem: j.problem,
          })),
          health: h.health,
          certificates: h.certificates,
          disk: h.disk,
          lock: holderJson(h.lock),
          lastDeploy: h.lastDeploy ? auditJson(h.lastDeploy) : null,
          maintenance: h.maintenance,
          drift: h.drift,
          database: h.database,
          roundTrips: h.roundTrips,
          ms: h.ms,
        })),
      };
    case 'deploy':
      return {
        command,
        env: r.env,
        dryRun: r.dryRun,
        changes: r.hosts.reduce((n, h) => n + h.changes, 0),
        ms: r.ms,
        hosts: r.hosts.map(hostRunJson),
      };
  }
}

function releaseJson(r: ReleaseRow) {
  const m = r.manifest;
  return {
    id: r.id,
    live: r.live,
    complete: m !== null,
    rollbackTarget: m !== null && r.hasConfig,
    created: m?.created ?? null,
    by: m?.by ?? null,
    gitCommit: m?.git_commit ?? null,
    sourceHash: m?.source_hash ?? null,
    codeFrom: m?.code_from ?? null,
  };
}

function certificateJson(c: DomainCertificate) {
  return {
    domain: c.domain,
    status: c.status,
    note: c.note || null,
    daysLeft: c.days,
    issuer: c.info?.issuer ?? null,
    subject: c.info?.subject ?? null,
    names: c.info?.names ?? [],
    notBefore: c.info?.notBefore.toISOString() ?? null,
    notAfter: c.info?.notAfter.toISOString() ?? null,
    fingerprint: c.info?.fingerprint ?? null,
  };
}

/** The holder as a person identifies it; the token that releases the lock stays out. */
function holderJson(h: LockHolder | null) {
  return h ? { who: h.who, client: h.client, pid: h.pid, since: h.since, command: h.command } : null;
}

function auditJson(e: AuditRow) {
  if ('raw' in e) return { raw: e.raw };
  return { time: e.time, who: e.who, command: e.command, release: e.release || null, result: e.result, step: e.step || null };
}

function hostRunJson(r: HostRunResult) {
  return {
    host: r.host,
    changes: r.changes,
    ...planJson(r.plan),
    steps: r.steps.map((s) => ({ kind: s.kind, description: describeStep(s) })),
    // As the text says it: each step is one round trip, and the facts take one more.
    roundTrips: r.steps.length + 1,
    lock: holderJson(r.lockHolder ?? null),
    release: r.plan.release ? releasePlanJson(r.plan.release) : null,
  };
}

function planJson(p: Plan) {
  return {
    packages: p.packages,
    users: p.users.map((u) => ({ name: u.name, home: u.home })),
    groups: {
      add: p.memberships.map((m) => ({ user: m.user, group: m.group })),
      remove: p.leaves.map((m) => ({ user: m.user, group: m.group })),
    },
    dirs: p.dirs.map((d) => ({ path: d.path, action: d.action, mode: d.mode, owner: d.owner, group: d.group })),
    files: p.files.map(fileJson),
    links: p.links.map((l) => ({ path: l.path, target: l.target })),
    removes: p.removes,
    certificate: p.certificate ? { domains: p.certificate.domains, server: p.certificate.server, reason: p.certificate.reason } : null,
    selfSigned: p.selfSigned ? { domains: p.selfSigned.domains } : null,
    upgrade: p.upgrade ? { sealReleases: p.upgrade.sealReleases, media: p.upgrade.media, socketGroup: p.upgrade.socketGroup } : null,
    enable: p.enable,
    start: p.start,
    handlers: p.handlers.map((h) => ({ name: h.name, description: h.description })),
  };
}

function releasePlanJson(r: NonNullable<Plan['release']>) {
  return {
    id: r.id,
    sourceHash: r.sourceHash,
    requirements: r.requirements,
    virtualenv: r.venvPlan ? { reused: r.venvPlan.reuse, key: r.venvPlan.key, index: r.venv.index } : null,
    codeFrom: r.copyFrom ?? null,
    shipped: r.shipped ? { added: r.shipped.added, removed: r.shipped.removed } : null,
  };
}

function fileJson(c: FileChange) {
  const f = c.file;
  return {
    path: f.path,
    action: c.action,
    mode: f.mode,
    owner: f.owner,
    group: f.group,
    attributesBefore: c.attributesBefore ?? null,
    secret: f.secret === true,
    secretOnly: c.secretOnly,
    diff: fileDiff(c),
  };
}

/** The unified diff the text shows for a file change (formatPlan), without colour. */
export function fileDiff(c: FileChange): string {
  if (c.action === 'attributes' || c.secretOnly) return '';
  const diff = c.action === 'create' ? createTwoFilesPatch('/dev/null', c.file.path, '', displayContent(c.file.content), '', '', { context: 3 }) : c.diff;
  return diff
    .split('\n')
    .filter((l) => !l.startsWith('==='))
    .join('\n');
}
