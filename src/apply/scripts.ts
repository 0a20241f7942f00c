/**
 * The shell scripts that carry out a plan on the server, built as values (pure). Each runs as
 * root in ONE round trip, with the script on stdin (never on the command line, where other users
 * could read it). Lines starting with `@@step` report progress; a failing step prints
 * `@@fail STEP` and exits 1. Secret values are revealed here and nowhere else: inside base64
 * heredocs of the activation script.
 *
 * The logic is the shell library's (src/remote/sh/*.sh); a script is that library plus the
 * plan's data: one line per action, calling a library function with the plan's values, quoted
 * by shQuote. The same plan gives the same text (clock and nonces come in as values).
 *
 * Every script is a single function called on its last line: a script cut short in transit
 * defines nothing and runs nothing. Once it runs, it ignores SIGHUP and SIGPIPE, so a dropped
 * connection cannot stop it half way: it finishes, or rolls back, on its own.
 */
import { shCommand, shQuote as q } from '../remote/quote.js';
import { assign, call, heredoc, type RunContext, step, wrap } from '../remote/script.js';
import type { Layout } from '../views/layout.js';
import type { Provisioning } from '../plan/host.js';
import { type DatabasePlan, hooksRun } from '../plan/database.js';
import type { PartsPlan } from '../plan/parts.js';
import type { Plan, ReleasePlan } from '../plan/plan.js';

// Part of what this module offers: the executor and the tests take them from here.
export { LOCK_LIBRARY, REMOTE_LIBRARY, type RunContext, wrap } from '../remote/script.js';

/** Seconds without a byte of the upload before the server gives up on a silent client. */
export const UPLOAD_IDLE_SECONDS = 30;
/** Bounds on the build steps that have no bound of their own. */
const VENV_SECONDS = 600;
const PIP_SECONDS = 1800;

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

/** What provisioning needs beyond the plan, as the plan decided it. */
export type ProvisionOptions = Provisioning;

/**
 * Packages, users, group memberships, directories, a self-signed certificate, and the
 * conversion of a server in the layout of before releases were sealed. Lines only.
 */
export function provisionLines(plan: Plan, o: ProvisionOptions): string[] {
  const { sshPort } = o;
  const lines: string[] = [];
  if (plan.packages.length > 0) {
    lines.push(step(`install packages: ${plan.packages.join(' ')}`), `${call('install_packages', ...plan.packages)} || fail 'install packages'`);
  }
  for (const u of plan.users) {
    lines.push(step(`create system user ${u.name}`), `${call('make_user', u.name, u.home)} || fail ${q(`create user ${u.name}`)}`);
  }
  for (const m of plan.memberships) {
    lines.push(step(`add ${m.user} to group ${m.group}`), `${call('join_group', m.user, m.group)} || fail ${q(`add ${m.user} to ${m.group}`)}`);
  }
  for (const m of plan.leaves) {
    lines.push(step(`remove ${m.user} from group ${m.group}`), `${call('leave_group', m.user, m.group)} || fail ${q(`remove ${m.user} from ${m.group}`)}`);
  }
  for (const d of plan.dirs) {
    lines.push(step(`directory ${d.path}`), `${call('make_dir', d.path, d.mode, d.owner, d.group)} || fail ${q(`directory ${d.path}`)}`);
  }
  lines.push(...upgradeLines(plan, o));
  if (plan.database) lines.push(...databaseLines(plan.database));
  if (plan.selfSigned) {
    const { cert, key, domains } = plan.selfSigned;
    const san = domains.map((d) => (/^\d+\.\d+\.\d+\.\d+$/.test(d) ? `IP:${d}` : `DNS:${d}`)).join(',');
    lines.push(step('generate a self-signed certificate'), `${call('self_signed_cert', cert, key, `/CN=${domains[0]}`, san)} || fail 'generate certificate'`);
  }
  if (sshPort !== undefined) lines.push(`${call('open_firewall', String(sshPort))} || fail 'ufw allow'`);
  return lines;
}

/** The app's role, database and pg_hba lines, after the packages (PostgreSQL) are in. */
function databaseLines(d: DatabasePlan): string[] {
  const lines = [step(`PostgreSQL: role and database ${d.name} of ${d.role}`)];
  if (d.roleAction) lines.push(`${call('db_role', d.role, ...(d.passwordFile ? [d.passwordFile] : []))} || fail ${q(`PostgreSQL role ${d.role}`)}`);
  if (d.createDatabase) lines.push(`${call('db_create', d.name, d.role, d.locale)} || fail ${q(`create database ${d.name}`)}`);
  if (d.revokePublic) lines.push(`${call('db_revoke_public', d.name)} || fail ${q(`restrict who may connect to ${d.name}`)}`);
  if (d.hba) {
    lines.push(
      step("pg_hba.conf: the app's lines"),
      ...heredoc(`${call('db_hba_b64', d.role, d.name)} <<'STACK_HBA' || fail 'pg_hba.conf'`, 'STACK_HBA', d.hba.block),
    );
    // The hosts allowed in by these lines reach PostgreSQL on the db host's private address.
    if (d.listen) lines.push(step(`PostgreSQL listens on ${d.listen}`), `${call('db_listen', d.listen)} || fail 'PostgreSQL listen_addresses'`);
  }
  return lines;
}

/**
 * Runs right after the directories have become root's, when the app's user can no longer move
 * anything in /srv/NAME (see seal_releases).
 */
function upgradeLines(plan: Plan, o: ProvisionOptions): string[] {
  const u = plan.upgrade;
  if (!u) return [];
  const { layout } = o;
  const lines: string[] = [];
  if (u.sealReleases) {
    lines.push(
      step('seal the releases already there (code owned by root, read-only to the app)'),
      call('seal_releases', layout.current, layout.releases, layout.app, o.staticPath ?? ''),
    );
  }
  if (u.media)
    lines.push(
      step(`uploads in ${u.media} to group ${layout.web_user}`),
      `${call('convert_media', u.media, layout.app, layout.web_user)} || fail 'convert the uploads'`,
    );
  if (u.socketGroup) {
    const { path, group } = u.socketGroup;
    lines.push(step(`socket ${path} to group ${group}`), `${call('socket_group', path, group)} || fail 'socket group'`);
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

/** The database backup a deploy takes before its hooks, recorded in the release's manifest. */
export interface DeployBackup {
  dir: string;
  db: string;
  keep: number;
  id: string;
}

function manifestJson(release: ReleasePlan, info: ManifestInfo, run: { hooks: string[]; backup: string | null }): string {
  return JSON.stringify({
    id: release.id,
    source_hash: release.sourceHash,
    git_commit: info.gitCommit,
    inventory_hash: info.inventoryHash,
    created: info.created,
    by: info.by,
    ...(release.copyFrom ? { code_from: release.copyFrom } : {}),
    // What a rollback past this release must know: hooks may have changed the database since.
    hooks: run.hooks,
    ...(run.backup ? { db_backup: run.backup } : {}),
  });
}

/** The backup a rollback past this release would name: taken here, or on the db host. */
function manifestBackup(o: ActivateOptions): string | null {
  return o.backup?.id ?? o.backedUpElsewhere ?? null;
}

function writeManifest(dir: string, app: string, json: string, onFailure = 'fail'): string {
  return `${call('write_manifest', dir, app, json)} || ${onFailure} 'write manifest'`;
}

/**
 * Receives the release (the tarball on stdin) into releases/<id> and builds it there: its
 * virtualenv, the requirements, compiled Python files. The virtualenv is shared: releases/<id>/.venv
 * links to venvs/KEY, KEY naming the requirements, the package index and the server's Python
 * (use_venv); a sealed one there is reused as it is, and only otherwise built, then sealed.
 * Every build step runs as the build user in a sandbox that can write this release (or that
 * virtualenv) and nothing else (`sandboxed`); the release is not sealed yet, and nothing trusts
 * it until activation has run the build hooks and sealed it. The tarball is the stdin, so this
 * script is the command line: it carries no secret (a package index's URL comes on stdin, ahead
 * of the tarball). The last line marks the release built, in root's lock folder, for activation
 * to check.
 */
export function releaseScript(release: ReleasePlan, ctx: RunContext): string {
  const { layout } = ctx;
  const dir = `${layout.releases}/${release.id}`;
  const upload = `${layout.releases}/.${release.id}.upload`;
  const build = (seconds: number, command: string) => sandboxed({ user: layout.build_user, group: layout.build_user, dir, writable: [dir], seconds }, command);
  // The build user may write the venvs folder only where root made a folder its own (use_venv).
  const venvBuild = (seconds: number, command: string) =>
    sandboxed({ user: layout.build_user, group: layout.build_user, dir, writable: [layout.venvs], seconds }, command);
  // Built at its real path, never through the release's link: a virtualenv's scripts and
  // pyvenv.cfg keep the path they were made at, and the release goes away before it does.
  const venvDir = '"$(realpath -e .venv)"';
  const index = release.venv.index !== null;
  const pip = (requirements: string) =>
    [
      // The index's URL comes on stdin (venv_build_step ... index), so no command line shows it.
      ...(index ? ['IFS= read -r PIP_INDEX_URL && export PIP_INDEX_URL &&'] : []),
      `exec ${venvDir}/bin/python`,
      shCommand('-m', 'pip', 'install', '--no-input', '--no-cache-dir', '--disable-pip-version-check', '-r', requirements),
    ].join(' ');
  const venvStep = (what: string, lines: number, input: 'index' | '-', sandbox: string) =>
    `${call('venv_build_step', layout.releases, String(lines), what, input)} ${sandbox}`;
  return wrap(
    ctx,
    [
      // First on stdin, ahead of the tarball.
      ...(index ? [call('receive_index', String(UPLOAD_IDLE_SECONDS))] : []),
      step(`receive release ${release.id}`),
      call('receive_release', dir, upload, layout.build_user, String(UPLOAD_IDLE_SECONDS)),
      step(`unpack release ${release.id}`),
      call('unpack_release', upload, dir, layout.build_user),
      // It says so when it reuses one; otherwise the build steps that follow name themselves.
      `${call('use_venv', dir, layout.venvs, release.venv.digest, layout.build_user)} || fail 'virtualenv'`,
      venvStep('create virtualenv', 25, '-', venvBuild(VENV_SECONDS, `exec python3 -m venv --system-site-packages ${venvDir}`)),
      ...(release.requirements
        ? [venvStep(`pip install -r ${release.requirements}`, 40, index ? 'index' : '-', venvBuild(PIP_SECONDS, pip(release.requirements)))]
        : []),
      `${call('finish_venv', layout.build_user)} || fail 'seal the virtualenv'`,
      step('compile Python files'),
      `build_optional ${build(VENV_SECONDS, shCommand('.venv/bin/python', '-m', 'compileall', '-q', '-x', '/\\.venv/', '.'))}`,
      ...(ctx.lock ? [`${call('mark_built', `${ctx.lock.dir}/built`, release.id)} || fail 'mark the release built'`] : []),
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
  /** The static folder in the live release and its URL prefix: one file of it is asked for too. */
  static?: { dir: string; url: string };
  /**
   * An app host without nginx: the gateway itself is asked, on its TCP address (where the web
   * hosts elsewhere reach it), instead of nginx on port 80 or 443.
   */
  via?: { address: string; port: number };
  /**
   * A web host whose nginx balances over other app hosts too: its own gateway's unix socket,
   * asked first, so that another host's answer never passes for this one's.
   */
  socket?: string;
}

/** The health check's values, on one line: the library's health_ok and rollback_live read them. */
export function healthConfig(h: HealthCheck): string {
  const port = h.via ? h.via.port : h.https ? 443 : 80;
  const url = h.via ? `http://${h.host}:${port}${h.path}` : h.https ? `https://${h.host}${h.path}` : `http://${h.host}${h.path}`;
  return assign({
    HEALTH_URL: url,
    HEALTH_RESOLVE: `${h.host}:${port}:${h.via?.address ?? '127.0.0.1'}`,
    HEALTH_STATUS: String(h.status),
    HEALTH_TIMEOUT: String(h.timeout),
    HEALTH_RETRIES: String(h.retries),
    HEALTH_UNIT: h.app,
    HEALTH_PATH: h.path,
    ...(h.socket ? { HEALTH_SOCKET: h.socket, HEALTH_SOCKET_URL: `http://${h.host}${h.path}` } : {}),
    ...(h.static ? { STATIC_DIR: h.static.dir, STATIC_URL: `${h.https ? 'https' : 'http'}://${h.host}${h.static.url}` } : {}),
  });
}

/** The health step; `onFailure` is `fail`, or the rollback of a script that has one. */
export function healthLines(h: HealthCheck, onFailure: string): string[] {
  return [step(`health check ${h.path}`), `health_ok || ${onFailure} 'health check'`, ...(h.static ? [`static_ok || ${onFailure} 'static files check'`] : [])];
}

/**
 * A script of only the health check (a deploy with nothing to change still checks the site). A
 * host without nginx (a worker or db host) has no site to check: it only gives the lock back.
 */
export function healthOnlyScript(health: HealthCheck | null, ctx: RunContext): string {
  return wrap({ ...ctx, audit: null }, health ? [healthConfig(health), ...healthLines(health, 'fail')] : [], { releaseLock: true });
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
  /** The database backup to take before anything of the release runs (src/plan/database.ts). */
  backup?: DeployBackup | null;
  /** The backup taken before the hooks on the db host, when the database is there: recorded only. */
  backedUpElsewhere?: string | null;
  /** The process instances and job timers the release runs with: recorded for a rollback. */
  parts?: { instances: string[]; timers: string[] };
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
  if (rel) lines.push(assign({ NEWREL: rel }));
  if (o.backup && rel) {
    const b = o.backup;
    lines.push(
      step(`back up database ${b.db} before the release's hooks (${b.id})`),
      `${call('db_backup', b.dir, b.db, 'deploy', String(b.keep), 'list', b.id)} || abort 'back up the database (the release and its configuration were not changed)'`,
    );
  }
  const run = { hooks: hooksRun(o.hooks), backup: manifestBackup(o) };
  if (plan.release?.copyFrom && rel && o.manifest) {
    lines.push(
      step(`release ${plan.release.id} (code of ${plan.release.copyFrom}, new configuration)`),
      `${call('copy_release', `${layout.releases}/${plan.release.copyFrom}`, rel)} || fail 'copy release'`,
      writeManifest(rel, layout.app, manifestJson(plan.release, o.manifest, run)),
    );
  }
  const parts = plan.parts;
  if (parts && parts.hold.length > 0) {
    // From here on every failure is an abort or a rollback_live, which start them again.
    lines.push(
      assign({ HELD_TIMERS: parts.hold.join(' ') }),
      step(`hold ${parts.hold.join(' ')} while the release switches`),
      `hold_timers || ${touches ? 'abort' : 'fail'} 'hold the timers'`,
    );
  }
  let n = 0;
  for (const change of plan.files) {
    const f = change.file;
    const owner = `${f.owner}:${f.group}`;
    lines.push(step(`${change.action === 'attributes' ? 'set mode/owner of' : change.action === 'create' ? 'create' : 'update'} ${f.path}`));
    if (change.action === 'attributes') {
      lines.push(`${call('set_attributes', f.path, f.mode, owner)} || abort ${q(`set attributes of ${f.path}`)}`);
      continue;
    }
    const content = typeof f.content === 'string' ? f.content : f.content.reveal();
    // Base64 has no `_`, so this tag can never occur inside the content: no nonce needed, and
    // the same plan always gives the same script.
    lines.push(...heredoc(`${call('install_file', f.path, f.mode, owner)} <<'STACK_FILE_${++n}'`, `STACK_FILE_${n}`, content));
  }
  for (const l of plan.links) lines.push(step(`link ${l.path} -> ${l.target}`), `${call('install_link', l.path, l.target)} || abort ${q(`link ${l.path}`)}`);
  for (const r of plan.removes) lines.push(step(`remove ${r}`), `${call('remove_file', r)} || abort ${q(`remove ${r}`)}`);
  if (plan.release && !plan.release.copyFrom && rel && o.manifest) lines.push(...sealLines(plan.release, rel, ctx, o));
  if (plan.release && rel) {
    lines.push(
      step(`switch current to release ${plan.release.id}`),
      `${call('has_manifest', rel)} || abort 'release is incomplete'`,
      `${call('switch_current', layout.current, plan.release.id)} || abort 'switch current'`,
    );
  }
  if (validatesNginx) lines.push(step('validate the nginx configuration (nginx -t)'), "validate_nginx || abort 'nginx -t'");
  for (const unit of units) {
    lines.push(
      step(`validate ${unit} (systemd-analyze verify)`),
      `${call('verify_unit', unit, ...(o.noCodeYet ? [layout.current] : []))} || abort ${q(`systemd-analyze verify ${unit}`)}`,
    );
  }
  if (rel) {
    lines.push(
      call('record_config', rel, ...o.managedFiles),
      ...plan.allLinks.map((l) => call('record_link', rel, l.path, l.target)),
      call('record_parts', rel, (o.parts?.instances ?? []).join(' '), (o.parts?.timers ?? []).join(' ')),
    );
    for (const hook of o.hooks.before_activate) lines.push(...hookLines(hook, appHook(layout, rel, o.hooks.timeout), 'abort'));
  }

  // From here on services are touched: a failure puts the previous state back and reloads it.
  if (o.health) lines.push(healthConfig(o.health));
  if (touches) {
    lines.push(
      assign({
        LIVE_UNIT: layout.unit,
        LIVE_RESTART: plan.handlers.some((h) => h.name === 'restart-app') ? '1' : '0',
        LIVE_CURRENT: layout.current,
        LIVE_UNITS: `${layout.app}.socket ${layout.unit}`,
      }),
    );
  }
  const onFailure = touches ? 'rollback_live' : 'fail';
  for (const s of plan.enable) lines.push(step(`enable ${s}`), `${call('enable_service', s)} || ${onFailure} ${q(`enable ${s}`)}`);
  for (const h of plan.handlers) {
    // The app's journal says why it did not start.
    const journal = h.name === 'restart-app' ? [layout.unit] : [];
    lines.push(step(h.description), `${call('run_handler', h.command, ...journal)} || ${onFailure} ${q(h.description)}`);
  }
  for (const s of plan.start) lines.push(step(`start ${s}`), `${call('start_service', s)} || ${onFailure} ${q(`start ${s}`)}`);
  if (o.health) lines.push(...healthLines(o.health, onFailure));
  if (parts) lines.push(...partsLines(parts, touches ? 'rollback_live' : 'fail'));
  if (touches) lines.push('commit');
  // The timers first: a unit file that cannot be removed must not leave them stopped.
  if (parts && parts.timers.length > 0)
    lines.push(step(`start ${parts.timers.join(' ')}`), `${call('parts_run', 'start', ...parts.timers)} || after_failed 'start the timers'`);
  if (parts && parts.remove.length > 0)
    lines.push(step(`remove ${parts.remove.join(' ')}`), `${call('parts_remove', ...parts.remove)} || after_failed 'remove unit files'`);
  // Processes changed with no new release (a scale): the live release's record follows, for a rollback to it.
  if (parts && !rel && o.parts && parts.enable.length + parts.stop.length + parts.start.length > 0) {
    lines.push(call('record_parts', layout.current, o.parts.instances.join(' '), o.parts.timers.join(' ')));
  }
  if (rel) {
    lines.push(
      step(`keep the last ${o.keep} releases`),
      call('prune_releases', layout.releases, String(o.keep), plan.release!.id, layout.current, layout.app),
      // A virtualenv stays while a kept release links to it: a rollback finds it there.
      call('prune_venvs', layout.venvs, layout.releases),
    );
    for (const hook of o.hooks.after_activate) lines.push(...hookLines(hook, appHook(layout, layout.current, o.hooks.timeout), 'after_failed'));
  }
  lines.push(`audit ok ''`);
  return wrap(ctx, lines, { releaseLock: true, release: plan.release?.id });
}

/** Seconds a restarted process must stay up (without systemd restarting it) for the deploy to count. */
export const PROCESS_SETTLE_SECONDS = 3;

/**
 * Once the web is healthy: processes gone from the inventory stop, running ones restart on the
 * new release (warm: SIGTERM, then their stop timeout), missing ones start, and each must stay up
 * for a few seconds; a failure rolls back like an unhealthy web (rollback_live, parts_put_back).
 */
function partsLines(p: PartsPlan, onFailure: string): string[] {
  const running = [...p.restart, ...p.start];
  const lines = [assign({ PARTS_BEFORE: p.before.join(' '), PARTS_NEW: running.filter((u) => !p.before.includes(u)).join(' ') })];
  if (p.stop.length)
    lines.push(step(`stop ${p.stop.join(' ')} (no longer in the inventory)`), `${call('parts_stop', ...p.stop)} || ${onFailure} 'stop processes'`);
  if (p.enable.length) lines.push(`${call('parts_run', 'enable', ...p.enable)} || ${onFailure} 'enable processes'`);
  if (p.restart.length) lines.push(step(`restart ${p.restart.join(' ')}`), `${call('parts_run', 'restart', ...p.restart)} || ${onFailure} 'restart processes'`);
  if (p.start.length) lines.push(step(`start ${p.start.join(' ')}`), `${call('parts_run', 'start', ...p.start)} || ${onFailure} 'start processes'`);
  if (running.length) {
    lines.push(
      step(`check that ${running.join(' ')} stay up (${PROCESS_SETTLE_SECONDS} s)`),
      `${call('parts_settle', String(PROCESS_SETTLE_SECONDS), ...running)} || ${onFailure} 'processes'`,
    );
  }
  return lines;
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

/** A hook runs in its sandbox with the app's environment and virtualenv. */
function hookLines(hook: string, spec: SandboxSpec, onFailure: string): string[] {
  return [step(`hook: ${hook}`), `run_hook ${sandboxed(spec, hook)} || ${onFailure} ${q(`hook ${hook}`)}`];
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
    step(`check that release ${release.id} was built`),
    ...(ctx.lock ? [`${call('is_built', `${ctx.lock.dir}/built`, release.id)} || abort 'release is incomplete (its build did not finish)'`] : []),
  ];
  for (const hook of o.hooks.build) {
    const spec = { user: layout.build_user, group: layout.build_user, dir: rel, writable: [rel], envFile: layout.env_file, seconds: o.hooks.timeout };
    lines.push(...hookLines(hook, spec, 'abort'));
  }
  lines.push(
    step(`seal release ${release.id}`),
    `${call('seal_release', rel, layout.app, o.staticPath ?? '', layout.build_user)} || abort 'seal release'`,
    // Sealed, the release's link can no longer change: it must lead to a virtualenv root sealed.
    `${call('check_venv', rel, layout.venvs)} || abort 'the release has no sealed virtualenv'`,
  );
  if (release.fileList) {
    const list = `${rel}/.stack-files`;
    lines.push(
      ...heredoc(
        `${call('write_file', list, `root:${layout.app}`, '0640')} <<'STACK_END_OF_FILE' || abort ${q(`write ${list}`)}`,
        'STACK_END_OF_FILE',
        shippedListText(release.fileList),
      ),
    );
  }
  lines.push(writeManifest(rel, layout.app, manifestJson(release, o.manifest!, { hooks: hooksRun(o.hooks), backup: manifestBackup(o) }), 'abort'));
  return lines;
}

/**
 * Rollback to a recorded release: its code and the configuration it went live with, put back
 * with the same care as a deploy (validated first, undone if anything fails), then reloaded and
 * health-checked. `beforeRestart` lines run with the app's new configuration in place, before it
 * restarts (a database restore); undo_rollback undoes them too.
 */
export function rollbackScript(
  target: string,
  ctx: RunContext,
  health: HealthCheck | null,
  beforeRestart: string[] = [],
  /** What the host runs (its roles): nginx is checked and reloaded only where it runs, the gateway restarted only where it runs. */
  runs: { web: boolean; app: boolean } = { web: true, app: true },
): string {
  const { layout } = ctx;
  const rel = `${layout.releases}/${target}`;
  const lines = [
    ...UNDO_FUNCTIONS,
    `${call('has_record', rel)} || fail ${q(`release ${target} has no recorded configuration`)}`,
    call('check_sealed', target, layout.root, layout.releases, rel, `${rel}/.stack`),
    `${call('check_venv', rel, layout.venvs)} || fail ${q(`release ${target} has lost its virtualenv`)}`,
    step(`restore the configuration of release ${target}`),
    `${call('restore_config', rel)} || abort 'restore the configuration'`,
    call('hold_app_timers', layout.app),
    step(`switch current to release ${target}`),
    `${call('switch_current', layout.current, target)} || abort 'switch current'`,
    ...(runs.web ? [step('validate the nginx configuration (nginx -t)'), "validate_nginx || abort 'nginx -t'"] : []),
    ...(health ? [healthConfig(health)] : []),
    assign({ LIVE_UNIT: layout.unit }),
    step('reload systemd units'),
    'systemctl daemon-reload',
    // The database's restore (rollback --restore-db, src/apply/database.ts), with the app stopped.
    ...beforeRestart,
    ...(runs.app
      ? [
          step(`restart ${layout.app}`),
          // Not counted against systemd's start limit, like a deploy's restart (roles/app.yml).
          `${call('run_handler', `${shCommand('systemctl', 'reset-failed', layout.unit)} 2>/dev/null; ${shCommand('systemctl', 'restart', layout.unit)}`, layout.unit)} || undo_rollback 'restart'`,
        ]
      : []),
    ...(runs.web ? [step('reload nginx'), "reload_nginx || undo_rollback 'reload nginx'"] : []),
    ...(health ? healthLines(health, 'undo_rollback') : []),
    'commit',
    step(`the processes and timers of release ${target}`),
    `${call('sync_parts', rel, layout.app, String(PROCESS_SETTLE_SECONDS))} || after_failed 'processes of the release'`,
    "audit ok ''",
  ];
  return wrap(ctx, lines, { releaseLock: true, release: target });
}
