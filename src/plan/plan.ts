/**
 * The plan: what must change on one host to reach the desired state, computed from the desired
 * state and the gathered facts alone (pure). `--dry-run` prints it; `apply` carries it out.
 */
import { nextReleaseId } from '../release/id.js';
import { fileSetChanges } from '../release/source.js';
import type { VenvVersion } from '../release/venv.js';
import { databaseChanges, type DatabasePlan } from './database.js';
import { type PartsPlan, partsChanges, planParts } from './parts.js';
import { planLayoutUpgrade, type LayoutUpgrade } from './upgrade.js';
import { createHash } from 'node:crypto';
import { createTwoFilesPatch } from 'diff';
import type { CertificateRequest } from '../certs/letsencrypt.js';
import type { GatheredFacts } from '../facts/host.js';
import { displayContent, type FileContent } from '../secrets/secret.js';
import type { DesiredDir, DesiredFile, DesiredLink, DesiredState, Handler } from '../state/desired.js';

export interface FileChange {
  file: DesiredFile;
  action: 'create' | 'update' | 'attributes';
  /** Unified diff of the printable (redacted) contents; empty for a new file or attributes only. */
  diff: string;
  /** The contents differ only in secret values, which the diff cannot show. */
  secretOnly: boolean;
  /** mode/owner/group before, when they change */
  attributesBefore?: string;
}

export interface CodeVersion {
  id: string;
  sourceHash: string;
  /** The requirements file, when pip has anything to install. */
  requirements: string | null;
  venv: VenvVersion;
  /** What ships (files and links, relative to the source); recorded with the release. */
  fileList?: readonly string[];
}

/**
 * Whether the release links to a sealed virtualenv already on the server (same digest, same
 * Python) or has one built; `key` is its name there, null when Python is not installed yet.
 */
export interface VenvPlan {
  key: string | null;
  reuse: boolean;
  /** The code is the live release's; only its virtualenv would change (another index, another Python). */
  sameCode?: boolean;
}

export interface ReleasePlan extends CodeVersion {
  /** Absent for a configuration-only copy, which keeps the live release's link. */
  venvPlan?: VenvPlan;
  /** Same code as this live release (hard-linked), new configuration; absent when code ships. */
  copyFrom?: string;
  /** Files shipped now that the live release did not have, and the other way round. */
  shipped?: { added: string[]; removed: string[] };
}

export interface SelfSignedPlan {
  cert: string;
  key: string;
  domains: string[];
}

export interface Plan {
  host: string;
  packages: string[];
  users: { name: string; home: string }[];
  memberships: { user: string; group: string }[];
  /** Memberships to take away (a user that must not be in a group). */
  leaves: { user: string; group: string }[];
  dirs: (DesiredDir & { action: 'create' | 'attributes' })[];
  selfSigned: SelfSignedPlan | null;
  certificate: CertificateRequest | null;
  files: FileChange[];
  links: DesiredLink[];
  /** Every desired link, changed or not: recorded with the release. */
  allLinks: DesiredLink[];
  removes: string[];
  /** A new release: whenever the code or anything else changes, so rollback restores both. */
  release: ReleasePlan | null;
  enable: string[];
  /** Services that must be running but are not, and no handler will restart. */
  start: string[];
  /** In run order, each at most once. */
  handlers: Handler[];
  /** A server still in the layout of before releases were sealed: converted first. */
  upgrade: LayoutUpgrade | null;
  /** The app's PostgreSQL role, database and pg_hba lines, when any of them must change. */
  database: DatabasePlan | null;
  /** The app's processes and scheduled jobs (deploy only: setup starts no code). */
  parts: PartsPlan | null;
}

export interface PlanInput {
  desired: DesiredState;
  facts: GatheredFacts;
  /** The code to deploy; absent when the code is not part of this command (setup). */
  code?: CodeVersion | null;
  selfSigned?: SelfSignedPlan | null;
  certificate?: CertificateRequest | null;
  /**
   * `setup` provisions the server (packages, users, directories, certificates, the app's unit,
   * enabled but not started) and leaves the site, the code and every restart to `deploy`.
   */
  scope?: 'deploy' | 'setup';
  /** Planned from the database's facts (src/plan/database.ts). */
  database?: DatabasePlan | null;
}

export type { CertificateRequest, VenvVersion };

export function sha256(content: FileContent): string {
  const text = typeof content === 'string' ? content : content.reveal();
  return createHash('sha256').update(text).digest('hex');
}

export function planDeploy({ desired, facts, code = null, selfSigned = null, certificate = null, scope = 'deploy', database = null }: PlanInput): Plan {
  const setup = scope === 'setup';
  const notified = new Set<string>();
  const notify = (names: string[]) => {
    for (const n of names) notified.add(n);
  };

  const installed = facts.packages;
  const packages = desired.packages.filter((p) => !installed.has(p));

  const users = desired.users.filter((u) => !facts.users.get(u.name)).map((u) => ({ name: u.name, home: u.home }));
  const groupsOf = (user: string) => facts.users.get(user) ?? [];
  const memberships = desired.memberships.filter((m) => !m.absent && !groupsOf(m.user).includes(m.group)).map(({ user, group }) => ({ user, group }));
  const leaves = desired.memberships.filter((m) => m.absent && groupsOf(m.user).includes(m.group)).map(({ user, group }) => ({ user, group }));
  // nginx's workers take their groups afresh when a reload starts them.
  if ([...memberships, ...leaves].some((m) => m.user === desired.layout.web_user)) notified.add('reload-nginx');

  const dirs: Plan['dirs'] = [];
  for (const d of desired.dirs) {
    const now = facts.dirs.get(d.path);
    if (!now) dirs.push({ ...d, action: 'create' });
    else if (now.mode !== d.mode || now.owner !== d.owner || now.group !== d.group) dirs.push({ ...d, action: 'attributes' });
  }

  const files: FileChange[] = [];
  for (const f of desired.files) {
    // Setup writes the units, and all of the database's and Redis's files: the backups run from
    // the first night, and Redis runs before the first deploy's hooks. And the firewall's rules:
    // the gateway's socket, which setup (re)starts, and PostgreSQL, which listens from setup on,
    // run only behind them.
    if (setup && f.validate !== 'systemd' && f.role !== 'database' && f.role !== 'redis' && f.role !== 'firewall') continue;
    const now = facts.files.get(f.path);
    const change = fileChange(f, now);
    if (change) {
      files.push(change);
      notify(f.notify);
    }
  }

  const links = setup ? [] : desired.links.filter((l) => facts.links.get(l.path) !== l.target);
  for (const l of links) notify(l.notify);
  // Installing a package can create what must go (nginx brings its default site), and the
  // facts were gathered before it: so removals are planned whenever packages are installed.
  const removes = desired.removes.filter((r) => facts.present.has(r.path) || packages.length > 0);
  for (const r of removes) notify(r.notify);

  let release: ReleasePlan | null = null;
  if (code && !setup) {
    code = { ...code, id: nextReleaseId(code.id, facts.releases) };
    const live = facts.currentRelease && facts.manifest ? facts.manifest : null;
    // The same code needs another virtualenv when the package index or the server's Python
    // changed: it ships again, and links to that one.
    const venvStale = facts.venv?.key != null && facts.venv.live !== null && facts.venv.live !== facts.venv.key;
    if (!live || live.source_hash !== code.sourceHash || venvStale) {
      // The release script decides for itself on the server; this says what it will find.
      const venvPlan: VenvPlan = {
        key: facts.venv?.key ?? null,
        reuse: facts.venv?.ready ?? false,
        ...(live?.source_hash === code.sourceHash ? { sameCode: true } : {}),
      };
      release = { ...code, venvPlan, ...(code.fileList && facts.shipped ? { shipped: fileSetChanges(facts.shipped, code.fileList) } : {}) };
      notified.add('restart-app');
    } else if (files.length > 0 || links.length > 0 || removes.length > 0) {
      release = { ...code, requirements: null, copyFrom: facts.currentRelease! };
    }
  }
  if (setup) notified.delete('restart-app');
  if (selfSigned) notified.add('reload-nginx');
  // The certificate's files change under the site nginx may already serve (an extended or
  // replaced certificate): nginx reads them only when it reloads. Setup too.
  if (certificate) notified.add('reload-nginx');

  // A unit is enabled once its file is there (now, or written by this plan).
  const unitWritten = (s: string) =>
    desired.files.some((f) => f.path.endsWith(`/${s}`) && (facts.files.get(f.path)?.exists || files.some((c) => c.file === f)));
  const enable = desired.services.filter((s) => facts.services.get(s)?.enabled !== 'enabled' && (s === 'nginx' || unitWritten(s)));
  const upgrade = planLayoutUpgrade(desired, facts);
  if (upgrade?.socketGroup) notified.delete('restart-socket');
  const handlers = desired.handlers.filter((h) => notified.has(h.name));
  const restarted = new Set(handlers.map((h) => h.service));
  // Setup starts nginx and timers (the database's backups run from the first night), never the app.
  // The app's target is enabled, never started: its processes and timers start after the health
  // check (src/plan/parts.ts), not before it.
  const start = desired.services.filter(
    (s) =>
      facts.services.get(s)?.active !== 'active' &&
      !restarted.has(s) &&
      s !== desired.layout.target &&
      (!setup || s === 'nginx' || s.endsWith('.timer') || s === desired.layout.redis_unit),
  );

  return {
    host: desired.host.address,
    packages,
    users,
    memberships,
    leaves,
    dirs,
    selfSigned,
    certificate,
    files,
    links,
    allLinks: desired.links,
    removes: removes.map((r) => r.path),
    release,
    enable,
    start,
    handlers,
    upgrade,
    database,
    parts: setup ? null : planParts(desired, facts, release !== null),
  };
}

function fileChange(f: DesiredFile, now: GatheredFacts['files'] extends Map<string, infer R> ? R | undefined : never): FileChange | null {
  const printable = displayContent(f.content);
  if (!now?.exists) {
    return { file: f, action: 'create', diff: '', secretOnly: false };
  }
  const attributes = `${f.mode} ${f.owner}:${f.group}`;
  const before = `${now.mode} ${now.owner}:${now.group}`;
  const contentChanged = now.sha256 !== sha256(f.content);
  if (!contentChanged && attributes === before) return null;
  if (!contentChanged) return { file: f, action: 'attributes', diff: '', secretOnly: false, attributesBefore: before };
  // A private key's remote content is never fetched: only "it differs" can be said.
  const old = f.secret ? printable : (now.content ?? '');
  const diff = old === printable ? '' : createTwoFilesPatch(f.path, f.path, old, printable, '', '', { context: 3 });
  return {
    file: f,
    action: 'update',
    diff,
    secretOnly: old === printable,
    attributesBefore: attributes === before ? undefined : before,
  };
}

export function changeCount(plan: Plan): number {
  return (
    plan.packages.length +
    plan.users.length +
    plan.memberships.length +
    plan.leaves.length +
    plan.dirs.length +
    (plan.selfSigned ? 1 : 0) +
    (plan.certificate ? 1 : 0) +
    plan.files.length +
    plan.links.length +
    plan.removes.length +
    // A configuration-only release is counted through the files that made it.
    (plan.release && !plan.release.copyFrom ? 1 : 0) +
    plan.enable.length +
    plan.start.length +
    databaseChanges(plan.database) +
    partsChanges(plan.parts)
  );
}
