/**
 * What `stack status` asks a host besides the deploy's own facts, in the same round trip: the
 * managed units, one request through nginx, free disk space, maintenance mode, the releases,
 * the last audit entry and, with TLS, the certificates nginx serves.
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

export interface StatusFacts {
  units: UnitState[];
  probe: { code: string; seconds: number };
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
  probe: { url: string; resolve: string; timeout: number };
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
  return {
    what: 'read the status',
    lines: [
      shCommand('fact_unit', ...r.units),
      shCommand('fact_probe', r.probe.url, r.probe.resolve, String(r.probe.timeout)),
      shCommand('fact_disk', ...r.disks),
      shCommand('fact_present', r.layout.maintenance_page),
      ...releases.lines,
      ...audit.lines,
      ...(certs?.lines ?? []),
      ...(backups?.lines ?? []),
    ],
    parse: (output) => ({
      units: records(output, 'unit').map(([name, active, sub, seconds]) => ({ name: name!, active: active!, sub: sub!, seconds: Number(seconds) })),
      probe: ((p) => ({ code: p[0] || '000', seconds: Number(p[1] ?? 0) }))(records(output, 'probe')[0] ?? []),
      disk: records(output, 'space').map(([dir, free, total]) => ({ dir: dir!, freeKiB: Number(free), totalKiB: Number(total) })),
      maintenance: records(output, 'present').some(([p]) => p === r.layout.maintenance_page),
      releases: releases.parse(output),
      lastAudit: audit.parse(output).at(-1) ?? null,
      certs: certs ? certs.parse(output) : null,
      backups: backups ? backups.parse(output) : null,
    }),
  };
}
