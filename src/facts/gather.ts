/**
 * Facts about a host, gathered in ONE round trip: a script (built here, pure) that prints one
 * tab-separated record per fact, and a parser of its output (pure). The script asks for a
 * file's content only when its hash differs from the desired one, so a dry run can show diffs
 * without a second trip. Paths are validated upstream and contain no tabs, spaces or quotes.
 */
import { shQuote } from '../remote/quote.js';
import type { DesiredState } from '../state/desired.js';
import { parseNginxVersion } from '../views/facts.js';

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
}

/** The deploy lock as the facts script found (or took) it. */
export type LockState =
  | { state: 'acquired' }
  | { state: 'free' }
  /** age: seconds since the holder last showed life (a script of it started or ended). */
  | { state: 'held'; holder: LockHolder | null; scriptRunning: boolean; age: number | null }
  /** The lock could not be taken at all (a full disk): no deploy holds it. */
  | { state: 'error'; message: string };

export interface LockHolder {
  token: string;
  who: string;
  client: string;
  pid: number;
  since: string;
  command: string;
}

export interface LockRequest {
  /** acquire: take it if free (deploy, setup, rollback); report: only say who holds it (dry run). */
  mode: 'acquire' | 'report';
  dir: string;
  token: string;
  holder: Omit<LockHolder, 'token'>;
}

export function parseLockInfo(text: string): LockHolder | null {
  const fields = new Map(text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as [string, string]));
  if (!fields.get('token')) return null;
  return {
    token: fields.get('token')!,
    who: fields.get('who') ?? '?',
    client: fields.get('client') ?? '?',
    pid: Number(fields.get('pid') ?? 0),
    since: fields.get('since') ?? '?',
    command: fields.get('command') ?? '?',
  };
}

/** The lock part of a script: mkdir is atomic, so exactly one deploy gets it. */
export function lockLines(lock: LockRequest): string[] {
  const { dir, token, holder } = lock;
  const q = shQuote;
  const parent = dir.slice(0, dir.lastIndexOf('/'));
  const info = [
    `token=${token}`,
    `who=${holder.who}`,
    `client=${holder.client}`,
    `pid=${holder.pid}`,
    `since=${holder.since}`,
    `command=${holder.command}`,
  ].join('\n');
  // Whether one of that deploy's scripts is still running on the server (each records its pid).
  const running = `if [ -f ${q(`${dir}/script.pid`)} ] && kill -0 "$(cat ${q(`${dir}/script.pid`)})" 2>/dev/null; then echo 1; else echo 0; fi`;
  // When the holder last showed life: its last script's start or end, else the taking itself.
  const age = `$(( $(date +%s) - $(stat -c %Y ${q(`${dir}/active`)} 2>/dev/null || stat -c %Y ${q(`${dir}/info`)} 2>/dev/null || stat -c %Y ${q(dir)}) ))`;
  const report = `printf 'lock\theld\t%s\t%s\t%s\n' "$(base64 -w0 ${q(`${dir}/info`)} 2>/dev/null)" "$(${running})" "${age}"`;
  if (lock.mode === 'report') return [`if [ -d ${q(dir)} ]; then ${report}; else printf 'lock\tfree\n'; fi`];
  const free = `$(( $(df -Pk ${q(parent)} 2>/dev/null | awk 'NR == 2 { print $4 }') / 1024 )) MiB free there`;
  return [
    `mkdir -p ${q(parent)} 2>/dev/null`,
    // A lock is never left half made: one that cannot be written whole is taken back, and a
    // mkdir that failed for another reason than "it exists" is an error, not another deploy.
    `if lock_err=$(mkdir ${q(dir)} 2>&1); then`,
    `  if printf '%s\n' ${q(info)} > ${q(`${dir}/info`)} && printf '%s' ${q(token)} > ${q(`${dir}/token`)}; then printf 'lock\tacquired\n'`,
    `  else rm -rf ${q(dir)}; printf 'lock\terror\t%s\n' "could not write the deploy lock in ${parent} (No space left on device?), ${free}"; fi`,
    `elif [ -d ${q(dir)} ]; then ${report}`,
    `else printf 'lock\terror\t%s\n' "$(printf '%s' "$lock_err" | tr '\t\n' '  '), ${free}"; fi`,
  ];
}

export interface ReleaseManifest {
  id: string;
  source_hash: string;
  created: string;
  by: string;
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
}

/** The facts script for a host's desired state. */
export function factsScript(desired: DesiredState, request: FactsRequest): string {
  const q = shQuote;
  const lines = [
    'set -u',
    "printf 'nginx\\t%s\\n' \"$(nginx -v 2>&1 | sed -n 's|^nginx version: nginx/||p')\"",
    'printf \'cpus\\t%s\\n\' "$(nproc 2>/dev/null)"',
    'printf \'os\\t%s\\n\' "$(. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID")"',
    `f() { if [ -f "$1" ]; then s=$(sha256sum "$1" | cut -c1-64); printf 'file\\t%s\\t%s\\t%s\\n' "$1" "$s" "$(stat -c '%a\t%U\t%G' "$1")"; if [ "$s" != "$2" ] && [ "\${3:-}" != secret ]; then printf 'content\\t%s\\t' "$1"; base64 -w0 "$1"; printf '\\n'; fi; else printf 'file\\t%s\\t-\\n' "$1"; fi; }`,
    `l() { printf 'link\\t%s\\t%s\\n' "$1" "$(readlink "$1" 2>/dev/null || echo -)"; }`,
    `d() { if [ -d "$1" ]; then printf 'dir\\t%s\\t%s\\n' "$1" "$(stat -c '%a\t%U\t%G' "$1")"; else printf 'dir\\t%s\\t-\\n' "$1"; fi; }`,
    `c() { if [ -f "$1" ]; then printf 'public\\t%s\\t' "$1"; base64 -w0 "$1"; printf '\\n'; fi; }`,
    `x() { if [ -e "$1" ] || [ -L "$1" ]; then printf 'present\\t%s\\n' "$1"; fi; }`,
    `u() { if getent passwd "$1" >/dev/null; then printf 'user\\t%s\\t%s\\n' "$1" "$(id -nG "$1" | tr ' ' ',')"; else printf 'user\\t%s\\t-\\n' "$1"; fi; }`,
    `svc() { printf 'service\\t%s\\t%s\\t%s\\n' "$1" "$(systemctl is-enabled "$1" 2>/dev/null)" "$(systemctl is-active "$1" 2>/dev/null)"; }`,
  ];
  for (const [path, sha] of request.files) lines.push(`f ${q(path)} ${sha}${request.secret?.has(path) ? ' secret' : ''}`);
  for (const path of request.publicFiles ?? []) lines.push(`c ${q(path)}`);
  for (const l of desired.links) lines.push(`l ${q(l.path)}`);
  for (const p of [...desired.removes.map((r) => r.path), ...request.probes]) lines.push(`x ${q(p)}`);
  for (const d of desired.dirs) lines.push(`d ${q(d.path)}`);
  const users = new Set([...desired.users.map((u) => u.name), ...desired.memberships.map((m) => m.user)]);
  for (const u of users) lines.push(`u ${q(u)}`);
  for (const s of desired.services) lines.push(`svc ${q(s)}`);
  if (desired.packages.length > 0) {
    lines.push(`dpkg-query -W -f='pkg\\t\${Package}\\t\${db:Status-Abbrev}\\n' ${desired.packages.map(q).join(' ')} 2>/dev/null || true`);
  }
  const { current, releases } = desired.layout;
  lines.push(
    `printf 'current\\t%s\\n' "$(readlink ${q(current)} 2>/dev/null || echo -)"`,
    `if [ -f ${q(current)}/.stack-release.json ]; then printf 'manifest\\t'; base64 -w0 ${q(current)}/.stack-release.json; printf '\\n'; fi`,
    `printf 'releases\\t%s\\n' "$(ls -1 ${q(releases)} 2>/dev/null | tr '\\n' ' ')"`,
    `p=${q(releases)}; while [ ! -d "$p" ] && [ -n "$p" ]; do p=\${p%/*}; done; printf 'free\\t%s\\n' "$(df -Pk "\${p:-/}" 2>/dev/null | awk 'NR == 2 { print $4 }')"`,
    ...(request.shippedHash
      ? [
          `if [ -f ${q(current)}/.stack-files ] && [ "$(sha256sum < ${q(current)}/.stack-files | cut -c1-64)" != ${request.shippedHash} ]; then printf 'shipped\\t'; base64 -w0 ${q(current)}/.stack-files; printf '\\n'; fi`,
        ]
      : []),
    `if command -v ufw >/dev/null; then printf 'ufw\\t%s\\n' "$(ufw status 2>/dev/null | head -n1)"; fi`,
    'exit 0',
  );
  return `${lines.join('\n')}\n`;
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
    lock: { state: 'free' },
    publicFiles: new Map(),
    freeKib: null,
    shipped: null,
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
      case 'free':
        facts.freeKib = f[0] && /^\d+$/.test(f[0]) ? Number(f[0]) : null;
        break;
      case 'ufw':
        facts.ufw = f[0] ?? null;
        break;
      case 'lock':
        facts.lock =
          f[0] === 'acquired'
            ? { state: 'acquired' }
            : f[0] === 'held'
              ? {
                  state: 'held',
                  holder: parseLockInfo(Buffer.from(f[1] ?? '', 'base64').toString('utf8')),
                  scriptRunning: f[2] === '1',
                  age: f[3] && /^-?\d+$/.test(f[3]) ? Number(f[3]) : null,
                }
              : f[0] === 'error'
                ? { state: 'error', message: f[1] ?? 'the deploy lock could not be taken' }
                : { state: 'free' };
        break;
    }
  }
  return facts;
}
