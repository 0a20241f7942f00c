/**
 * The shell scripts that carry out a plan on the server, built as values (pure). Each runs as
 * root in ONE round trip, with the script on stdin (never on the command line, where other users
 * could read it). Lines starting with `@@step` report progress; a failing step prints
 * `@@fail STEP` and exits 1. Secret values are revealed here and nowhere else: inside base64
 * heredocs of the activation script.
 */
import { shCommand, shQuote as q } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import type { Plan, ReleasePlan } from './../plan/plan.js';

const PRELUDE = [
  'set -u',
  'umask 077',
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

/** Packages, users, group memberships, directories, a self-signed certificate. */
export function provisionScript(plan: Plan, sshPort?: number): string | null {
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
  if (lines.length === 0) return null;
  return `${PRELUDE}\n${lines.join('\n')}\n`;
}

/**
 * Unpacks the release from the tarball on stdin into releases/<id>, as the app's user, with its
 * own virtualenv. The manifest is written last: a release without one is incomplete and never
 * goes live. This one command carries no secret, so it may be a command line.
 */
export function releaseScript(release: ReleasePlan, layout: Layout, by: string): string {
  const dir = `${layout.releases}/${release.id}`;
  const manifest = JSON.stringify({ id: release.id, source_hash: release.sourceHash, created: new Date().toISOString(), by });
  const asApp = (...words: string[]) => `runuser -u ${q(layout.app)} -- ${shCommand(...words)}`;
  const log = `${dir}/.stack-build.log`;
  return [
    PRELUDE,
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
    `printf '%s\\n' ${q(manifest)} > ${q(`${dir}/.stack-release.json.new`)} && chown ${q(`${layout.app}:${layout.app}`)} ${q(`${dir}/.stack-release.json.new`)} && chmod 0640 ${q(`${dir}/.stack-release.json.new`)} && mv -f ${q(`${dir}/.stack-release.json.new`)} ${q(`${dir}/.stack-release.json`)} || fail 'write manifest'`,
    '',
  ].join('\n');
}

export interface HealthCheck {
  path: string;
  host: string;
  https: boolean;
  app: string;
  /** seconds to keep trying */
  timeout: number;
}

export function healthScript(health: HealthCheck): string {
  const url = health.https ? `https://${health.host}${health.path}` : `http://${health.host}${health.path}`;
  const port = health.https ? 443 : 80;
  const tries = Math.max(1, Math.round(health.timeout * 2));
  return [
    `step ${q(`health check ${health.path}`)}`,
    'code=000; i=0',
    `while [ $i -lt ${tries} ]; do`,
    `  code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time 5 --resolve ${q(`${health.host}:${port}:127.0.0.1`)} ${q(url)})`,
    '  [ "$code" = 200 ] && break',
    '  i=$((i+1)); sleep 0.5',
    'done',
    `printf '@@health %s\\n' "$code"`,
    `if [ "$code" != 200 ]; then echo "GET ${health.path} through nginx answered $code, not 200; last lines of the app's journal:" >&2; journalctl -u ${q(health.app)} -n 15 --no-pager -o cat >&2; fail 'health check'; fi`,
  ].join('\n');
}

/**
 * Puts the new files, links and release live as one unit: every file is staged next to its
 * target and renamed into place (a reader never sees half a file), the previous state is kept,
 * the whole nginx tree and the unit are validated by nginx -t and systemd-analyze, and on any
 * failure everything is put back before a single service is touched. Only then do the handlers
 * run, each once, and the health check decides.
 */
export function activateScript(
  plan: Plan,
  layout: Layout,
  health: HealthCheck | null,
  extra: { provision?: string | null; noCodeYet?: boolean } = {},
): string {
  const lines: string[] = [PRELUDE];
  if (extra.provision) lines.push(extra.provision.replace(PRELUDE, ''));
  const validatesNginx = plan.files.some((f) => f.file.validate === 'nginx') || plan.links.length > 0 || plan.removes.length > 0;
  const units = plan.files.filter((f) => f.file.validate === 'systemd').map((f) => f.file.path);
  const touches = plan.files.length > 0 || plan.links.length > 0 || plan.removes.length > 0 || plan.release !== null;

  if (touches) {
    lines.push(
      'UNDO=$(mktemp)',
      // Undo log: "path backup" (restore the backup) or "path -" (remove what we created).
      `remember() { if [ -e "$1" ] || [ -L "$1" ]; then cp -a "$1" "$1.stack-bak.$$" && printf '%s %s\\n' "$1" "$1.stack-bak.$$" >> "$UNDO"; else printf '%s -\\n' "$1" >> "$UNDO"; fi; }`,
      `undo() { tac "$UNDO" | while read -r p b; do if [ "$b" = - ]; then rm -f "$p"; else mv -fT "$b" "$p"; fi; done; rm -f "$UNDO"; }`,
      `commit() { while read -r p b; do [ "$b" = - ] || rm -f "$b"; done < "$UNDO"; rm -f "$UNDO"; }`,
      `abort() { undo; fail "$1"; }`,
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
    const target = `${layout.releases}/${plan.release.id}`;
    lines.push(
      `step ${q(`switch current to release ${plan.release.id}`)}`,
      `[ -f ${q(`${target}/.stack-release.json`)} ] || abort 'release is incomplete'`,
      `remember ${q(layout.current)}`,
      // A relative link keeps working if /srv is ever mounted elsewhere; mv -T makes it atomic.
      `ln -sfn ${q(`releases/${plan.release.id}`)} ${q(`${layout.current}.stack-new.$$`)} && chown -h ${q(`${layout.app}:${layout.app}`)} ${q(`${layout.current}.stack-new.$$`)} && mv -fT ${q(`${layout.current}.stack-new.$$`)} ${q(layout.current)} || abort 'switch current'`,
    );
  }
  if (validatesNginx) {
    lines.push(`step ${q('validate the nginx configuration (nginx -t)')}`, `nginx -t -q 2>"$UNDO.nginx" || { cat "$UNDO.nginx" >&2; rm -f "$UNDO.nginx"; abort 'nginx -t'; }`, 'rm -f "$UNDO.nginx"');
  }
  // Before the first release (setup) the unit's interpreter does not exist yet; that one
  // complaint is expected then, and any other still fails the check.
  // systemd-analyze exits 0 on unknown keys and bad values, so anything it prints fails the
  // check. Before the first release (setup) the unit's interpreter does not exist yet: that one
  // complaint is expected then, and any other still fails.
  const complaints = extra.noCodeYet ? `grep -v ${q(`Command ${layout.current}/.* is not executable`)} "$UNDO.unit"` : 'cat "$UNDO.unit"';
  for (const unit of units) {
    lines.push(
      `step ${q(`validate ${unit} (systemd-analyze verify)`)}`,
      `systemd-analyze verify ${q(unit)} >"$UNDO.unit" 2>&1`,
      `if ${complaints} | grep -q .; then cat "$UNDO.unit" >&2; rm -f "$UNDO.unit"; abort ${q(`systemd-analyze verify ${unit}`)}; fi`,
      'rm -f "$UNDO.unit"',
    );
  }
  if (touches) lines.push('commit');
  for (const s of plan.enable) lines.push(`step ${q(`enable ${s}`)}`, `systemctl enable --quiet ${q(s)} || fail ${q(`enable ${s}`)}`);
  for (const h of plan.handlers) {
    lines.push(
      `step ${q(h.description)}`,
      `${h.command} 2>/tmp/stack-handler.$$ || { cat /tmp/stack-handler.$$ >&2; rm -f /tmp/stack-handler.$$; ${h.name === 'restart-app' ? `journalctl -u ${q(layout.unit)} -n 15 --no-pager -o cat >&2; ` : ''}fail ${q(h.description)}; }`,
      'rm -f /tmp/stack-handler.$$',
    );
  }
  for (const s of plan.start) lines.push(`step ${q(`start ${s}`)}`, `systemctl start ${q(s)} || { journalctl -u ${q(s)} -n 15 --no-pager -o cat >&2; fail ${q(`start ${s}`)}; }`);
  if (health) lines.push(healthScript(health));
  return `${lines.join('\n')}\n`;
}

function chunk(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length > 0 ? out : [''];
}

/** A script of only the health check (a deploy with nothing to change still checks the site). */
export function healthOnlyScript(health: HealthCheck): string {
  return `${PRELUDE}\n${healthScript(health)}\n`;
}
