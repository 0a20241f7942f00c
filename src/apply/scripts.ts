/**
 * The shell scripts that carry out a plan on the server, built as values (pure). Each runs as
 * root in ONE round trip, with the script on stdin (never on the command line, where other users
 * could read it). Lines starting with `@@step` report progress; a failing step prints
 * `@@fail STEP` and exits 1. Secret values are revealed here and nowhere else: inside base64
 * heredocs of the activation script.
 *
 * Every script is a single function called on its last line: a script cut short in transit
 * defines nothing and runs nothing. Once it runs, it ignores SIGHUP and SIGPIPE, so a dropped
 * connection cannot stop it half way: it finishes, or rolls back, on its own.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { shCommand, shQuote as q } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import type { Plan, ReleasePlan } from '../plan/plan.js';

/**
 * The fixed shell every root script starts with: the library (step, fail, reload_nginx,
 * check_health, the undo log) and the release functions (receive, seal, convert). Real files,
 * shellchecked and run under dash by the unit tests; TypeScript adds only per-plan data lines.
 */
const REMOTE_LIBRARY = ['lib.sh', 'release.sh']
  .map((f) => readFileSync(fileURLToPath(new URL(`../../src/remote/sh/${f}`, import.meta.url)), 'utf8'))
  .join('\n');

/**
 * Journal lines shown when the app fails to start: a Python traceback from the worker plus the
 * gateway's own traceback about it easily take 30, and the worker's comes first.
 */
const JOURNAL_LINES = 40;

/** Seconds without a byte of the upload before the server gives up on a silent client. */
export const UPLOAD_IDLE_SECONDS = 30;
/** Bounds on the build steps that have no bound of their own. */
const VENV_SECONDS = 600;
const PIP_SECONDS = 1800;

/** Who runs what, for the lock and the audit log. */
export interface RunContext {
  layout: Layout;
  /** Our deploy lock, taken by the facts script; scripts check it is still ours. */
  lock: { dir: string; token: string } | null;
  audit: { file: string; who: string; command: string } | null;
}

export function lockDir(app: string): string {
  return `/var/lib/stack/${app}.lock`;
}

export function auditFile(app: string): string {
  return `/var/log/stack/${app}.log`;
}

/**
 * Wraps a script body: one function, run only if the whole text arrived. Temporary files live
 * in a private folder from mktemp under /run (memory, root's), removed on every way out.
 * `releaseLock`: true releases the deploy lock when the script ends; 'on-failure' only when it
 * fails (a step whose client may be gone, like an upload cut off: nobody else would release it).
 */
export function wrap(ctx: RunContext, body: string[], options: { releaseLock: boolean | 'on-failure'; release?: string }): string {
  const lines = [
    'stack_main() {',
    'set -u',
    'umask 077',
    'export DEBIAN_FRONTEND=noninteractive LC_ALL=C',
    REMOTE_LIBRARY,
    "trap '' HUP PIPE",
    `TMPD=$(mktemp -d -p /run stack.XXXXXXXX) || { echo 'cannot make a temporary folder in /run' >&2; exit 1; }`,
  ];
  if (ctx.audit) {
    const { file, who, command } = ctx.audit;
    lines.push(
      `audit() { mkdir -p ${q(file.slice(0, file.lastIndexOf('/')))} && printf '{"time":"%s","who":%s,"command":%s,"release":%s,"result":"%s","step":"%s"}\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" ${q(JSON.stringify(who))} ${q(JSON.stringify(command))} ${q(JSON.stringify(options.release ?? null))} "$1" "$(printf '%s' "\${2:-}" | tr -d '"\\\\')" >> ${q(file)}; chmod 0640 ${q(file)}; }`,
    );
  } else {
    lines.push('audit() { :; }');
  }
  const exit = ['on_exit() {', '  status=$?', '  rm -rf "$TMPD"'];
  if (ctx.lock) {
    const { dir, token } = ctx.lock;
    const ours = `[ "$(cat ${q(`${dir}/token`)} 2>/dev/null)" = ${q(token)} ]`;
    lines.push(`${ours} || { echo 'the deploy lock is no longer ours: another deploy took it over' >&2; fail 'deploy lock'; }`);
    // While this script runs, the lock is not stale, whatever happened to the client; `active`
    // dates the last sign of life, for a lock whose client vanished between two scripts.
    lines.push(`echo $$ > ${q(`${dir}/script.pid`)}; touch ${q(`${dir}/active`)}`);
    const release = `if ${ours}; then rm -rf ${q(dir)}; fi`;
    const keep = `rm -f ${q(`${dir}/script.pid`)}; if ${ours}; then touch ${q(`${dir}/active`)}; fi`;
    if (options.releaseLock === true) exit.push(`  ${release}`);
    else if (options.releaseLock === 'on-failure') exit.push(`  if [ "$status" -ne 0 ]; then ${release}; else ${keep}; fi`);
    else exit.push(`  ${keep}`);
  }
  exit.push('}', 'trap on_exit EXIT');
  lines.push(...exit, ...body, '}', 'stack_main');
  return `${lines.join('\n')}\n`;
}

/** How a step runs in a sandbox of its own (a transient systemd service, see `sandboxed`). */
export interface SandboxSpec {
  user: string;
  group: string;
  dir: string;
  /** What it may write; everything else is read-only. */
  writable: string[];
  /** Handed over by systemd (read as root): the user needs no access to the file. */
  envFile?: string;
  seconds: number;
  env?: Record<string, string>;
}

/**
 * A command line that runs `command` with sh as another user in a transient service: the whole
 * system read-only except `writable`, a private /tmp, no new privileges and no set-id files,
 * a time limit, and every process it started ends with it (nothing it leaves behind can touch
 * the release later). Its output and exit status come back through --pipe and --wait.
 */
export function sandboxed(s: SandboxSpec, command: string): string {
  const p = (property: string) => ['-p', property];
  return shCommand(
    'systemd-run',
    '--quiet',
    '--wait',
    '--pipe',
    '--collect',
    '--service-type=exec',
    ...p(`User=${s.user}`),
    ...p(`Group=${s.group}`),
    ...p(`WorkingDirectory=${s.dir}`),
    ...p('ProtectSystem=strict'),
    ...s.writable.flatMap((w) => p(`ReadWritePaths=-${w}`)),
    ...p('PrivateTmp=yes'),
    ...p('ProtectHome=yes'),
    ...p('NoNewPrivileges=yes'),
    ...p('RestrictSUIDSGID=yes'),
    ...p('UMask=0022'),
    ...p(`RuntimeMaxSec=${s.seconds}`),
    ...(s.envFile ? p(`EnvironmentFile=${s.envFile}`) : []),
    ...Object.entries({ PATH: `${s.dir}/.venv/bin:/usr/local/bin:/usr/bin:/bin`, ...s.env }).flatMap(([k, v]) => ['-E', `${k}=${v}`]),
    '--',
    'sh',
    '-c',
    command,
  );
}

export interface ProvisionOptions {
  layout: Layout;
  /** The static folder, relative to a release (kept readable for nginx when releases are sealed). */
  staticPath: string | null;
  /** setup: open the SSH port too when ufw is there. */
  sshPort?: number;
}

/**
 * Packages, users, group memberships, directories, a self-signed certificate, and the
 * conversion of a server in the layout of before releases were sealed. Lines only.
 */
export function provisionLines(plan: Plan, o: ProvisionOptions): string[] {
  const { sshPort } = o;
  const lines: string[] = [];
  if (plan.packages.length > 0) {
    const install = shCommand('apt-get', 'install', '-y', '-q', '--no-install-recommends', ...plan.packages);
    lines.push(
      `step ${q(`install packages: ${plan.packages.join(' ')}`)}`,
      // A fresh server may have no package lists yet: update once, then try again.
      `if ! ${install} >"$TMPD/apt" 2>&1; then apt-get update -q >>"$TMPD/apt" 2>&1; ${install} >>"$TMPD/apt" 2>&1 || { tail -n 25 "$TMPD/apt" >&2; no_space_note /var "$TMPD/apt"; fail 'install packages'; }; fi`,
    );
  }
  for (const u of plan.users) {
    lines.push(
      `step ${q(`create system user ${u.name}`)}`,
      `getent passwd ${q(u.name)} >/dev/null || useradd --system --user-group --home-dir ${q(u.home)} --no-create-home --shell /usr/sbin/nologin ${q(u.name)} || fail ${q(`create user ${u.name}`)}`,
    );
  }
  for (const m of plan.memberships) {
    lines.push(`step ${q(`add ${m.user} to group ${m.group}`)}`, `usermod -aG ${q(m.group)} ${q(m.user)} || fail ${q(`add ${m.user} to ${m.group}`)}`);
  }
  for (const m of plan.leaves) {
    lines.push(
      `step ${q(`remove ${m.user} from group ${m.group}`)}`,
      `gpasswd -d ${q(m.user)} ${q(m.group)} >/dev/null || fail ${q(`remove ${m.user} from ${m.group}`)}`,
    );
  }
  for (const d of plan.dirs) {
    lines.push(
      `step ${q(`directory ${d.path}`)}`,
      `install -d -m ${d.mode} -o ${q(d.owner)} -g ${q(d.group)} ${q(d.path)} || fail ${q(`directory ${d.path}`)}`,
    );
  }
  lines.push(...upgradeLines(plan, o));
  if (plan.selfSigned) {
    const { cert, key, domains } = plan.selfSigned;
    const san = domains.map((d) => (/^\d+\.\d+\.\d+\.\d+$/.test(d) ? `IP:${d}` : `DNS:${d}`)).join(',');
    const dir = cert.slice(0, cert.lastIndexOf('/'));
    lines.push(
      `step ${q('generate a self-signed certificate')}`,
      `install -d -m 0755 -o root -g root ${q(dir)}`,
      // Generated once and kept: a new one on every deploy would break clients that pinned it.
      `if [ ! -s ${q(cert)} ] || [ ! -s ${q(key)} ]; then openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 -subj ${q(`/CN=${domains[0]}`)} -addext ${q(`subjectAltName=${san}`)} -keyout ${q(key)}.new -out ${q(cert)}.new >/dev/null 2>&1 || fail 'generate certificate'; chmod 600 ${q(key)}.new; chmod 644 ${q(cert)}.new; mv -f ${q(key)}.new ${q(key)}; mv -f ${q(cert)}.new ${q(cert)}; fi`,
    );
  }
  if (sshPort !== undefined) {
    lines.push(
      'if command -v ufw >/dev/null; then',
      `  step ${q(`firewall: allow ${sshPort}, 80 and 443/tcp`)}`,
      `  for p in ${sshPort} 80 443; do ufw allow "$p/tcp" >/dev/null || fail 'ufw allow'; done`,
      'fi',
    );
  }
  return lines;
}

/**
 * Runs right after the directories have become root's: from then on the app's user cannot move
 * anything in /srv/NAME, so each release can be checked and sealed where it is, live one included
 * (reading code needs no more than the group's read access, which sealing keeps).
 */
function upgradeLines(plan: Plan, o: ProvisionOptions): string[] {
  const u = plan.upgrade;
  if (!u) return [];
  const { layout } = o;
  const lines: string[] = [];
  if (u.sealReleases) {
    lines.push(
      `step ${q('seal the releases already there (code owned by root, read-only to the app)')}`,
      `if [ -L ${q(layout.current)} ]; then chown -h root:root ${q(layout.current)}; fi`,
      `for r in ${q(layout.releases)}/*; do [ -e "$r" ] || [ -L "$r" ] || continue; convert_release "$r" ${q(layout.app)} ${o.staticPath ? q(o.staticPath) : "''"} || { no_space_note ${q(layout.releases)}; fail "seal $r"; }; done`,
    );
  }
  if (u.media)
    lines.push(
      `step ${q(`uploads in ${u.media} to group ${layout.web_user}`)}`,
      `convert_media ${q(u.media)} ${q(layout.app)} ${q(layout.web_user)} || fail 'convert the uploads'`,
    );
  if (u.socketGroup) {
    const { path, group } = u.socketGroup;
    lines.push(`step ${q(`socket ${path} to group ${group}`)}`, `if [ -S ${q(path)} ]; then chgrp ${q(group)} ${q(path)} || fail 'socket group'; fi`);
  }
  return lines;
}

export interface ManifestInfo {
  by: string;
  gitCommit: string | null;
  inventoryHash: string;
  /** When the deploy started (ISO 8601): passed in so that a plan always gives the same script. */
  created: string;
}

function manifestJson(release: ReleasePlan, info: ManifestInfo): string {
  return JSON.stringify({
    id: release.id,
    source_hash: release.sourceHash,
    git_commit: info.gitCommit,
    inventory_hash: info.inventoryHash,
    created: info.created,
    by: info.by,
    ...(release.copyFrom ? { code_from: release.copyFrom } : {}),
  });
}

function writeManifest(dir: string, app: string, json: string, onFailure = 'fail'): string {
  const file = `${dir}/.stack-release.json`;
  return `printf '%s\\n' ${q(json)} > ${q(`${file}.new`)} && chown ${q(`root:${app}`)} ${q(`${file}.new`)} && chmod 0640 ${q(`${file}.new`)} && mv -f ${q(`${file}.new`)} ${q(file)} || ${onFailure} 'write manifest'`;
}

/**
 * Receives the release (the tarball on stdin) into releases/<id> and builds it there: its own
 * virtualenv, the requirements, compiled Python files. Every build step runs as the build user
 * in a sandbox that can write this release and nothing else (`sandboxed`); the release is not
 * sealed yet, and nothing trusts it until activation has run the build hooks and sealed it.
 * The tarball is the stdin, so this script is the command line: it carries no secret. The last
 * line marks the release built, in root's lock folder, for activation to check.
 */
export function releaseScript(release: ReleasePlan, ctx: RunContext): string {
  const { layout } = ctx;
  const dir = `${layout.releases}/${release.id}`;
  const upload = `${layout.releases}/.${release.id}.upload`;
  const build = (seconds: number, command: string) => sandboxed({ user: layout.build_user, group: layout.build_user, dir, writable: [dir], seconds }, command);
  const failed = (what: string, lines = 25) => `{ tail -n ${lines} "$TMPD/build" >&2; no_space_note ${q(layout.releases)} "$TMPD/build"; fail ${q(what)}; }`;
  return wrap(
    ctx,
    [
      `step ${q(`receive release ${release.id}`)}`,
      `rm -rf ${q(dir)} ${q(upload)} && install -d -m 0750 -o ${q(layout.build_user)} -g ${q(layout.build_user)} ${q(dir)} || { no_space_note ${q(layout.releases)}; fail 'create release directory'; }`,
      `receive ${q(upload)} ${UPLOAD_IDLE_SECONDS}; r=$?`,
      `if [ "$r" -eq 2 ]; then rm -f ${q(upload)}; echo 'nothing arrived for ${UPLOAD_IDLE_SECONDS} s: the connection to the client was lost' >&2; fail 'receive release'; fi`,
      `if [ "$r" -ne 0 ]; then rm -f ${q(upload)}; no_space_note ${q(layout.releases)}; fail 'receive release'; fi`,
      `step ${q(`unpack release ${release.id}`)}`,
      // Root unpacks the developer's tarball into a folder nobody else could have touched yet;
      // modes are kept as they were locally, owners are not.
      `tar -xzpf ${q(upload)} -C ${q(dir)} --no-same-owner 2>"$TMPD/build"; r=$?; rm -f ${q(upload)}`,
      `[ "$r" -eq 0 ] || ${failed('unpack release')}`,
      `chown -R -h -P ${q(`${layout.build_user}:${layout.build_user}`)} ${q(dir)} || fail 'hand the release to the build user'`,
      `step ${q('create virtualenv')}`,
      `${build(VENV_SECONDS, 'python3 -m venv --system-site-packages .venv')} >>"$TMPD/build" 2>&1 </dev/null || ${failed('create virtualenv')}`,
      ...(release.requirements
        ? [
            `step ${q(`pip install -r ${release.requirements}`)}`,
            `${build(PIP_SECONDS, shCommand('.venv/bin/python', '-m', 'pip', 'install', '--no-input', '--no-cache-dir', '--disable-pip-version-check', '-r', release.requirements))} >>"$TMPD/build" 2>&1 </dev/null || ${failed('pip install', 40)}`,
          ]
        : []),
      `step ${q('compile Python files')}`,
      `${build(VENV_SECONDS, shCommand('.venv/bin/python', '-m', 'compileall', '-q', '-x', '/\\.venv/', '.'))} >>"$TMPD/build" 2>&1 </dev/null || true`,
      ...(ctx.lock ? [`printf '%s\\n' ${q(release.id)} > ${q(`${ctx.lock.dir}/built`)} || fail 'mark the release built'`] : []),
    ],
    { releaseLock: 'on-failure' },
  );
}

export interface HealthCheck {
  path: string;
  host: string;
  https: boolean;
  app: string;
  /** The status that means healthy. */
  status: number;
  /** Seconds one request may take. */
  timeout: number;
  /** Attempts, half a second apart, before the check fails. */
  retries: number;
}

/** Defines `health_ok` for this plan's health check (the library's check_health does the work). */
function healthFunction(h: HealthCheck): string {
  const url = h.https ? `https://${h.host}${h.path}` : `http://${h.host}${h.path}`;
  const port = h.https ? 443 : 80;
  return `health_ok() { check_health ${shCommand(url, `${h.host}:${port}:127.0.0.1`, String(h.status), String(h.timeout), String(h.retries), h.app)}; }`;
}

/** The health step; `onFailure` is `fail`, or the rollback of a script that has one. */
function healthLines(h: HealthCheck, onFailure: string, defineFunction = true): string[] {
  return [
    ...(defineFunction ? [healthFunction(h)] : []),
    `step ${q(`health check ${h.path}`)}`,
    `if health_ok; then printf '@@health %s\\n' "$code"; else printf '@@health %s\\n' "$code"; echo "GET ${h.path} through nginx answered $code, not ${h.status}; last lines of the app's journal:" >&2; journalctl -u ${q(h.app)} -n ${JOURNAL_LINES} --no-pager -o cat >&2; ${onFailure} 'health check'; fi`,
  ];
}

/** A script of only the health check (a deploy with nothing to change still checks the site). */
export function healthOnlyScript(health: HealthCheck, ctx: RunContext): string {
  return wrap({ ...ctx, audit: null }, healthLines(health, 'fail'), { releaseLock: true });
}

/** Starts the undo log (the functions are the library's: remember, undo, commit, abort). */
const UNDO_FUNCTIONS = ['undo_init'];

/**
 * Server hooks. `build` runs as the build user in the new release before it is sealed and may
 * write into it (collectstatic); `before_activate` and `after_activate` run as the app's user on
 * the sealed, read-only release (migrate). Each is bounded by `timeout` seconds.
 */
export interface Hooks {
  build: string[];
  before_activate: string[];
  after_activate: string[];
  timeout: number;
}

export interface ActivateOptions {
  health: HealthCheck | null;
  /** Provisioning lines to run first (when no release upload had to come between). */
  provision?: string[];
  /** Before the first release (setup): the unit's interpreter does not exist yet. */
  noCodeYet?: boolean;
  /** Every managed file: recorded with the release, to roll back to. */
  managedFiles: string[];
  hooks: Hooks;
  keep: number;
  manifest?: ManifestInfo;
  /** The static folder, relative to the release: nginx may read it once the release is sealed. */
  staticPath: string | null;
}

/** The list of shipped files as recorded in a release (`.stack-files`), compared by hash. */
export function shippedListText(files: readonly string[]): string {
  return files.map((f) => `${f}\n`).join('');
}

/**
 * Puts a release live as one unit:
 * 1. files are staged next to their targets and renamed into place (a reader never sees half
 *    a file), links switched, `current` pointed at the release; the previous state is kept;
 * 2. the whole nginx tree and the units are validated (nginx -t, systemd-analyze verify) and the
 *    configuration is recorded in the release; then the before_activate hooks run in the new
 *    release; any failure so far puts everything back before a single service is touched;
 * 3. handlers run, each once; if the app does not start or the health check fails, the previous
 *    release and its configuration are put back and reloaded, and the command fails;
 * 4. only then is the change committed, old releases pruned, after_activate hooks run.
 */
export function activateScript(plan: Plan, ctx: RunContext, o: ActivateOptions): string {
  const { layout } = ctx;
  const lines: string[] = [...(o.provision ?? [])];
  const touches = plan.files.length > 0 || plan.links.length > 0 || plan.removes.length > 0 || plan.release !== null;
  const validatesNginx = plan.files.some((f) => f.file.validate === 'nginx') || plan.links.length > 0 || plan.removes.length > 0;
  const units = plan.files.filter((f) => f.file.validate === 'systemd').map((f) => f.file.path);
  const rel = plan.release ? `${layout.releases}/${plan.release.id}` : null;

  if (touches) lines.push(...UNDO_FUNCTIONS);
  if (rel) lines.push(`NEWREL=${q(rel)}`);
  if (plan.release?.copyFrom && o.manifest) {
    // Same code, new configuration: a new release whose files are hard links to the live one's.
    const from = `${layout.releases}/${plan.release.copyFrom}`;
    lines.push(
      `step ${q(`release ${plan.release.id} (code of ${plan.release.copyFrom}, new configuration)`)}`,
      `rm -rf ${q(`${rel}`)} && cp -al ${q(from)} ${q(`${rel}.partial`)} && rm -rf ${q(`${rel}.partial/.stack`)} ${q(`${rel}.partial/.stack-release.json`)} && mv -T ${q(`${rel}.partial`)} ${q(rel!)} || { rm -rf ${q(`${rel}.partial`)}; fail 'copy release'; }`,
      writeManifest(rel!, layout.app, manifestJson(plan.release, o.manifest)),
    );
  }
  let n = 0;
  for (const change of plan.files) {
    const f = change.file;
    const tmp = `${f.path}.stack-new.$$`;
    const content = typeof f.content === 'string' ? f.content : f.content.reveal();
    // Base64 has no `_`, so this tag can never occur inside the content: no nonce needed, and
    // the same plan always gives the same script.
    const tag = `STACK_FILE_${++n}`;
    lines.push(`step ${q(`${change.action === 'attributes' ? 'set mode/owner of' : change.action === 'create' ? 'create' : 'update'} ${f.path}`)}`);
    // mkdir -p leaves an existing parent's mode alone (install -d would reset it to 0755).
    lines.push(`mkdir -p ${q(f.path.slice(0, f.path.lastIndexOf('/')) || '/')}`);
    if (change.action === 'attributes') {
      lines.push(
        `remember ${q(f.path)}`,
        `chmod ${f.mode} ${q(f.path)} && chown ${q(`${f.owner}:${f.group}`)} ${q(f.path)} || abort ${q(`set attributes of ${f.path}`)}`,
      );
      continue;
    }
    lines.push(
      `base64 -d > ${q(tmp)} <<'${tag}' || abort ${q(`write ${f.path}`)}`,
      ...chunk(Buffer.from(content, 'utf8').toString('base64'), 76),
      tag,
      `chmod ${f.mode} ${q(tmp)} && chown ${q(`${f.owner}:${f.group}`)} ${q(tmp)} || { rm -f ${q(tmp)}; abort ${q(`set attributes of ${f.path}`)}; }`,
      `remember ${q(f.path)}`,
      `mv -f ${q(tmp)} ${q(f.path)} || abort ${q(`install ${f.path}`)}`,
    );
  }
  for (const l of plan.links) {
    lines.push(
      `step ${q(`link ${l.path} -> ${l.target}`)}`,
      `remember ${q(l.path)}`,
      `ln -sfn ${q(l.target)} ${q(`${l.path}.stack-new.$$`)} && mv -fT ${q(`${l.path}.stack-new.$$`)} ${q(l.path)} || abort ${q(`link ${l.path}`)}`,
    );
  }
  for (const r of plan.removes) lines.push(`step ${q(`remove ${r}`)}`, `remember ${q(r)}`, `rm -f ${q(r)} || abort ${q(`remove ${r}`)}`);
  if (plan.release && !plan.release.copyFrom && rel && o.manifest) lines.push(...sealLines(plan.release, rel, ctx, o));
  if (plan.release) {
    lines.push(
      `step ${q(`switch current to release ${plan.release.id}`)}`,
      `[ -f ${q(`${rel}/.stack-release.json`)} ] || abort 'release is incomplete'`,
      `switch_current ${shCommand(layout.current, plan.release.id)} || abort 'switch current'`,
    );
  }
  if (validatesNginx) {
    lines.push(`step ${q('validate the nginx configuration (nginx -t)')}`, "validate_nginx || abort 'nginx -t'");
  }
  // systemd-analyze exits 0 on unknown keys and bad values, so anything it prints fails the
  // check. Before the first release (setup) the unit's interpreter does not exist yet: that one
  // complaint is expected then, and any other still fails.
  const complaints = o.noCodeYet ? `grep -v ${q(`Command ${layout.current}/.* is not executable`)} "$UNDO.unit"` : 'cat "$UNDO.unit"';
  for (const unit of units) {
    lines.push(
      `step ${q(`validate ${unit} (systemd-analyze verify)`)}`,
      `systemd-analyze verify ${q(unit)} >"$UNDO.unit" 2>&1`,
      `if ${complaints} | grep -q .; then cat "$UNDO.unit" >&2; rm -f "$UNDO.unit"; abort ${q(`systemd-analyze verify ${unit}`)}; fi`,
      'rm -f "$UNDO.unit"',
    );
  }
  if (rel) {
    // The configuration this release goes live with, kept with it (root only: it holds secrets).
    lines.push(
      `install -d -m 0700 -o root -g root ${q(`${rel}/.stack`)} && rm -rf ${q(`${rel}/.stack/config`)} && : > ${q(`${rel}/.stack/links`)}`,
      ...o.managedFiles.map(
        (p) =>
          `if [ -e ${q(p)} ]; then mkdir -p ${q(`${rel}/.stack/config${p.slice(0, p.lastIndexOf('/'))}`)} && cp -a ${q(p)} ${q(`${rel}/.stack/config${p}`)}; fi`,
      ),
      ...plan.allLinks.map((l) => `printf '%s %s\\n' ${q(l.path)} ${q(l.target)} >> ${q(`${rel}/.stack/links`)}`),
    );
    for (const hook of o.hooks.before_activate) lines.push(...hookLines(hook, appHook(layout, rel, o.hooks.timeout), 'abort'));
  }

  // From here on services are touched: a failure puts the previous state back and reloads it.
  const restarts = plan.handlers.some((h) => h.name === 'restart-app');
  if (touches) {
    lines.push(
      ...(o.health ? [healthFunction(o.health)] : []),
      `rollback_live() { echo 'rolling back to the previous release and its configuration' >&2; put_back_live ${q(layout.unit)} ${restarts ? 1 : 0};${o.health ? ` health_ok; printf '@@rolledback %s\\n' "$code";` : ''} audit failed "$1"; fail "$1"; }`,
    );
  }
  const onFailure = touches ? 'rollback_live' : 'fail';
  for (const s of plan.enable) lines.push(`step ${q(`enable ${s}`)}`, `systemctl enable --quiet ${q(s)} || ${onFailure} ${q(`enable ${s}`)}`);
  for (const h of plan.handlers) {
    lines.push(
      `step ${q(h.description)}`,
      `${h.command} 2>"$TMPD/handler" || { cat "$TMPD/handler" >&2; ${h.name === 'restart-app' ? `journalctl -u ${q(layout.unit)} -n ${JOURNAL_LINES} --no-pager -o cat >&2; ` : ''}${onFailure} ${q(h.description)}; }`,
    );
  }
  for (const s of plan.start)
    lines.push(
      `step ${q(`start ${s}`)}`,
      `systemctl start ${q(s)} || { journalctl -u ${q(s)} -n ${JOURNAL_LINES} --no-pager -o cat >&2; ${onFailure} ${q(`start ${s}`)}; }`,
    );
  // With a rollback, health_ok is already defined (the rollback re-checks with it).
  if (o.health) lines.push(...healthLines(o.health, onFailure, !touches));
  if (touches) lines.push('commit');
  if (rel) {
    lines.push(
      `step ${q(`keep the last ${o.keep} releases`)}`,
      // Releases that never went live go first: no manifest (an upload cut off) or no recorded
      // configuration (its deploy died before activation). Never the live one.
      `cd ${q(layout.releases)} && for r in *; do { [ -f "$r/.stack-release.json" ] && [ -d "$r/.stack/config" ]; } || [ "$r" = ${q(plan.release!.id)} ] || [ "releases/$r" = "$(readlink ${q(layout.current)})" ] || rm -rf "$r"; done`,
      // A release a running process still works in (one that was not restarted) is kept too.
      `inuse=$(for p in $(pgrep -u ${q(layout.app)}); do readlink /proc/$p/cwd; done 2>/dev/null | sed -n ${q(`s|^${layout.releases}/\\([^/]*\\).*|\\1|p`)} | sort -u)`,
      `ls -1 | sort -r | tail -n +${o.keep + 1} | while read -r r; do case " $(echo $inuse) " in *" $r "*) continue;; esac; [ "$r" = ${q(plan.release!.id)} ] || rm -rf "$r"; done; cd /`,
    );
    for (const hook of o.hooks.after_activate) lines.push(...hookLines(hook, appHook(layout, layout.current, o.hooks.timeout), 'after_failed'));
  }
  lines.push(`audit ok ''`);
  return wrap(ctx, [`after_failed() { audit failed "$1"; fail "$1 (the new release stays live)"; }`, ...lines], {
    releaseLock: true,
    release: plan.release?.id,
  });
}

/** A server hook as the app's user: on the sealed release, writing only what the app may. */
function appHook(layout: Layout, dir: string, seconds: number): SandboxSpec {
  return {
    user: layout.app,
    group: layout.app,
    dir,
    writable: [layout.shared, ...(layout.media_dir ? [layout.media_dir] : [])],
    envFile: layout.env_file,
    seconds,
  };
}

/** A hook runs in its sandbox with the app's environment and virtualenv; its output is shown only if it fails. */
function hookLines(hook: string, spec: SandboxSpec, onFailure: string): string[] {
  return [
    `step ${q(`hook: ${hook}`)}`,
    `${sandboxed(spec, hook)} >"$TMPD/hook" 2>&1 </dev/null || { tail -n 40 "$TMPD/hook" >&2; ${onFailure} ${q(`hook ${hook}`)}; }`,
  ];
}

/**
 * The new release, built by the release script, becomes trustworthy: the build hooks run in it
 * (as the build user, with the app's environment, able to write only this release), then it is
 * sealed: nothing of the build runs any more, root owns every file, the app may only read them.
 * Only then is its manifest written, and only then can `current` point at it.
 */
function sealLines(release: ReleasePlan, rel: string, ctx: RunContext, o: ActivateOptions): string[] {
  const { layout } = ctx;
  const lines = [
    `step ${q(`check that release ${release.id} was built`)}`,
    ...(ctx.lock
      ? [`[ "$(cat ${q(`${ctx.lock.dir}/built`)} 2>/dev/null)" = ${q(release.id)} ] || abort 'release is incomplete (its build did not finish)'`]
      : []),
  ];
  for (const hook of o.hooks.build) {
    const spec = { user: layout.build_user, group: layout.build_user, dir: rel, writable: [rel], envFile: layout.env_file, seconds: o.hooks.timeout };
    lines.push(...hookLines(hook, spec, 'abort'));
  }
  lines.push(
    `step ${q(`seal release ${release.id}`)}`,
    `pkill -KILL -u ${q(layout.build_user)} 2>/dev/null; rm -rf ${q(`${rel}/.stack`)} ${q(`${rel}/.stack-release.json`)}`,
    `seal ${q(rel)} ${q(layout.app)} ${o.staticPath ? q(o.staticPath) : "''"} || { no_space_note ${q(layout.releases)}; abort 'seal release'; }`,
    ...(release.fileList ? writeFileLines(`${rel}/.stack-files`, shippedListText(release.fileList), `root:${layout.app}`, '0640', 'abort') : []),
    writeManifest(rel, layout.app, manifestJson(release, o.manifest!), 'abort'),
  );
  return lines;
}

/**
 * Rollback to a recorded release: its code and the configuration it went live with, put back
 * with the same care as a deploy (validated first, undone if anything fails), then reloaded and
 * health-checked.
 */
export function rollbackScript(target: string, ctx: RunContext, health: HealthCheck | null): string {
  const { layout } = ctx;
  const rel = `${layout.releases}/${target}`;
  const lines = [
    ...UNDO_FUNCTIONS,
    `[ -f ${q(`${rel}/.stack-release.json`)} ] && [ -d ${q(`${rel}/.stack/config`)} ] || fail ${q(`release ${target} has no recorded configuration`)}`,
    `check_sealed ${shCommand(target, layout.root, layout.releases, rel, `${rel}/.stack`)}`,
    `step ${q(`restore the configuration of release ${target}`)}`,
    `restore_config ${q(rel)} || abort 'restore the configuration'`,
    `step ${q(`switch current to release ${target}`)}`,
    `switch_current ${shCommand(layout.current, target)} || abort 'switch current'`,
    `step ${q('validate the nginx configuration (nginx -t)')}`,
    "validate_nginx || abort 'nginx -t'",
    ...(health ? [healthFunction(health)] : []),
    `rollback_live() { echo 'putting back what was live before the rollback' >&2; put_back_live ${q(layout.unit)} 1; audit failed "$1"; fail "$1"; }`,
    `step ${q('reload systemd units')}`,
    'systemctl daemon-reload',
    `step ${q(`restart ${layout.app}`)}`,
    `systemctl restart ${q(layout.unit)} 2>"$TMPD/handler" || { cat "$TMPD/handler" >&2; journalctl -u ${q(layout.unit)} -n ${JOURNAL_LINES} --no-pager -o cat >&2; rollback_live 'restart'; }`,
    `step ${q('reload nginx')}`,
    'reload_nginx || rollback_live "reload nginx"',
    ...(health ? healthLines(health, 'rollback_live', false) : []),
    'commit',
    "audit ok ''",
  ];
  return wrap(ctx, lines, { releaseLock: true, release: target });
}

/** Writes a file from a base64 heredoc (its end tag has a `_`, which base64 never contains). */
function writeFileLines(path: string, content: string, owner: string, mode: string, onFailure: string): string[] {
  return [
    `base64 -d > ${q(path)} <<'STACK_END_OF_FILE' || ${onFailure} ${q(`write ${path}`)}`,
    ...chunk(Buffer.from(content, 'utf8').toString('base64'), 76),
    'STACK_END_OF_FILE',
    `chown ${q(owner)} ${q(path)} && chmod ${mode} ${q(path)} || ${onFailure} ${q(`write ${path}`)}`,
  ];
}

function chunk(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length > 0 ? out : [''];
}
