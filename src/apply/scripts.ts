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
import { shCommand, shQuote as q } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import type { Plan, ReleasePlan } from '../plan/plan.js';

const FUNCTIONS = [
  'export DEBIAN_FRONTEND=noninteractive LC_ALL=C',
  `step() { printf '@@step %s\\n' "$*"; }`,
  `fail() { printf '@@fail %s\\n' "$*"; exit 1; }`,
  // `systemctl reload nginx` returns when the signal is sent; this returns when every worker
  // serving requests is a new one, so a health check right after sees the new configuration.
  // A stopped nginx is started instead.
  'reload_nginx() {',
  "  old=$(pgrep -d ' ' -f '^nginx: worker process$' || true)",
  '  systemctl reload-or-restart nginx || return 1',
  '  i=0; while [ $i -lt 100 ]; do',
  "    cur=$(pgrep -d ' ' -f '^nginx: worker process$' || true); stale=",
  '    for p in $old; do case " $cur " in *" $p "*) stale=1;; esac; done',
  '    [ -z "$stale" ] && [ -n "$cur" ] && return 0',
  '    i=$((i+1)); sleep 0.05',
  '  done',
  '}',
].join('\n');

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

/** Wraps a script body: one function, run only if the whole text arrived. */
export function wrap(ctx: RunContext, body: string[], options: { releaseLock: boolean; release?: string }): string {
  const lines = ['stack_main() {', 'set -u', 'umask 077', FUNCTIONS, "trap '' HUP PIPE"];
  if (ctx.audit) {
    const { file, who, command } = ctx.audit;
    lines.push(
      `audit() { mkdir -p ${q(file.slice(0, file.lastIndexOf('/')))} && printf '{"time":"%s","who":%s,"command":%s,"release":%s,"result":"%s","step":"%s"}\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" ${q(JSON.stringify(who))} ${q(JSON.stringify(command))} ${q(JSON.stringify(options.release ?? null))} "$1" "$(printf '%s' "\${2:-}" | tr -d '"\\\\')" >> ${q(file)}; chmod 0640 ${q(file)}; }`,
    );
  } else {
    lines.push('audit() { :; }');
  }
  if (ctx.lock) {
    const { dir, token } = ctx.lock;
    lines.push(
      `[ "$(cat ${q(`${dir}/token`)} 2>/dev/null)" = ${q(token)} ] || { echo 'the deploy lock is no longer ours: another deploy took it over' >&2; fail 'deploy lock'; }`,
    );
    // While this script runs, the lock is not stale, whatever happened to the client.
    lines.push(`echo $$ > ${q(`${dir}/script.pid`)}`);
    if (options.releaseLock) lines.push(`trap 'if [ "$(cat ${q(`${dir}/token`)} 2>/dev/null)" = ${q(token)} ]; then rm -rf ${q(dir)}; fi' EXIT`);
    else lines.push(`trap 'rm -f ${q(`${dir}/script.pid`)}' EXIT`);
  }
  lines.push(...body, '}', 'stack_main');
  return `${lines.join('\n')}\n`;
}

/** Packages, users, group memberships, directories, a self-signed certificate. Lines only. */
export function provisionLines(plan: Plan, sshPort?: number): string[] {
  const lines: string[] = [];
  if (plan.packages.length > 0) {
    const install = shCommand('apt-get', 'install', '-y', '-q', '--no-install-recommends', ...plan.packages);
    lines.push(
      `step ${q(`install packages: ${plan.packages.join(' ')}`)}`,
      // A fresh server may have no package lists yet: update once, then try again.
      `if ! ${install} >/tmp/stack-apt.$$ 2>&1; then apt-get update -q >>/tmp/stack-apt.$$ 2>&1; ${install} >>/tmp/stack-apt.$$ 2>&1 || { tail -n 25 /tmp/stack-apt.$$ >&2; rm -f /tmp/stack-apt.$$; fail 'install packages'; }; fi`,
      'rm -f /tmp/stack-apt.$$',
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
  for (const d of plan.dirs) {
    lines.push(`step ${q(`directory ${d.path}`)}`, `install -d -m ${d.mode} -o ${q(d.owner)} -g ${q(d.group)} ${q(d.path)} || fail ${q(`directory ${d.path}`)}`);
  }
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

/** Provisioning alone (used when a release upload has to come between it and activation). */
export function provisionScript(plan: Plan, ctx: RunContext, sshPort?: number): string | null {
  const lines = provisionLines(plan, sshPort);
  return lines.length > 0 ? wrap(ctx, lines, { releaseLock: false }) : null;
}

export interface ManifestInfo {
  by: string;
  gitCommit: string | null;
  inventoryHash: string;
}

function manifestJson(release: ReleasePlan, info: ManifestInfo): string {
  return JSON.stringify({
    id: release.id,
    source_hash: release.sourceHash,
    git_commit: info.gitCommit,
    inventory_hash: info.inventoryHash,
    created: new Date().toISOString(),
    by: info.by,
    ...(release.copyFrom ? { code_from: release.copyFrom } : {}),
  });
}

function writeManifest(dir: string, app: string, json: string): string {
  const file = `${dir}/.stack-release.json`;
  return `printf '%s\\n' ${q(json)} > ${q(`${file}.new`)} && chown ${q(`${app}:${app}`)} ${q(`${file}.new`)} && chmod 0640 ${q(`${file}.new`)} && mv -f ${q(`${file}.new`)} ${q(file)} || fail 'write manifest'`;
}

/**
 * Unpacks the release from the tarball on stdin into releases/<id>, as the app's user, with its
 * own virtualenv. The manifest is written last: a release without one is incomplete and never
 * goes live. The tarball is the stdin, so this script is the command line: it carries no secret.
 */
export function releaseScript(release: ReleasePlan, ctx: RunContext, info: ManifestInfo): string {
  const { layout } = ctx;
  const dir = `${layout.releases}/${release.id}`;
  const asApp = (...words: string[]) => `runuser -u ${q(layout.app)} -- ${shCommand(...words)}`;
  const log = `${dir}/.stack-build.log`;
  return wrap(
    ctx,
    [
      // The app's group (which nginx joins) reads the release, to serve static files; others nothing.
      'umask 027',
      `step ${q(`unpack release ${release.id}`)}`,
      `rm -rf ${q(dir)} && install -d -m 0750 -o ${q(layout.app)} -g ${q(layout.app)} ${q(dir)} || fail 'create release directory'`,
      `tar -xzf - -C ${q(dir)} --no-same-owner || fail 'unpack release'`,
      `chown -R ${q(`${layout.app}:${layout.app}`)} ${q(dir)} && chmod -R u+rwX,g+rX,g-w,o-rwx ${q(dir)}`,
      `step ${q('create virtualenv')}`,
      `${asApp('python3', '-m', 'venv', '--system-site-packages', `${dir}/.venv`)} >${q(log)} 2>&1 || { tail -n 25 ${q(log)} >&2; fail 'create virtualenv'; }`,
      ...(release.requirements
        ? [
            `step ${q(`pip install -r ${release.requirements}`)}`,
            `${asApp(`${dir}/.venv/bin/python`, '-m', 'pip', 'install', '--no-input', '--disable-pip-version-check', '-r', `${dir}/${release.requirements}`)} >>${q(log)} 2>&1 || { tail -n 40 ${q(log)} >&2; fail 'pip install'; }`,
          ]
        : []),
      `step ${q('compile Python files')}`,
      `${asApp(`${dir}/.venv/bin/python`, '-m', 'compileall', '-q', '-x', '/\\.venv/', dir)} >>${q(log)} 2>&1 || true`,
      writeManifest(dir, layout.app, manifestJson(release, info)),
    ],
    { releaseLock: false },
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

/**
 * Defines `health_ok`, which tries the health path through nginx and leaves the code in $code.
 * Behind socket activation a crashing app makes requests wait rather than fail, so the check also
 * stops as soon as systemd has to restart the app (or gives up on it): it will not get healthy.
 */
function healthFunction(h: HealthCheck): string {
  const url = h.https ? `https://${h.host}${h.path}` : `http://${h.host}${h.path}`;
  const port = h.https ? 443 : 80;
  const restarts = `systemctl show -p NRestarts --value ${q(h.app)}`;
  return [
    'health_ok() {',
    `  code=000; i=0; r0=$(${restarts})`,
    `  while [ $i -lt ${h.retries} ]; do`,
    `    code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time ${h.timeout} --resolve ${q(`${h.host}:${port}:127.0.0.1`)} ${q(url)})`,
    `    [ "$code" = ${h.status} ] && return 0`,
    `    if [ "$(${restarts})" != "$r0" ] || systemctl is-failed --quiet ${q(h.app)}; then code="$code (the app crashed; systemd had to restart it)"; return 1; fi`,
    '    i=$((i+1)); sleep 0.5',
    '  done',
    '  return 1',
    '}',
  ].join('\n');
}

/** The health step; `onFailure` is `fail`, or the rollback of a script that has one. */
function healthLines(h: HealthCheck, onFailure: string, defineFunction = true): string[] {
  return [
    ...(defineFunction ? [healthFunction(h)] : []),
    `step ${q(`health check ${h.path}`)}`,
    `if health_ok; then printf '@@health %s\\n' "$code"; else printf '@@health %s\\n' "$code"; echo "GET ${h.path} through nginx answered $code, not ${h.status}; last lines of the app's journal:" >&2; journalctl -u ${q(h.app)} -n 15 --no-pager -o cat >&2; ${onFailure} 'health check'; fi`,
  ];
}

/** A script of only the health check (a deploy with nothing to change still checks the site). */
export function healthOnlyScript(health: HealthCheck, ctx: RunContext): string {
  return wrap({ ...ctx, audit: null }, healthLines(health, 'fail'), { releaseLock: true });
}

/** The undo log: every change remembered so that all of them can be put back. */
const UNDO_FUNCTIONS = [
  'UNDO=$(mktemp)',
  // Lines are "path backup" (restore the backup) or "path -" (remove what we created).
  `remember() { if [ -e "$1" ] || [ -L "$1" ]; then cp -a "$1" "$1.stack-bak.$$" && printf '%s %s\\n' "$1" "$1.stack-bak.$$" >> "$UNDO"; else printf '%s -\\n' "$1" >> "$UNDO"; fi; }`,
  `undo() { tac "$UNDO" | while read -r p b; do if [ "$b" = - ]; then rm -f "$p"; else mv -fT "$b" "$p"; fi; done; : > "$UNDO"; }`,
  `commit() { while read -r p b; do [ "$b" = - ] || rm -f "$b"; done < "$UNDO"; rm -f "$UNDO"; }`,
  // A release that failed to go live is removed: it was never live and must not be rolled back to.
  `drop_new_release() { if [ -n "\${NEWREL:-}" ]; then rm -rf "$NEWREL"; fi; }`,
  `abort() { undo; rm -f "$UNDO"; drop_new_release; audit failed "$1"; fail "$1"; }`,
];

export interface Hooks {
  before_activate: string[];
  after_activate: string[];
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
    const tag = `STACK_FILE_${++n}_${Math.random().toString(36).slice(2, 10).toUpperCase()}`;
    lines.push(`step ${q(`${change.action === 'attributes' ? 'set mode/owner of' : change.action === 'create' ? 'create' : 'update'} ${f.path}`)}`);
    // mkdir -p leaves an existing parent's mode alone (install -d would reset it to 0755).
    lines.push(`mkdir -p ${q(f.path.slice(0, f.path.lastIndexOf('/')) || '/')}`);
    if (change.action === 'attributes') {
      lines.push(`remember ${q(f.path)}`, `chmod ${f.mode} ${q(f.path)} && chown ${q(`${f.owner}:${f.group}`)} ${q(f.path)} || abort ${q(`set attributes of ${f.path}`)}`);
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
  if (plan.release) {
    lines.push(
      `step ${q(`switch current to release ${plan.release.id}`)}`,
      `[ -f ${q(`${rel}/.stack-release.json`)} ] || abort 'release is incomplete'`,
      `remember ${q(layout.current)}`,
      // A relative link keeps working if /srv is ever mounted elsewhere; mv -T makes it atomic.
      `ln -sfn ${q(`releases/${plan.release.id}`)} ${q(`${layout.current}.stack-new.$$`)} && chown -h ${q(`${layout.app}:${layout.app}`)} ${q(`${layout.current}.stack-new.$$`)} && mv -fT ${q(`${layout.current}.stack-new.$$`)} ${q(layout.current)} || abort 'switch current'`,
    );
  }
  if (validatesNginx) {
    lines.push(`step ${q('validate the nginx configuration (nginx -t)')}`, `nginx -t -q 2>"$UNDO.nginx" || { cat "$UNDO.nginx" >&2; rm -f "$UNDO.nginx"; abort 'nginx -t'; }`, 'rm -f "$UNDO.nginx"');
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
      ...o.managedFiles.map((p) => `if [ -e ${q(p)} ]; then mkdir -p ${q(`${rel}/.stack/config${p.slice(0, p.lastIndexOf('/'))}`)} && cp -a ${q(p)} ${q(`${rel}/.stack/config${p}`)}; fi`),
      ...plan.allLinks.map((l) => `printf '%s %s\\n' ${q(l.path)} ${q(l.target)} >> ${q(`${rel}/.stack/links`)}`),
    );
    for (const hook of o.hooks.before_activate) lines.push(...hookLines(hook, rel, layout, 'abort'));
  }

  // From here on services are touched: a failure puts the previous state back and reloads it.
  const restarts = plan.handlers.some((h) => h.name === 'restart-app');
  if (touches) {
    lines.push(
      ...(o.health ? [healthFunction(o.health)] : []),
      'rollback_live() {',
      `  echo "rolling back to the previous release and its configuration" >&2`,
      '  undo; rm -f "$UNDO"; drop_new_release',
      '  systemctl daemon-reload',
      ...(restarts ? [`  systemctl restart ${q(layout.unit)} >/dev/null 2>&1 || true`] : []),
      '  reload_nginx || true',
      ...(o.health ? [`  if health_ok; then printf '@@rolledback %s\\n' "$code"; else printf '@@rolledback %s\\n' "$code"; fi`] : []),
      '  audit failed "$1"',
      '  fail "$1"',
      '}',
    );
  }
  const onFailure = touches ? 'rollback_live' : 'fail';
  for (const s of plan.enable) lines.push(`step ${q(`enable ${s}`)}`, `systemctl enable --quiet ${q(s)} || ${onFailure} ${q(`enable ${s}`)}`);
  for (const h of plan.handlers) {
    lines.push(
      `step ${q(h.description)}`,
      `${h.command} 2>/tmp/stack-handler.$$ || { cat /tmp/stack-handler.$$ >&2; rm -f /tmp/stack-handler.$$; ${h.name === 'restart-app' ? `journalctl -u ${q(layout.unit)} -n 15 --no-pager -o cat >&2; ` : ''}${onFailure} ${q(h.description)}; }`,
      'rm -f /tmp/stack-handler.$$',
    );
  }
  for (const s of plan.start) lines.push(`step ${q(`start ${s}`)}`, `systemctl start ${q(s)} || { journalctl -u ${q(s)} -n 15 --no-pager -o cat >&2; ${onFailure} ${q(`start ${s}`)}; }`);
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
    for (const hook of o.hooks.after_activate) lines.push(...hookLines(hook, layout.current, layout, 'after_failed'));
  }
  lines.push(`audit ok ''`);
  return wrap(ctx, [`after_failed() { audit failed "$1"; fail "$1 (the new release stays live)"; }`, ...lines], { releaseLock: true, release: plan.release?.id });
}

/** A hook runs in the release, as the app's user, with the app's environment and virtualenv. */
function hookLines(hook: string, dir: string, layout: Layout, onFailure: string): string[] {
  const inner = `set -a; . ${q(layout.env_file)}; set +a; cd ${q(dir)} && PATH=${q(`${dir}/.venv/bin`)}:$PATH; ${hook}`;
  return [
    `step ${q(`hook: ${hook}`)}`,
    `runuser -u ${q(layout.app)} -- sh -c ${q(inner)} >/tmp/stack-hook.$$ 2>&1 < /dev/null || { tail -n 40 /tmp/stack-hook.$$ >&2; rm -f /tmp/stack-hook.$$; ${onFailure} ${q(`hook ${hook}`)}; }`,
    'rm -f /tmp/stack-hook.$$',
  ];
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
    `step ${q(`restore the configuration of release ${target}`)}`,
    `cd ${q(`${rel}/.stack/config`)} && find . -type f | sed 's|^\\.||' > /tmp/stack-files.$$; cd /`,
    'while read -r p; do',
    `  src=${q(`${rel}/.stack/config`)}"$p"`,
    '  if ! cmp -s "$src" "$p" || [ "$(stat -c %a:%U:%G "$src")" != "$(stat -c %a:%U:%G "$p" 2>/dev/null)" ]; then',
    '    mkdir -p "$(dirname "$p")"; remember "$p"',
    '    cp -a "$src" "$p.stack-new.$$" && mv -f "$p.stack-new.$$" "$p" || { rm -f /tmp/stack-files.$$; abort "restore $p"; }',
    '    printf \'@@step restored %s\\n\' "$p"',
    '  fi',
    'done < /tmp/stack-files.$$',
    'rm -f /tmp/stack-files.$$',
    `while read -r l t; do if [ "$(readlink "$l")" != "$t" ]; then remember "$l"; ln -sfn "$t" "$l.stack-new.$$" && mv -fT "$l.stack-new.$$" "$l" || abort "link $l"; fi; done < ${q(`${rel}/.stack/links`)}`,
    `step ${q(`switch current to release ${target}`)}`,
    `remember ${q(layout.current)}`,
    `ln -sfn ${q(`releases/${target}`)} ${q(`${layout.current}.stack-new.$$`)} && chown -h ${q(`${layout.app}:${layout.app}`)} ${q(`${layout.current}.stack-new.$$`)} && mv -fT ${q(`${layout.current}.stack-new.$$`)} ${q(layout.current)} || abort 'switch current'`,
    `step ${q('validate the nginx configuration (nginx -t)')}`,
    `nginx -t -q 2>"$UNDO.nginx" || { cat "$UNDO.nginx" >&2; rm -f "$UNDO.nginx"; abort 'nginx -t'; }`,
    'rm -f "$UNDO.nginx"',
    ...(health ? [healthFunction(health)] : []),
    'rollback_live() {',
    '  echo "putting back what was live before the rollback" >&2',
    '  undo; rm -f "$UNDO"; systemctl daemon-reload; systemctl restart ' + q(layout.unit) + ' >/dev/null 2>&1 || true; reload_nginx || true',
    '  audit failed "$1"; fail "$1"',
    '}',
    `step ${q('reload systemd units')}`,
    'systemctl daemon-reload',
    `step ${q(`restart ${layout.app}`)}`,
    `systemctl restart ${q(layout.unit)} 2>/tmp/stack-handler.$$ || { cat /tmp/stack-handler.$$ >&2; journalctl -u ${q(layout.unit)} -n 15 --no-pager -o cat >&2; rollback_live 'restart'; }`,
    `step ${q('reload nginx')}`,
    'reload_nginx || rollback_live "reload nginx"',
    ...(health ? healthLines(health, 'rollback_live', false) : []),
    'commit',
    "audit ok ''",
  ];
  return wrap(ctx, lines, { releaseLock: true, release: target });
}

function chunk(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length > 0 ? out : [''];
}
