/**
 * `stack export ansible`, without a server: the files it writes parse, hold no secret, carry
 * `serial` from `rolling:`, pin the inventory's host keys, and deliver each host exactly the
 * managed files stack renders for it (the templates filled as Ansible would fill them).
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { stackInProcess } from '../helpers/in-process.js';
import { loadInventory } from '../../src/inventory/load.js';
import { exportAnsible, type ExportFile, shellFile } from '../../src/export/ansible.js';
import { DELIMITERS } from '../../src/export/managed-files.js';
import { identityFiles, packRelease, renderHosts } from '../../src/commands/export.js';
import { buildDesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { Secret } from '../../src/secrets/secret.js';

const SECRET = 'un1t-$ecret"`\\value';
const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7m0Qp1n3bqJ4vO1yWm1Ew9kq2y9m4H8l3x0w7Q2b1a';
const KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK2m0Qp1n3bqJ4vO1yWm1Ew9kq2y9m4H8l3x0w7Q2b1b';

/** The example project with two hosts: one with a fixed CPU count, one whose count the server tells. */
function project(extra: { rolling?: unknown; database?: boolean; hooks?: boolean; roles?: boolean; indexUrl?: string } = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-export-unit-'));
  cpSync(path.join(ROOT, 'example'), path.join(dir, 'example'), { recursive: true });
  writeFileSync(path.join(dir, 'id'), 'not a real key\n');
  const roles = (r: string) => (extra.roles ? `, roles: [${r}]` : '');
  const rolling = extra.rolling ? `    rolling: ${JSON.stringify(extra.rolling)}\n` : '';
  // Hooks with quotes, a Jinja-looking brace and a shell length (which opens a Jinja comment).
  const hooks = extra.hooks
    ? `hooks:
  build: ['echo "{{ built }}" > built.txt']
  before_activate: ["test \${#HOME} -gt 0 && echo 'ok'"]
  after_activate: [echo done]
`
    : '';
  writeFileSync(
    path.join(dir, 'inventory.yml'),
    `app:
  name: hello
  source: example
  wsgi: hello.wsgi:application
  requirements: requirements.txt
${extra.indexUrl ? `  index_url: ${extra.indexUrl}\n` : ''}  static: { url: /static/, path: static }
  health: /health
  env: { GREETING: Hello }
  secrets: [SECRET_KEY]
gateway: { server: gunicorn, workers: auto }
${hooks}${extra.database ? 'database: { engine: postgresql }\n' : ''}environments:
  prod:
    domains: [hello.test]
    ssl: self-signed
${rolling}    hosts:
      - { address: 10.0.0.5, user: deploy, host_key: "${KEY_A}", identity_file: id${roles('web, app, db, worker')} }
      - { address: 10.0.0.6, user: deploy, port: 2222, host_key: "${KEY_B}", identity_file: id, cpus: 4${roles('web, app')} }
`,
  );
  mkdirSync(path.join(dir, '.stack'));
  writeFileSync(path.join(dir, '.stack/secrets.prod'), `SECRET_KEY=${SECRET}\n`, { mode: 0o600 });
  return dir;
}

async function exported(dir: string): Promise<ExportFile[]> {
  const inventory = await loadInventory(path.join(dir, 'inventory.yml'));
  const env = inventory.environments.prod!;
  return exportAnsible({
    env,
    hosts: await renderHosts(inventory, env),
    identityFiles: identityFiles(inventory, env),
    release: await packRelease(inventory, env, path.join(dir, 'inventory.yml')),
  });
}

const text = (files: ExportFile[], p: string): string => {
  const f = files.find((x) => x.path === p);
  if (!f) throw new Error(`no ${p} in the export`);
  return f.content.toString();
};

/**
 * What Ansible's template module makes of a template here: the server's CPU count filled in, and
 * each secret's expression evaluated as Jinja would (its chain of replace() on the controller's
 * value), read from the template itself rather than trusted.
 */
function fill(template: string, cpus: number, secret: string): string {
  const { variable_start_string: open, variable_end_string: close } = DELIMITERS;
  const jinjaString = (s: string) => s.replace(/\\(.)/g, '$1');
  const out = template.replaceAll(`${open} stack_cpus * 2 + 1 ${close}`, String(cpus * 2 + 1)).replaceAll(`${open} stack_cpus ${close}`, String(cpus));
  const filled = out.replace(
    /\[\[stack: lookup\('env', 'SECRET_KEY'\)((?: \| replace\('(?:\\.|[^'])*', '(?:\\.|[^'])*'\))*) :stack\]\]/g,
    (_m, chain: string) => {
      let value = secret;
      for (const [, from, to] of chain.matchAll(/replace\('((?:\\.|[^'])*)', '((?:\\.|[^'])*)'\)/g))
        value = value.replaceAll(jinjaString(from!), jinjaString(to!));
      return value;
    },
  );
  expect(filled).not.toContain(open);
  return filled;
}

describe('stack export ansible', () => {
  it('writes YAML that parses, the playbook, inventory, variables and role', async () => {
    const files = await exported(project());
    for (const f of files.filter((x) => x.path.endsWith('.yml'))) expect(() => parse(f.content.toString()), f.path).not.toThrow();
    const paths = files.map((f) => f.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'site.yml',
        'inventory.yml',
        'known_hosts',
        'group_vars/stack_prod.yml',
        'roles/stack/tasks/main.yml',
        'roles/stack/handlers/main.yml',
      ]),
    );
    const [play] = parse(text(files, 'site.yml'));
    expect(play).toMatchObject({ hosts: 'stack_prod', become: true, roles: ['stack'] });
    expect(play.serial).toBeUndefined();
    const handlers = parse(text(files, 'roles/stack/handlers/main.yml')).map((h: { name: string }) => h.name);
    expect(handlers).toEqual(expect.arrayContaining(['daemon-reload', 'restart-app', 'reload-nginx']));
    // systemd before the app, the app before nginx, as stack runs them.
    expect(handlers.indexOf('daemon-reload')).toBeLessThan(handlers.indexOf('restart-app'));
    const activate = text(files, 'roles/stack/tasks/activate.yml');
    expect(activate).toMatch(/nginx -t/);
    expect(parse(activate).find((t: { block?: unknown[] }) => t.block)).toBeTruthy();
  });

  it('takes serial from rolling.batch, a number or a share', async () => {
    for (const batch of [1, '25%']) {
      const [play] = parse(text(await exported(project({ rolling: { batch } })), 'site.yml'));
      expect(play.serial).toBe(batch);
      expect(play.max_fail_percentage).toBe(0);
    }
  });

  it('pins the host keys as a known_hosts file the inventory points ssh at', async () => {
    const files = await exported(project());
    expect(text(files, 'known_hosts')).toBe(`10.0.0.5 ${KEY_A}\n[10.0.0.6]:2222 ${KEY_B}\n`);
    const inv = parse(text(files, 'inventory.yml')).all.children.stack_prod;
    expect(inv.vars.ansible_ssh_common_args).toMatch(/UserKnownHostsFile=\{\{ inventory_dir \}\}\/known_hosts .*StrictHostKeyChecking=yes/);
    expect(inv.hosts['10.0.0.6']).toMatchObject({ ansible_port: 2222, ansible_user: 'deploy' });
    expect(inv.hosts['10.0.0.5'].ansible_ssh_private_key_file).toMatch(/\/id$/);
  });

  it('writes no secret value anywhere, not even in the packed release', async () => {
    const dir = project();
    const out = path.join(dir, 'out');
    const r = await stackInProcess(['-i', path.join(dir, 'inventory.yml'), 'export', 'ansible', 'prod', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const grep = spawnSync('sh', ['-c', 'grep -rlF -e "$S" . ; tar -xzOf roles/stack/files/release.tar.gz | grep -cF -e "$S"'], {
      cwd: out,
      env: { ...process.env, S: SECRET },
      encoding: 'utf8',
    });
    expect(grep.stdout.trim()).toBe('0');
    expect(spawnSync('grep', ['-rl', "lookup('env', 'SECRET_KEY')", out], { encoding: 'utf8' }).stdout).toMatch(/env\.j2/);
  });

  it('delivers each host exactly the files stack renders for it, with their owners and modes', async () => {
    const dir = project();
    const files = await exported(dir);
    const inventory = await loadInventory(path.join(dir, 'inventory.yml'));
    const env = inventory.environments.prod!;
    const engine = new TemplateEngine(path.resolve(inventory.dir, inventory.data.templates), inventory.dir);
    // biome-ignore lint/suspicious/noExplicitAny: tasks are free-form YAML, read as Ansible reads them
    const tasks = parse(text(files, 'roles/stack/tasks/files.yml')) as Record<string, any>[];
    const cpusOnServer = 3;
    for (const host of env.hosts) {
      // What stack deploys: the server's facts (Debian 12's nginx, its CPUs unless pinned) and the real secret.
      const desired = await buildDesiredState(env, host, {
        engine,
        facts: { nginxVersion: [1, 22, 1], cpus: host.cpus ?? cpusOnServer },
        secrets: new Map([['SECRET_KEY', new Secret('SECRET_KEY', SECRET)]]),
      });
      for (const f of desired.files) {
        const task = tasks.find((t) => t.name === f.path && (!t.when || t.when.includes(`"${host.address}"`)));
        expect(task, `${host.address}:${f.path}`).toBeTruthy();
        const module = task!['ansible.builtin.copy'] ?? task!['ansible.builtin.template'];
        expect({ owner: module.owner, group: module.group, mode: Number.parseInt(module.mode, 8) }).toEqual({
          owner: f.owner,
          group: f.group,
          mode: Number.parseInt(f.mode, 8),
        });
        const want = typeof f.content === 'string' ? f.content : f.content.reveal();
        const src = String(module.src).replace(/^\{\{ '[^']*' if .* else '([^']*)' \}\}$/, '$1');
        const got = task!['ansible.builtin.template']
          ? fill(text(files, `roles/stack/templates/${src}`), host.cpus ?? cpusOnServer, SECRET)
          : text(files, `roles/stack/files/${src}`);
        expect(got, `${host.address}:${f.path}`).toBe(want);
      }
    }
  });

  it('runs its shell as calls of the functions in one shipped file (src/remote/sh), each call parsing under sh', async () => {
    const files = await exported(project({ hooks: true }));
    const library = text(files, 'roles/stack/files/stack.sh');
    expect(library).toBe(shellFile());
    expect(library).toContain(readFileSync(path.join(ROOT, 'src/remote/sh/ansible.sh'), 'utf8'));
    // What lookup() returns is not templated again; the file does not rely on it.
    expect(library).not.toMatch(/\{[{%#]/);
    const defined = new Set([...library.matchAll(/^(\w+)\(\) \{$/gm)].map((m) => m[1]));
    // biome-ignore lint/suspicious/noExplicitAny: tasks are free-form YAML, read as Ansible reads them
    const shellTasks = (tasks: Record<string, any>[]): Record<string, any>[] =>
      tasks.flatMap((t) => (t.block ? [...shellTasks(t.block), ...shellTasks(t.rescue ?? [])] : t['ansible.builtin.shell'] ? [t] : []));
    const tasks = ['provision', 'release', 'activate'].flatMap((f) => shellTasks(parse(text(files, `roles/stack/tasks/${f}.yml`))));
    expect(tasks.length).toBeGreaterThanOrEqual(14);
    const head = "{{ lookup('file', 'stack.sh') }}\n";
    for (const t of tasks) {
      const cmd: string = t['ansible.builtin.shell'].cmd;
      expect(cmd.startsWith(head), t.name).toBe(true);
      // The call, as the server's shell gets it: Jinja's raw markers gone (they guard hooks' braces).
      const call = cmd.slice(head.length).replace(/^\{% raw %\}([\s\S]*)\{% endraw %\}$/, '$1');
      expect(call, t.name).not.toMatch(/\{%/);
      expect(defined.has(call.split(' ')[0]!), `${t.name}: ${call}`).toBe(true);
      const r = spawnSync('dash', ['-n'], { input: `${library}\n${call}\n`, encoding: 'utf8' });
      expect(`${r.stderr}exit ${r.status}`, t.name).toBe('exit 0');
    }
    const release = text(files, 'roles/stack/tasks/release.yml');
    expect(release).toContain(`{% raw %}task_sandboxed hello-build "$REL" 900 /etc/hello/env 'echo "{{ built }}" > built.txt' "$REL"{% endraw %}`);
    const activate = text(files, 'roles/stack/tasks/activate.yml');
    expect(activate).toContain(
      `{% raw %}task_sandboxed hello "$REL" 900 /etc/hello/env 'test \${#HOME} -gt 0 && echo '\\''ok'\\''' /srv/hello/shared{% endraw %}`,
    );
  });

  it("keeps the package index's URL off every command line: from STACK_INDEX_URL or app.index_url, to pip on stdin", async () => {
    const url = 'https://pypi.example.com/simple/';
    for (const indexUrl of [url, undefined]) {
      const dir = project({ indexUrl });
      writeFileSync(path.join(dir, 'example/requirements.txt'), 'stackhello==1.0\n');
      const files = await exported(dir);
      const release = text(files, 'roles/stack/tasks/release.yml');
      // biome-ignore lint/suspicious/noExplicitAny: tasks are free-form YAML, read as Ansible reads them
      const tasks = (parse(release) as Record<string, any>[]).flatMap((t) => t.block ?? [t]);
      // Neither in a command (ps, systemctl show, Ansible's logged cmd) nor in a task's
      // environment (Ansible puts it on the command line that starts the module).
      for (const t of tasks) {
        expect(JSON.stringify([t['ansible.builtin.shell'] ?? null, t.environment ?? null]), t.name).not.toMatch(/example\.com|index-url|STACK_INDEX_URL/);
      }
      const copy = tasks.find((t) => t['ansible.builtin.copy']?.content?.includes('STACK_INDEX_URL'));
      expect(copy, 'the task that hands the URL to the server').toBeTruthy();
      expect(copy!['ansible.builtin.copy']).toMatchObject({
        content: `{{ lookup('env', 'STACK_INDEX_URL')${indexUrl ? ` | default('${url}', true)` : ''} }}\n`,
        owner: 'root',
        mode: '0600',
      });
      expect(copy).toMatchObject({ no_log: true, diff: false });
      const venv = tasks.find((t) => String(t['ansible.builtin.shell']?.cmd).includes('\ntask_venv '))!;
      expect(venv['ansible.builtin.shell'].cmd).toMatch(/task_venv "\$REL" "\$VENV_KEY" \/srv\/hello\/venvs hello-build '-r requirements.txt' "\$INDEX_FILE"$/);
      expect(venv.environment.INDEX_FILE).toBe(copy!['ansible.builtin.copy'].dest);
      expect(tasks.indexOf(copy!)).toBeLessThan(tasks.indexOf(venv));
    }
  });

  it("task_venv gives pip the index's URL on stdin, as PIP_INDEX_URL, and removes the file", () => {
    const root = mkdtempSync(path.join(tmpdir(), 'stack-export-venv-'));
    const rel = path.join(root, 'releases/R1');
    mkdirSync(rel, { recursive: true });
    mkdirSync(path.join(root, 'venvs'));
    const index = path.join(root, 'releases/.R1.index');
    const url = 'https://user:t0ken@pypi.example.com/simple/';
    writeFileSync(index, `${url}\n`, { mode: 0o600 });
    const log = path.join(root, 'log');
    // No root, no systemd: the owners are left alone, and the sandbox is a plain sh that
    // records its arguments; the virtualenv's python records what pip would get.
    const stubs = `
chown() { :; }
pkill() { :; }
install() { mkdir -p "$8/bin" && printf '#!/bin/sh\\necho "pip: PIP_INDEX_URL=\${PIP_INDEX_URL-unset} args: $*" >>"$LOG"\\n' >"$8/bin/python" && chmod +x "$8/bin/python"; }
task_sandboxed() {
  printf 'sandbox: %s\\n' "$*" >>"$LOG"
  case $5 in *'pip install'*) (cd "$2" && sh -c "$5") ;; *) : ;; esac
}
`;
    const r = spawnSync('dash', ['-c', `${shellFile()}\n${stubs}\ntask_venv "$REL" k1 "$VENVS" hello-build '-r requirements.txt' "$INDEX"`], {
      // In the scratch folder: nothing a slip in the stubs writes lands in the project.
      cwd: root,
      env: { PATH: process.env.PATH, LOG: log, REL: rel, VENVS: path.join(root, 'venvs'), INDEX: index },
      encoding: 'utf8',
    });
    expect(`${r.stderr}exit ${r.status}`).toBe('exit 0');
    const lines = readFileSync(log, 'utf8');
    expect(lines).toContain(`pip: PIP_INDEX_URL=${url} args: -m pip install --no-input --no-cache-dir --disable-pip-version-check -r requirements.txt`);
    // The sandboxes' command lines (systemd-run's, shown by ps and systemctl show) lack it.
    expect(
      lines
        .split('\n')
        .filter((l) => l.startsWith('sandbox:'))
        .join('\n'),
    ).not.toContain('t0ken');
    expect(existsSync(index)).toBe(false);
  });

  it('task_seal refuses a static folder that is a link out of the release, and opens a real one', () => {
    const stubs = 'chown() { :; }\npkill() { :; }\n';
    // The app's group: one this user may give its own files (find runs the real chgrp).
    const group = spawnSync('id', ['-gn'], { encoding: 'utf8' }).stdout.trim();
    const seal = (rel: string) =>
      spawnSync('dash', ['-c', `${shellFile()}\n${stubs}\ntask_seal "$REL" hello-build "$GROUP" static`], {
        env: { PATH: process.env.PATH, REL: rel, GROUP: group },
        encoding: 'utf8',
      });
    const root = mkdtempSync(path.join(tmpdir(), 'stack-export-seal-'));
    // A build hook made static a link to a folder elsewhere: root must not open it to everyone.
    const elsewhere = path.join(root, 'elsewhere');
    mkdirSync(path.join(elsewhere, 'inner'), { recursive: true, mode: 0o700 });
    writeFileSync(path.join(elsewhere, 'inner/secret.txt'), 'x', { mode: 0o600 });
    const bad = path.join(root, 'bad');
    mkdirSync(bad, { mode: 0o750 });
    symlinkSync(elsewhere, path.join(bad, 'static'));
    const refused = seal(bad);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toMatch(/static.*outside the release/);
    expect(statSync(path.join(elsewhere, 'inner')).mode & 0o777).toBe(0o700);
    expect(statSync(elsewhere).mode & 0o777).toBe(0o700);
    const good = path.join(root, 'good');
    mkdirSync(path.join(good, 'static/css'), { recursive: true, mode: 0o750 });
    writeFileSync(path.join(good, 'static/css/site.css'), 'x', { mode: 0o644 });
    const sealed = seal(good);
    expect(`${sealed.stderr}exit ${sealed.status}`).toBe('exit 0');
    expect(statSync(path.join(good, 'static/css')).mode & 0o001).toBe(0o001);
    expect(statSync(path.join(good, 'static/css/site.css')).mode & 0o004).toBe(0o004);
  });

  it('refuses what it cannot export yet, and a folder that is not empty', async () => {
    await expect(exported(project({ database: true }))).rejects.toThrow(/database:.*does not export/);
    await expect(exported(project({ roles: true }))).rejects.toThrow(/roles:.*does not export yet/);
    const dir = project();
    const out = path.join(dir, 'taken');
    mkdirSync(out);
    writeFileSync(path.join(out, 'mine.yml'), 'keep me\n');
    const r = await stackInProcess(['-i', path.join(dir, 'inventory.yml'), 'export', 'ansible', 'prod', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not empty.*\nhint: .*--force/);
    expect(readdirSync(out)).toEqual(['mine.yml']);
    const forced = await stackInProcess(['-i', path.join(dir, 'inventory.yml'), 'export', 'ansible', 'prod', '--out', out, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(readdirSync(out)).toContain('mine.yml');
  });
});
