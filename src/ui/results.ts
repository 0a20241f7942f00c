/**
 * What commands return: their results as data, for src/ui/output.ts to print as text or JSON.
 * A result covers every host; a host's part can be printed as soon as it is known (`HostPart`),
 * so a listing over several hosts shows the first before the last has answered.
 */
import type { BackupEntry, BackupFacts, BackupVerdict } from '../facts/backups.js';
import type { JobVerdict, StatusFacts, UnitState } from '../facts/status.js';
import type { Plan } from '../plan/plan.js';
import type { Step } from '../plan/steps.js';
import type { DomainCertificate } from '../certs/report.js';
import type { LockHolder } from '../facts/lock.js';
import type { SslMode } from '../inventory/resolve.js';

/** One host's deploy, setup or dry run, as runHost (src/apply/deploy-host.ts) returns it. */
export interface HostRunResult {
  host: string;
  /** The SSH destination as messages name it (user@address). */
  label: string;
  plan: Plan;
  /** The server steps planned after the facts, in order: each one SSH round trip. */
  steps: Step[];
  changes: number;
  /** SSH round trips this run took. */
  execs: number;
  ms: number;
  health?: string;
  release?: string;
  /** The release that was live before this run (null: none); a failed batch goes back to it. */
  previous?: string | null;
  /** The database backup taken before the release's hooks (its id). */
  backup?: string;
  /** Dry runs: who holds the deploy lock right now, if anyone. */
  lockHolder?: LockHolder | null;
  /** `stack status`: what else the facts' round trip read. */
  status?: StatusFacts;
}

/** One release on a host, as its manifest recorded it (null: it never went live). */
export interface ReleaseRow {
  id: string;
  live: boolean;
  /** Its configuration is recorded, so it can be rolled back to. */
  hasConfig: boolean;
  manifest: {
    source_hash: string;
    created: string;
    by: string;
    git_commit?: string | null;
    code_from?: string;
    /** The server hooks it ran (a migration may have changed the database). */
    hooks?: string[];
    /** The backup taken right before them. */
    db_backup?: string;
  } | null;
}

export interface ReleasesHost {
  host: string;
  releases: ReleaseRow[];
}

export interface CertsHost {
  host: string;
  certificates: DomainCertificate[];
}

export interface LockHost {
  host: string;
  locked: boolean;
  holder: LockHolder | null;
  /** One of the holder's steps runs on the server right now. */
  stepRunning: boolean;
  /** Why the lock is provably stale (the next deploy clears it), or null. */
  stale: string | null;
}

export type AuditRow = { time: string; who: string; command: string; release: string | null; result: string; step: string } | { raw: string };

export interface AuditHost {
  host: string;
  entries: AuditRow[];
}

/** What every result may carry for the entry point: the process's exit code (0 when absent). */
interface Exit {
  exitCode?: number;
}

export interface ReleasesResult extends Exit {
  kind: 'releases';
  env: string;
  hosts: ReleasesHost[];
}

export interface CertsResult extends Exit {
  kind: 'certs';
  env: string;
  /** `custom` for `ssl: { cert, key }`; with `none` there is nothing to list. */
  ssl: SslMode;
  hosts: CertsHost[];
}

export interface LockResult extends Exit {
  kind: 'lock';
  action: 'status' | 'release';
  env: string;
  hosts: LockHost[];
}

export interface AuditResult extends Exit {
  kind: 'audit';
  env: string;
  hosts: AuditHost[];
}

export interface DeployResult extends Exit {
  kind: 'deploy';
  mode: 'deploy' | 'setup';
  dryRun: boolean;
  env: string;
  /** The whole command, local hooks included. */
  ms: number;
  hosts: HostRunResult[];
}

/** One host as `stack status` sees it. */
export interface StatusHost {
  host: string;
  /** The live release, its age in seconds and its git commit; null before the first deploy. */
  release: { id: string; ageSeconds: number | null; commit: string | null } | null;
  /** The web's units, every process instance the inventory wants, nginx, PostgreSQL and the backup timer. */
  units: UnitState[];
  /** Each scheduled job: its timer's last and next run, the last run's result. */
  jobs: JobVerdict[];
  /** Null on a host without nginx (no web role). */
  health: { path: string; code: string; ms: number; ok: boolean } | null;
  /** Days left per domain (TLS only). */
  certificates: { domain: string; days: number | null; status: string }[];
  disk: { dir: string; freeMiB: number; usedPercent: number }[];
  lock: LockHolder | null;
  lastDeploy: AuditRow | null;
  maintenance: boolean;
  /** Changes a deploy would make now (0: the server is as the inventory and the code say). */
  drift: number;
  /** With `database:`: the newest backup, the last failure, the timer's next run. */
  database: BackupVerdict | null;
  /** Every unit active, no job's last run failed, health as expected, every certificate ok, backups trusted. */
  ok: boolean;
  /** SSH round trips and milliseconds this host took. */
  roundTrips: number;
  ms: number;
}

export interface StatusResult extends Exit {
  kind: 'status';
  env: string;
  hosts: StatusHost[];
}

/** `stack db backups`: each host's backups, newest first. */
export interface BackupsHost {
  host: string;
  dir: string;
  backups: BackupEntry[];
  verdict: BackupVerdict;
  /** The timer's last run and its result. */
  timer: BackupFacts['timer'];
}

export interface BackupsResult extends Exit {
  kind: 'backups';
  env: string;
  hosts: BackupsHost[];
}

export type CommandResult = ReleasesResult | CertsResult | LockResult | AuditResult | DeployResult | StatusResult | BackupsResult;

/** One host's part of a result, with what its text needs from the whole. */
export type HostPart =
  | ({ kind: 'releases' } & ReleasesHost)
  | ({ kind: 'certs'; ssl: CertsResult['ssl'] } & CertsHost)
  | ({ kind: 'lock'; action: LockResult['action'] } & LockHost)
  | ({ kind: 'audit' } & AuditHost)
  | { kind: 'deploy'; env: string; dryRun: boolean; result: HostRunResult }
  | ({ kind: 'status' } & StatusHost)
  | ({ kind: 'backups' } & BackupsHost);

/** The name a person types, as the JSON document and the usage error call it. */
export function commandName(r: CommandResult): string {
  switch (r.kind) {
    case 'lock':
      return `lock ${r.action}`;
    case 'deploy':
      return r.mode;
    case 'backups':
      return 'db backups';
    default:
      return r.kind;
  }
}
