/**
 * Facts about a host, gathered in ONE round trip: one call into src/remote/sh/facts.sh per
 * question (built here, pure), each printing tab-separated records, and a parser of them (pure).
 * A file's content comes back only when its hash differs from the desired one, so a dry run can
 * show diffs without a second trip. Paths are validated upstream and contain no tabs.
 */
import { shCommand } from '../remote/quote.js';
import type { DesiredState } from '../state/desired.js';
import { parseNginxVersion } from '../views/facts.js';
import { type DatabaseFacts, databaseFactLine, parseDatabase } from './database.js';
import type { Fact } from './fact.js';
import { parseLock, type LockState } from './lock.js';

export interface RemoteFile {
  exists: boolean;
  sha256?: string;
  mode?: string;
  owner?: string;
  group?: string;
  /** Present only when the hash differs from the desired one; secrets already redacted. */
  content?: string;
}

export interface GatheredFacts {
  nginxVersion: [number, number, number] | null;
  cpus: number | null;
  os: string;
  files: Map<string, RemoteFile>;
  links: Map<string, string | null>;
  present: Set<string>;
  dirs: Map<string, { mode: string; owner: string; group: string } | null>;
  packages: Set<string>;
  /** user -> its groups; null when the user does not exist */
  users: Map<string, string[] | null>;
  services: Map<string, { enabled: string; active: string }>;
  currentRelease: string | null;
  manifest: ReleaseManifest | null;
  releases: string[];
  ufw: string | null;
  lock: LockState;
  /** path -> content, for the public files asked for (certificates, certbot settings) that exist. */
  publicFiles: Map<string, string>;
  /** KiB free for root where releases go (the nearest existing folder of /srv/NAME). */
  freeKib: number | null;
  /** The live release's list of shipped files, when it differs from the one asked about. */
  shipped: string[] | null;
  /**
   * The virtualenv a new release would run with (asked with FactsRequest.venvDigest): its name
   * on this server's Python and whether a sealed one is there to reuse, and the one the live
   * release links to. key is null when python3 does not run yet, live when the live release has
   * none linked; the whole is null when not asked.
   */
  venv: { key: string | null; ready: boolean; live: string | null } | null;
  /** PostgreSQL, the app's role, database and pg_hba lines (asked with FactsRequest.database). */
  database: DatabaseFacts | null;
  /** The unit files of the app's processes and jobs, and the instances and timers systemd knows. */
  parts: { files: string[]; units: Map<string, { enabled: string; active: string }> };
}

export interface ReleaseManifest {
  id: string;
  source_hash: string;
  created: string;
  by: string;
  /** The server hooks it ran on its way live (absent in releases made before stack recorded them). */
  hooks?: string[];
  /** The database backup taken right before those hooks. */
  db_backup?: string;
}

export interface FactsRequest {
  /** path -> the sha256 we want there; the content comes back only when it differs. */
  files: Map<string, string>;
  /** Extra files whose existence matters (certificates). */
  probes: string[];
  /** Files whose content never comes back, even when it differs (private keys). */
  secret?: ReadonlySet<string>;
  /**
   * Public files whose content comes back whole: a certificate (what it covers, until when) and
   * certbot's renewal settings (which CA it renews from). Never a key.
   */
  publicFiles?: readonly string[];
  /** sha256 of the file list about to ship: the live one comes back only when it differs. */
  shippedHash?: string;
  /** The digest of the virtualenv the code about to ship needs (src/release/venv.ts). */
  venvDigest?: string;
  /** The app's role and database, when the inventory has `database:`. */
  database?: { role: string; name: string };
}

/** The facts of a host for its desired state, in one script (after the lock's line, when there is one). */
export function hostFact(desired: DesiredState, request: FactsRequest, redact?: (path: string, content: string) => string): Fact<GatheredFacts> {
  const lines = ['fact_system'];
  for (const [path, sha] of request.files) lines.push(shCommand('fact_file', path, sha, ...(request.secret?.has(path) ? ['secret'] : [])));
  for (const path of request.publicFiles ?? []) lines.push(shCommand('fact_public', path));
  for (const l of desired.links) lines.push(shCommand('fact_link', l.path));
  for (const p of [...desired.removes.map((r) => r.path), ...request.probes]) lines.push(shCommand('fact_present', p));
  for (const d of desired.dirs) lines.push(shCommand('fact_dir', d.path));
  const users = new Set([...desired.users.map((u) => u.name), ...desired.memberships.map((m) => m.user)]);
  for (const u of users) lines.push(shCommand('fact_user', u));
  for (const s of desired.services) lines.push(shCommand('fact_service', s));
  if (desired.packages.length > 0) lines.push(shCommand('fact_packages', ...desired.packages));
  const { current, releases, venvs } = desired.layout;
  if (request.venvDigest) lines.push(shCommand('fact_venv', venvs, request.venvDigest, current));
  if (request.database) lines.push(databaseFactLine(request.database.role, request.database.name));
  lines.push(
    shCommand('fact_live', current, releases, ...(request.shippedHash ? [request.shippedHash] : [])),
    shCommand('fact_free', releases),
    'fact_firewall',
    shCommand('fact_parts', desired.layout.app),
  );
  return { what: 'gather facts', lines, parse: (output) => parseFacts(output, redact) };
}

/**
 * @param redact turns a file's remote content into its printable form (the env file's secret
 *   values are replaced before the text goes anywhere else).
 */
export function parseFacts(output: string, redact: (path: string, content: string) => string = (_, c) => c): GatheredFacts {
  const facts: GatheredFacts = {
    nginxVersion: null,
    cpus: null,
    os: '',
    files: new Map(),
    links: new Map(),
    present: new Set(),
    dirs: new Map(),
    packages: new Set(),
    users: new Map(),
    services: new Map(),
    currentRelease: null,
    manifest: null,
    releases: [],
    ufw: null,
    lock: parseLock(output),
    publicFiles: new Map(),
    freeKib: null,
    shipped: null,
    venv: null,
    database: parseDatabase(output),
    parts: { files: [], units: new Map() },
  };
  for (const line of output.split('\n')) {
    const [kind, ...f] = line.split('\t');
    switch (kind) {
      case 'nginx':
        facts.nginxVersion = f[0] ? parseNginxVersion(f[0]) : null;
        break;
      case 'cpus':
        facts.cpus = f[0] ? Number(f[0]) : null;
        break;
      case 'os':
        facts.os = f[0] ?? '';
        break;
      case 'file':
        facts.files.set(f[0]!, f[1] === '-' ? { exists: false } : { exists: true, sha256: f[1], mode: f[2]?.padStart(4, '0'), owner: f[3], group: f[4] });
        break;
      case 'content': {
        const file = facts.files.get(f[0]!);
        if (file) file.content = redact(f[0]!, Buffer.from(f[1] ?? '', 'base64').toString('utf8'));
        break;
      }
      case 'link':
        facts.links.set(f[0]!, f[1] === '-' ? null : f[1]!);
        break;
      case 'public':
        facts.publicFiles.set(f[0]!, Buffer.from(f[1] ?? '', 'base64').toString('utf8'));
        break;
      case 'present':
        facts.present.add(f[0]!);
        break;
      case 'dir':
        facts.dirs.set(f[0]!, f[1] === '-' ? null : { mode: f[1]!.padStart(4, '0'), owner: f[2]!, group: f[3]! });
        break;
      case 'pkg':
        // "ii " = installed; anything else (rc, un, half-installed) needs an install.
        if (f[1]?.startsWith('ii')) facts.packages.add(f[0]!);
        break;
      case 'user':
        facts.users.set(f[0]!, f[1] === '-' ? null : (f[1] ?? '').split(',').filter(Boolean));
        break;
      case 'service':
        facts.services.set(f[0]!, { enabled: f[1] ?? '', active: f[2] ?? '' });
        break;
      case 'current':
        facts.currentRelease = f[0] && f[0] !== '-' ? f[0].split('/').pop()! : null;
        break;
      case 'manifest':
        try {
          facts.manifest = JSON.parse(Buffer.from(f[0] ?? '', 'base64').toString('utf8')) as ReleaseManifest;
        } catch {
          facts.manifest = null;
        }
        break;
      case 'releases':
        facts.releases = (f[0] ?? '').split(' ').filter(Boolean).sort();
        break;
      case 'shipped':
        facts.shipped = Buffer.from(f[0] ?? '', 'base64')
          .toString('utf8')
          .split('\n')
          .filter(Boolean);
        break;
      case 'venv': {
        const name = (s: string | undefined) => (s && /^[0-9a-f]{64}$/.test(s) ? s : null);
        const key = name(f[0]);
        facts.venv = { key, ready: key !== null && f[1] === 'ready', live: name(f[2]) };
        break;
      }
      case 'free':
        facts.freeKib = f[0] && /^\d+$/.test(f[0]) ? Number(f[0]) : null;
        break;
      case 'ufw':
        facts.ufw = f[0] ?? null;
        break;
      case 'partfile':
        if (f[0]) facts.parts.files.push(f[0]);
        break;
      case 'partunit':
        if (f[0]) facts.parts.units.set(f[0], { enabled: f[1] ?? '', active: f[2] ?? '' });
        break;
    }
  }
  return facts;
}
