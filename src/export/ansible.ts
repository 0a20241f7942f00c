/**
 * `stack export ansible`: the environment as an Ansible playbook, a role, an inventory and its
 * variables, doing what `stack setup` + `stack deploy` do. Pure: the resolved environment, each
 * host's desired state (the same view models and templates as a deploy) and the packed release
 * in; the files of the export out. Nothing here reads a secret: the env file refers to the
 * controller's environment (`lookup('env', NAME)`).
 *
 * What differs from a deploy by stack is listed in the README ("Moving to Ansible").
 */
import { stringify } from 'yaml';
import { UsageError } from '../errors.js';
import type { Environment } from '../inventory/resolve.js';
import { sslMode } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import type { Handler } from '../state/desired.js';
import type { Layout } from '../views/layout.js';
import { shellLibrary } from '../remote/library.js';
import { shCommand, shQuote as q } from '../remote/quote.js';
import { hooksRun } from '../plan/database.js';
import { hasRoles } from '../views/topology.js';
import { DELIMITERS, type Delivery, type HostRender, type ManagedFile, managedFiles, NGINX_THRESHOLD, secretExpression } from './managed-files.js';

export interface ExportFile {
  /** Relative to the export's folder. */
  path: string;
  content: string | Buffer;
  mode?: number;
}

/** The code as `stack deploy` would ship it now (src/release/source.ts packs it). */
export interface ExportRelease {
  /** gzip'd tar of the shipped files, as packSource makes it. */
  tarball: Buffer;
  sourceHash: string;
  fileList: string[];
  /** venvDigest of the requirements (src/release/venv.ts). */
  venvDigest: string;
  requirements: string | null;
  /** Recorded in the manifest like a deploy's. */
  gitCommit: string | null;
  inventoryHash: string;
  /**
   * app.index_url, when pip installs from another index: the playbook's fallback when the
   * controller's environment has no STACK_INDEX_URL (the secret form, never read by the export).
   */
  indexUrl: string | null;
}

export interface AnsibleExportInput {
  env: Environment;
  hosts: HostRender[];
  /** By host address: the identity file, absolute, when the inventory names one. */
  identityFiles: ReadonlyMap<string, string>;
  release: ExportRelease;
  /** `ssl: { cert, key }`: the key's absolute path on the controller. */
  certificateKey?: string;
}

const ROLE = 'roles/stack';

/**
 * The role's shell (src/remote/sh/ansible.sh, after venv.sh, whose virtualenv key it uses), in
 * roles/stack/files/. Every shell task is this file and one call of one of its functions: the
 * logic lives in a real .sh file that shellcheck and dash check, the tasks hold only the values.
 */
const SHELL_FILE = 'stack.sh';

/** Group names are Python identifiers for Ansible: `prod-eu` becomes `stack_prod_eu`. */
export function groupName(env: string): string {
  return `stack_${env.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

const yaml = (value: unknown): string => stringify(value, { lineWidth: 0, aliasDuplicateObjects: false });

/**
 * A string Ansible must not template: the values in a call (hooks, user commands) and the
 * handlers' commands may hold `{{` or `{#` (`${#var}` would otherwise open a Jinja comment).
 */
function literal(s: string): string {
  return /\{[{%#]/.test(s) ? `{% raw %}${s}{% endraw %}` : s;
}

/** A variable the task's `environment:` sets from Ansible's: `"$NAME"` in a call. */
interface Variable {
  variable: string;
}
const v = (variable: string): Variable => ({ variable });

/**
 * A shell task: the role's shell file, read on the controller (lookup results are not templated
 * again), then the call of FN with ARGS, each quoted by shQuote or a variable of the task's
 * environment. `cmd:` rather than the free form, which Ansible splits into words and searches
 * for `creates=` and the like: the call reaches /bin/sh exactly as written.
 */
function shellTask(fn: string, ...args: (string | Variable)[]): Task {
  const words = args.map((a) => (typeof a === 'string' ? q(a) : `"$${a.variable}"`));
  return { 'ansible.builtin.shell': { cmd: `{{ lookup('file', '${SHELL_FILE}') }}\n${literal([shCommand(fn), ...words].join(' '))}` } };
}

export function exportAnsible(input: AnsibleExportInput): ExportFile[] {
  const { env } = input;
  if (env.database) {
    throw new UsageError(`${env.name} has database:, which stack export ansible does not export yet (PostgreSQL's role, database and pg_hba)`, {
      hint: 'deploy this environment with stack, or export one without database:',
    });
  }
  if (hasRoles(env)) {
    // The role runs nginx, the release, the health gate and the app's restart on every host: a
    // host without web or app (a worker, a database) would fail them, or be given what it must not run.
    throw new UsageError(`${env.name} shares the work by roles: (web, app, worker, db), which stack export ansible does not export yet`, {
      hint: 'deploy this environment with stack, or export one whose hosts have no roles: (each host runs everything)',
    });
  }
  if (sslMode(env.ssl) === 'letsencrypt') {
    throw new UsageError(`${env.name} uses ssl: letsencrypt, which stack export ansible does not export yet (certbot's first certificate)`, {
      hint: 'export with ssl: self-signed or { cert, key }, or deploy this environment with stack',
    });
  }
  for (const h of env.hosts) {
    if (!h.host_key) {
      throw new UsageError(`host ${h.address} of ${env.name} has no pinned host_key; the export writes only pinned keys into its known_hosts`, {
        hint: `run \`stack trust ${env.name}\` first`,
      });
    }
  }
  const { files, roleFiles } = managedFiles(input.hosts, env.app.secrets, input.certificateKey);
  const layout = input.hosts[0]!.base.layout;
  const out: ExportFile[] = [
    { path: 'site.yml', content: sitePlaybook(env) },
    { path: 'inventory.yml', content: inventoryFile(env, input.identityFiles) },
    { path: 'known_hosts', content: knownHosts(env.hosts) },
    { path: `group_vars/${groupName(env.name)}.yml`, content: groupVars(env, layout, input.release) },
    { path: `${ROLE}/tasks/main.yml`, content: header('every step, in the order stack deploy takes them') + yaml(mainTasks()) },
    { path: `${ROLE}/tasks/provision.yml`, content: header('what stack setup does') + yaml(provisionTasks(input)) },
    { path: `${ROLE}/tasks/files.yml`, content: header('the managed files, links and removals, as stack renders them') + yaml(fileTasks(input, files)) },
    {
      path: `${ROLE}/tasks/release.yml`,
      content: header('the release: shipped, built, sealed, made current') + yaml(releaseTasks(env, layout, input.release)),
    },
    {
      path: `${ROLE}/tasks/activate.yml`,
      content: header('validation, handlers, services, the health gate, old releases') + yaml(activateTasks(input, files, layout)),
    },
    { path: `${ROLE}/handlers/main.yml`, content: header('in the order stack runs them: systemd first, the app before nginx') + yaml(handlers(input)) },
    { path: `${ROLE}/files/release.tar.gz`, content: input.release.tarball },
    { path: `${ROLE}/files/release.files`, content: input.release.fileList.map((f) => `${f}\n`).join('') },
    { path: `${ROLE}/files/${SHELL_FILE}`, content: shellFile() },
  ];
  for (const f of roleFiles) out.push({ path: `${ROLE}/${f.path}`, content: f.content });
  return out;
}

/** roles/stack/files/stack.sh: venv.sh's functions, then the role's own. */
export function shellFile(): string {
  return `# Written by \`stack export ansible\`: the shell functions the role's shell tasks call.\n${shellLibrary('venv.sh')}\n${shellLibrary('ansible.sh')}`;
}

function header(what: string): string {
  return `# Written by \`stack export ansible\`: ${what}.\n# Edit freely: stack never writes here again unless asked (--force).\n`;
}

function sitePlaybook(env: Environment): string {
  const play: Record<string, unknown> = {
    name: `${env.app.name} (${env.name}), as stack deploys it`,
    hosts: groupName(env.name),
    become: true,
    // stack gathers only what it needs, in one round trip; so does the role (nginx -v, nproc).
    gather_facts: false,
  };
  if (env.rolling) {
    // Each batch must come through its health gate before the next starts; one failed host stops the rollout.
    play.serial = env.rolling.batch;
    play.max_fail_percentage = 0;
  }
  play.roles = ['stack'];
  return `${header(`the playbook: ansible-playbook -i inventory.yml site.yml`)}${yaml([play])}`;
}

function inventoryFile(env: Environment, identityFiles: ReadonlyMap<string, string>): string {
  const hosts: Record<string, Record<string, unknown>> = {};
  for (const h of env.hosts) {
    const identity = identityFiles.get(h.address);
    hosts[h.address] = {
      ansible_host: h.address,
      ...(h.user ? { ansible_user: h.user } : {}),
      ...(h.port ? { ansible_port: h.port } : {}),
      ...(identity ? { ansible_ssh_private_key_file: identity } : {}),
    };
  }
  const vars = {
    // Only the keys the inventory pinned: a server presenting any other key is refused.
    ansible_ssh_common_args: '-o UserKnownHostsFile={{ inventory_dir }}/known_hosts -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null',
    ansible_python_interpreter: '/usr/bin/python3',
    ansible_pipelining: true,
  };
  return `${header(`the hosts of ${env.name}`)}${yaml({ all: { children: { [groupName(env.name)]: { hosts, vars } } } })}`;
}

function knownHosts(hosts: Host[]): string {
  return hosts.map((h) => `${(h.port ?? 22) === 22 ? h.address : `[${h.address}]:${h.port}`} ${h.host_key}\n`).join('');
}

function groupVars(env: Environment, layout: Layout, release: ExportRelease): string {
  const health = env.app.health_check;
  const vars = {
    stack_app: env.app.name,
    stack_env: env.name,
    stack_keep: env.keep,
    stack_source_hash: release.sourceHash,
    stack_venv_digest: release.venvDigest,
    stack_git_commit: release.gitCommit,
    stack_inventory_hash: release.inventoryHash,
    stack_health: {
      path: env.app.health,
      host: env.domains[0],
      https: sslMode(env.ssl) !== 'none',
      status: health.status,
      timeout: health.timeout,
      retries: health.retries,
    },
    stack_secrets: env.app.secrets,
    stack_paths: { root: layout.root, releases: layout.releases, venvs: layout.venvs, current: layout.current, env_file: layout.env_file },
  };
  return `${header(`the variables of ${env.name}; secrets are not here: export ${env.app.secrets.join(', ') || 'them'} in the controller's environment`)}${yaml(vars)}`;
}

type Task = Record<string, unknown>;

function mainTasks(): Task[] {
  return [
    { name: 'provisioning (stack setup)', 'ansible.builtin.import_tasks': 'provision.yml' },
    { name: 'managed files', 'ansible.builtin.import_tasks': 'files.yml' },
    { name: 'the release', 'ansible.builtin.import_tasks': 'release.yml' },
    { name: 'activation', 'ansible.builtin.import_tasks': 'activate.yml' },
  ];
}

/** `when:` for what only some hosts have. */
function onlyOn(hosts: string[], all: string[]): Task {
  return hosts.length === all.length ? {} : { when: `inventory_hostname in ${JSON.stringify(hosts)}` };
}

/** Items of every host's desired state, with the hosts that have each (by a key). */
function union<T>(input: AnsibleExportInput, pick: (r: HostRender) => T[], key: (t: T) => string): { item: T; hosts: string[] }[] {
  const seen = new Map<string, { item: T; hosts: string[] }>();
  for (const r of input.hosts) {
    for (const item of pick(r)) {
      const k = key(item);
      const entry = seen.get(k) ?? { item, hosts: [] };
      entry.hosts.push(r.host.address);
      seen.set(k, entry);
    }
  }
  return [...seen.values()];
}

function provisionTasks(input: AnsibleExportInput): Task[] {
  const all = input.hosts.map((h) => h.host.address);
  const { env } = input;
  const tasks: Task[] = [
    {
      name: `the secrets are set in the controller's environment (${env.app.secrets.join(', ') || 'none'})`,
      'ansible.builtin.assert': {
        that: env.app.secrets.map((n) => `lookup('env', '${n}') | length > 0`),
        fail_msg: `export ${env.app.secrets.join(', ')} before running the playbook (stack reads them from .stack/secrets.${env.name} or the environment)`,
        quiet: true,
      },
      run_once: true,
      delegate_to: 'localhost',
      become: false,
      ...(env.app.secrets.length === 0 ? { when: false } : {}),
    },
  ];
  for (const { item: packages, hosts } of union(
    input,
    (r) => [r.base.packages],
    (p) => p.join(' '),
  )) {
    // apt-get rather than the apt module (see task_packages).
    tasks.push({
      name: `packages: ${packages.join(' ')}`,
      ...shellTask('task_packages', ...packages),
      register: 'stack_apt',
      changed_when: "'0 newly installed' not in stack_apt.stdout",
      ...onlyOn(hosts, all),
    });
  }
  for (const { item: u, hosts } of union(
    input,
    (r) => r.base.users,
    (u) => u.name,
  )) {
    tasks.push(
      { name: `group ${u.name}`, 'ansible.builtin.group': { name: u.name, system: u.system }, ...onlyOn(hosts, all) },
      {
        name: `system user ${u.name}`,
        'ansible.builtin.user': { name: u.name, group: u.name, system: u.system, home: u.home, create_home: false, shell: '/usr/sbin/nologin' },
        ...onlyOn(hosts, all),
      },
    );
  }
  for (const { item: m, hosts } of union(
    input,
    (r) => r.base.memberships,
    (m) => `${m.user} ${m.group} ${m.absent ? '-' : '+'}`,
  )) {
    tasks.push(
      m.absent
        ? {
            name: `${m.user} is not in group ${m.group}`,
            ...shellTask('task_leave_group', m.user, m.group),
            register: 'stack_membership',
            changed_when: "'removed' in stack_membership.stdout",
            ...onlyOn(hosts, all),
          }
        : { name: `${m.user} in group ${m.group}`, 'ansible.builtin.user': { name: m.user, groups: [m.group], append: true }, ...onlyOn(hosts, all) },
    );
  }
  for (const { item: d, hosts } of union(
    input,
    (r) => r.base.dirs,
    (d) => d.path,
  )) {
    tasks.push({
      name: `directory ${d.path}`,
      'ansible.builtin.file': { path: d.path, state: 'directory', mode: `0${d.mode.replace(/^0+/, '')}`.padStart(4, '0'), owner: d.owner, group: d.group },
      ...onlyOn(hosts, all),
    });
  }
  if (sslMode(env.ssl) === 'self-signed') {
    const dir = `/etc/ssl/stack/${env.app.name}`;
    const cert = `${dir}/fullchain.pem`;
    const key = `${dir}/privkey.pem`;
    const san = env.domains.map((d) => (/^\d+\.\d+\.\d+\.\d+$/.test(d) ? `IP:${d}` : `DNS:${d}`)).join(',');
    tasks.push({
      name: 'a self-signed certificate, made once and kept',
      ...shellTask('task_self_signed', dir, env.domains[0]!, san, key, cert),
      args: { creates: key },
      notify: ['reload-nginx'],
    });
  }
  tasks.push({
    name: 'firewall: SSH, HTTP and HTTPS stay open when ufw is installed',
    ...shellTask('task_firewall', v('STACK_SSH_PORT')),
    environment: { STACK_SSH_PORT: '{{ ansible_port | default(22) }}' },
    changed_when: false,
  });
  tasks.push(
    {
      name: "the server's nginx version (it decides between the site's two forms)",
      'ansible.builtin.command': 'nginx -v',
      register: 'stack_nginx_v',
      changed_when: false,
    },
    { name: "the server's CPU count (the gateway's workers: auto)", 'ansible.builtin.command': 'nproc', register: 'stack_nproc', changed_when: false },
    {
      name: 'facts the managed files depend on',
      'ansible.builtin.set_fact': {
        stack_nginx_version: "{{ stack_nginx_v.stderr | regex_search('nginx/([0-9.]+)', '\\1') | first }}",
        stack_cpus: '{{ stack_nproc.stdout | int }}',
      },
    },
  );
  return tasks;
}

function deliveryTask(f: ManagedFile, d: Delivery): Task {
  const attrs = { dest: f.path, owner: f.owner, group: f.group, mode: `0${f.mode.replace(/^0+/, '')}`.padStart(4, '0') };
  switch (d.kind) {
    case 'copy':
      return { 'ansible.builtin.copy': { src: d.src, ...attrs } };
    case 'local':
      return { 'ansible.builtin.copy': { src: d.src, ...attrs } };
    case 'nginx':
      return {
        'ansible.builtin.copy': {
          src: `{{ '${d.after}' if stack_nginx_version is version('${NGINX_THRESHOLD}', '>=') else '${d.before}' }}`,
          ...attrs,
        },
      };
    case 'template':
      return { 'ansible.builtin.template': { src: d.src, ...DELIMITERS, ...attrs } };
  }
}

function fileTasks(input: AnsibleExportInput, files: ManagedFile[]): Task[] {
  const all = input.hosts.map((h) => h.host.address);
  const tasks: Task[] = [];
  for (const f of files) {
    // One task per distinct delivery: hosts that share the bytes share the task.
    const groups = new Map<string, { d: Delivery; hosts: string[] }>();
    for (const [host, d] of f.delivery) {
      const g = groups.get(JSON.stringify(d)) ?? { d, hosts: [] };
      g.hosts.push(host);
      groups.set(JSON.stringify(d), g);
    }
    for (const { d, hosts } of groups.values()) {
      tasks.push({
        name: f.path,
        ...deliveryTask(f, d),
        ...(f.notify.length > 0 ? { notify: f.notify } : {}),
        // The env file holds the secrets: its diff never goes to the log.
        ...(d.kind === 'template' || d.kind === 'local' ? { no_log: false, diff: false } : {}),
        ...onlyOn(hosts, all),
      });
    }
  }
  for (const { item: l, hosts } of union(
    input,
    (r) => r.base.links,
    (l) => l.path,
  )) {
    tasks.push({
      name: `link ${l.path}`,
      'ansible.builtin.file': { path: l.path, src: l.target, state: 'link', force: true },
      notify: l.notify,
      ...onlyOn(hosts, all),
    });
  }
  for (const { item: r, hosts } of union(
    input,
    (s) => s.base.removes,
    (r) => r.path,
  )) {
    tasks.push({ name: `no ${r.path}`, 'ansible.builtin.file': { path: r.path, state: 'absent' }, notify: r.notify, ...onlyOn(hosts, all) });
  }
  return tasks;
}

/**
 * A command in a transient systemd service, as stack's build steps and hooks run (task_sandboxed:
 * the system read-only but `writable`, private /tmp, no new privileges, a time limit, every
 * process it started ended with it).
 */
function sandboxed(s: { user: string; dir: string | Variable; writable: (string | Variable)[]; seconds: number; envFile?: string }, command: string): Task {
  return shellTask('task_sandboxed', s.user, s.dir, String(s.seconds), s.envFile ?? '', command, ...s.writable);
}

/**
 * The package index's URL, as the playbook reads it on the controller: the secret
 * STACK_INDEX_URL from its environment (as stack reads it, .stack/secrets.ENV aside), or else
 * app.index_url. An expression, never a value: the export reads no secret.
 */
export function indexUrlExpression(indexUrl: string | null): string {
  // app.index_url is checked to be a plain http(s) URL without credentials: no quote nor brace
  // to escape inside the Jinja string.
  return `{{ lookup('env', 'STACK_INDEX_URL')${indexUrl ? ` | default('${indexUrl}', true)` : ''} }}`;
}

function releaseTasks(env: Environment, layout: Layout, release: ExportRelease): Task[] {
  const rel = v('REL');
  const build = layout.build_user;
  const releaseEnv = { REL: `${layout.releases}/{{ stack_release_id }}`, RELEASE_ID: '{{ stack_release_id }}', VENV_KEY: '{{ stack_venv_key }}' };
  // pip's arguments, quoted here: task_venv adds them to the command line of its sandbox. Never
  // the index's URL, which may hold a token: a command line shows in ps, in `systemctl show` of
  // the sandbox's unit and in Ansible's result (cmd); so does a task's `environment:`, which
  // Ansible puts on the command line that starts the module. The URL goes into a file only root
  // reads (copy's content is a module argument, and no_log keeps it out of results and logs),
  // which task_venv hands to pip's sandbox on stdin and removes.
  const pip = release.requirements ? shCommand('-r', release.requirements) : '';
  const indexFile = `${layout.releases}/.{{ stack_release_id }}.index`;
  const indexTasks: Task[] = release.requirements
    ? [
        {
          name: "the package index's URL for pip (STACK_INDEX_URL or app.index_url), readable by root alone until the build reads it",
          'ansible.builtin.copy': { content: `${indexUrlExpression(release.indexUrl)}\n`, dest: indexFile, owner: 'root', group: 'root', mode: '0600' },
          no_log: true,
          diff: false,
        },
      ]
    : [];
  return [
    {
      name: 'the live release',
      'ansible.builtin.slurp': { src: `${layout.current}/.stack-release.json` },
      register: 'stack_live_manifest',
      failed_when: false,
    },
    {
      name: "the virtualenv this code needs on this server's Python, and the one live",
      // The same key as stack's (venv.sh), so that either reuses the virtualenv the other built.
      ...shellTask('task_venv_key', v('DIGEST'), `${layout.current}/.venv`),
      environment: { DIGEST: '{{ stack_venv_digest }}' },
      register: 'stack_venv',
      changed_when: false,
    },
    {
      name: 'a new release is needed when the code or its virtualenv changed',
      'ansible.builtin.set_fact': {
        stack_venv_key: '{{ stack_venv.stdout_lines[0] }}',
        stack_previous_release: "{{ (stack_live_manifest.content | b64decode | from_json).id if stack_live_manifest.content is defined else '' }}",
        stack_release_needed:
          '{{ stack_live_manifest.content is not defined or (stack_live_manifest.content | b64decode | from_json).source_hash != stack_source_hash or stack_venv.stdout_lines[1] != stack_venv.stdout_lines[0] }}',
      },
    },
    {
      name: 'the release id',
      // Like stack's: the UTC time, to the millisecond; one id for every host of the batch.
      'ansible.builtin.set_fact': { stack_release_id: "{{ now(utc=true).strftime('%Y%m%dT%H%M%S.%f')[:-3] }}Z" },
      run_once: true,
    },
    {
      name: 'a new release, built as the build user and sealed',
      when: 'stack_release_needed | bool',
      block: [
        {
          name: 'ship the code',
          'ansible.builtin.copy': {
            src: 'release.tar.gz',
            dest: `${layout.releases}/.{{ stack_release_id }}.upload`,
            owner: 'root',
            group: 'root',
            mode: '0600',
          },
        },
        {
          name: 'unpack it into releases/ID, for the build user',
          ...shellTask('task_unpack', rel, v('RELEASE_ID'), layout.releases, build),
          environment: releaseEnv,
        },
        ...indexTasks,
        {
          name: 'the virtualenv: reused when sealed, otherwise built and sealed',
          ...shellTask('task_venv', rel, v('VENV_KEY'), layout.venvs, build, ...(pip ? [pip, v('INDEX_FILE')] : [])),
          // The file's path, not the URL.
          environment: pip ? { ...releaseEnv, INDEX_FILE: indexFile } : releaseEnv,
        },
        ...env.hooks.build.map((hook) => ({
          name: `build hook: ${hook}`,
          ...sandboxed({ user: build, dir: rel, writable: [rel], seconds: env.hooks.timeout, envFile: layout.env_file }, hook),
          environment: releaseEnv,
        })),
        {
          name: 'seal the release: root owns it, the app may only read it',
          ...shellTask('task_seal', rel, build, layout.app, ...(env.app.static?.path ? [env.app.static.path] : [])),
          environment: releaseEnv,
        },
        {
          name: 'the list of shipped files',
          'ansible.builtin.copy': {
            src: 'release.files',
            dest: `${layout.releases}/{{ stack_release_id }}/.stack-files`,
            owner: 'root',
            group: layout.app,
            mode: '0640',
          },
        },
        {
          name: 'the manifest, which makes the release complete',
          'ansible.builtin.copy': {
            content:
              "{{ {'id': stack_release_id, 'source_hash': stack_source_hash, 'git_commit': stack_git_commit, 'inventory_hash': stack_inventory_hash, 'created': now(utc=true).isoformat()[:23] + 'Z', 'by': 'ansible', 'hooks': " +
              JSON.stringify(hooksRun(env.hooks)) +
              '} | to_json }}\n',
            dest: `${layout.releases}/{{ stack_release_id }}/.stack-release.json`,
            owner: 'root',
            group: layout.app,
            mode: '0640',
          },
        },
        {
          name: 'switch current to the new release (one rename)',
          ...shellTask('task_switch', layout.current, v('RELEASE_ID')),
          environment: releaseEnv,
          notify: ['restart-app'],
        },
      ],
    },
  ];
}

function activateTasks(input: AnsibleExportInput, files: ManagedFile[], layout: Layout): Task[] {
  const { env } = input;
  const all = input.hosts.map((h) => h.host.address);
  const units = files.filter((f) => f.validate === 'systemd');
  const appHook = (hook: string, dir: string | Variable) =>
    sandboxed(
      {
        user: layout.app,
        dir,
        writable: [layout.shared, ...(layout.media_dir ? [layout.media_dir] : [])],
        seconds: env.hooks.timeout,
        envFile: layout.env_file,
      },
      hook,
    );
  const tasks: Task[] = [];
  if (files.some((f) => f.validate === 'nginx') || input.hosts.some((h) => h.base.links.length > 0)) {
    tasks.push({ name: 'validate the whole nginx configuration (nginx -t) before any reload', 'ansible.builtin.command': 'nginx -t -q', changed_when: false });
  }
  for (const u of units) {
    // systemd-analyze exits 0 on unknown keys and bad values: anything it prints fails.
    tasks.push({
      name: `validate ${u.path} (systemd-analyze verify)`,
      'ansible.builtin.command': `systemd-analyze verify ${u.path}`,
      register: 'stack_verify',
      changed_when: false,
      failed_when: 'stack_verify.rc != 0 or (stack_verify.stdout + stack_verify.stderr) | length > 0',
      ...onlyOn(u.hosts, all),
    });
  }
  for (const hook of env.hooks.before_activate) {
    tasks.push({
      name: `before_activate hook: ${hook}`,
      ...appHook(hook, v('REL')),
      environment: { REL: `${layout.releases}/{{ stack_release_id }}` },
      when: 'stack_release_needed | bool',
    });
  }
  for (const { item: s, hosts } of union(
    input,
    (r) => r.base.services,
    (s) => s,
  )) {
    tasks.push({ name: `enable ${s}`, 'ansible.builtin.systemd': { name: s, enabled: true }, ...onlyOn(hosts, all) });
  }
  const health = env.app.health_check;
  const https = sslMode(env.ssl) !== 'none';
  const scheme = https ? 'https' : 'http';
  const staticDir = env.app.static ? `${layout.current}/${env.app.static.path}` : null;
  const gate: Task[] = [
    { name: 'run the handlers now (daemon-reload, restart the app, reload nginx)', 'ansible.builtin.meta': 'flush_handlers' },
    ...union(
      input,
      (r) => r.base.services.filter((s) => s !== layout.target),
      (s) => s,
    ).map(({ item: s, hosts }) => ({ name: `start ${s}`, 'ansible.builtin.systemd': { name: s, state: 'started' }, ...onlyOn(hosts, all) })),
    {
      name: `health check: GET ${env.app.health} through nginx answers ${health.status}`,
      'ansible.builtin.uri': {
        url: `${scheme}://127.0.0.1${env.app.health}`,
        headers: { Host: env.domains[0] },
        status_code: health.status,
        timeout: health.timeout,
        validate_certs: false,
        follow_redirects: 'none',
      },
      register: 'stack_health',
      until: `stack_health.status == ${health.status}`,
      retries: health.retries,
      delay: 1,
    },
  ];
  if (staticDir && env.app.static) {
    gate.push(
      {
        name: 'a static file to ask nginx for',
        ...shellTask('task_static_file', staticDir),
        register: 'stack_static_file',
        changed_when: false,
      },
      {
        name: `nginx serves the static files (${env.app.static.url})`,
        'ansible.builtin.uri': {
          url: `${scheme}://127.0.0.1${env.app.static.url}{{ stack_static_file.stdout[2:] }}`,
          headers: { Host: env.domains[0] },
          timeout: health.timeout,
          validate_certs: false,
        },
        when: "stack_static_file.stdout != ''",
      },
    );
  }
  const parts = union(
    input,
    (r) => [...r.base.parts.timers, ...r.base.parts.instances],
    (s) => s,
  );
  for (const { item: unit, hosts } of parts) {
    gate.push({
      name: `${unit} runs on the live release`,
      'ansible.builtin.systemd': {
        name: unit,
        enabled: true,
        state: unit.endsWith('.timer') ? 'started' : "{{ 'restarted' if stack_release_needed | bool else 'started' }}",
      },
      ...onlyOn(hosts, all),
    });
  }
  tasks.push({
    name: 'handlers, services and the health gate; an unhealthy release is switched back',
    block: gate,
    rescue: [
      {
        name: 'put the previous release back',
        ...shellTask('task_switch_back', layout.current, v('PREVIOUS'), layout.unit),
        environment: { PREVIOUS: '{{ stack_previous_release }}' },
        when: "stack_release_needed | bool and stack_previous_release != ''",
      },
      {
        name: 'the deploy failed',
        'ansible.builtin.fail': { msg: `${env.app.name} did not come up healthy on {{ inventory_hostname }}; the previous release (if any) is live again` },
      },
    ],
  });
  tasks.push({
    name: `keep the last ${env.keep} releases, and the virtualenvs they use`,
    ...shellTask('task_prune', layout.releases, layout.current, layout.venvs, String(env.keep), v('NEW')),
    environment: { NEW: '{{ stack_release_id }}' },
    register: 'stack_prune',
    changed_when: "stack_prune.stdout != ''",
    when: 'stack_release_needed | bool',
  });
  for (const hook of env.hooks.after_activate) {
    tasks.push({
      name: `after_activate hook: ${hook}`,
      ...appHook(hook, layout.current),
      when: 'stack_release_needed | bool',
    });
  }
  return tasks;
}

function handlers(input: AnsibleExportInput): Task[] {
  const seen = union(
    input,
    (r) => r.base.handlers,
    (h) => h.name,
  );
  return seen.map(({ item: h }) => handlerTask(h));
}

function handlerTask(h: Handler): Task {
  if (h.name === 'reload-nginx') {
    // nginx -t first: a reload of a configuration nginx rejects would leave the old one running
    // and the failure unseen.
    return { name: h.name, 'ansible.builtin.shell': 'nginx -t -q && systemctl reload-or-restart nginx' };
  }
  if (h.command === 'systemctl daemon-reload') return { name: h.name, 'ansible.builtin.systemd': { daemon_reload: true } };
  return { name: h.name, 'ansible.builtin.shell': literal(h.command) };
}

/** For the command's summary: where the export reads each secret from. */
export function secretReferences(env: Environment): string[] {
  return env.app.secrets.map((n) => `${n}: ${secretExpression(n).split(' | ')[0]}`);
}
