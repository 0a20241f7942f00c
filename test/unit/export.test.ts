/**
 * `stack export ansible`, without a server: the files it writes parse, hold no secret, carry
 * `serial` from `rolling:`, pin the inventory's host keys, and deliver each host exactly the
 * managed files stack renders for it (the templates filled as Ansible would fill them).
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
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
function project(extra: { rolling?: unknown; database?: boolean; hooks?: boolean } = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-export-unit-'));
  cpSync(path.join(ROOT, 'example'), path.join(dir, 'example'), { recursive: true });
  writeFileSync(path.join(dir, 'id'), 'not a real key\n');
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
  static: { url: /static/, path: static }
  health: /health
  env: { GREETING: Hello }
  secrets: [SECRET_KEY]
gateway: { server: gunicorn, workers: auto }
${hooks}${extra.database ? 'database: { engine: postgresql }\n' : ''}environments:
  prod:
    domains: [hello.test]
    ssl: self-signed
${rolling}    hosts:
      - { address: 10.0.0.5, user: deploy, host_key: "${KEY_A}", identity_file: id, roles: [web, app, db, worker] }
      - { address: 10.0.0.6, user: deploy, port: 2222, host_key: "${KEY_B}", identity_file: id, cpus: 4, roles: [web, app] }
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

  it('refuses what it cannot export yet, and a folder that is not empty', async () => {
    await expect(exported(project({ database: true }))).rejects.toThrow(/database:.*does not export/);
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
