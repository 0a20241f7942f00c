#!/usr/bin/env node
// stack against Ansible on the same sandboxes (run as root after `npm run build`, with
// ansible-playbook installed: scripts/ensure-deps.sh does both). Boots HOSTS sandboxes (bench1..
// bench8, default 8), sets them up with stack for two identical apps, `hello` (deployed by stack)
// and `hola` (deployed by bench/ansible/deploy.yml from the files stack renders for it), so
// neither tool's releases get in the other's way while both share each server's nginx and
// systemd. Then, on 1 host and on all of them: a deploy with nothing to change, with one nginx
// setting changed, and with one Python file changed, each tool in turn (the order swapping every
// round), ROUNDS rounds (default 5) after one untimed warm-up. Prints medians, the ratio
// stack/Ansible, the floor (node start, one OpenSSH round trip, one sudo), the round trips per
// host, the CLI's peak memory, and how much CPU other processes took meanwhile. Asserts nothing.
//
//   sudo node bench/hosts.mjs                 # the whole benchmark (about 10 minutes on 2 cores)
//   HOSTS=2 ROUNDS=1 sudo node bench/hosts.mjs   # a quick look at the script itself
//
// The CLI is copied (dist, templates, scripts) before anything runs: other people rebuilding or
// editing templates mid-run would otherwise turn a no-op into a change halfway through.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOSTS = Math.min(8, Math.max(1, Number(process.env.HOSTS ?? 8)));
const ROUNDS = Math.max(1, Number(process.env.ROUNDS ?? 5));
/** Past this, no new round starts: what was measured is printed, marked as cut short. */
const DEADLINE = Date.now() + Number(process.env.BUDGET_MINUTES ?? 40) * 60_000;
/** One deploy, of either tool, on up to 8 hosts; far above any normal run. */
const RUN_TIMEOUT_MS = 300_000;
const FLOOR_RUNS = 10;
const names = Array.from({ length: HOSTS }, (_, i) => `bench${i + 1}`);
const work = mkdtempSync(path.join(tmpdir(), 'stack-bench-hosts-'));
const started = new Date();

// ---------------------------------------------------------------------------------------------
// The CLI as built now.

const snap = path.join(work, 'cli');
for (const p of ['bin', 'dist', 'templates', 'roles', 'schema', 'src/remote/sh', 'package.json', 'inventory.example.yml']) {
  cpSync(path.join(repo, p), path.join(snap, p), { recursive: true });
}
symlinkSync(path.join(repo, 'node_modules'), path.join(snap, 'node_modules'));
const stackBin = path.join(snap, 'bin/stack.js');
const help = spawnSync(process.execPath, [stackBin, 'deploy', '--help'], { encoding: 'utf8' });
if (help.status !== 0) throw new Error(`the built CLI does not run (npm run build?):\n${help.stderr}`);
// `--parallel` may be the deploy's own option or a global one (`stack --help`).
const parallel = help.stdout.includes('--parallel') || spawnSync(process.execPath, [stackBin, '--help'], { encoding: 'utf8' }).stdout.includes('--parallel');
const { sandboxUp, sandboxDown, sandboxDownSync, listSandboxes, sshOptions, knownHostsFile } = await import(path.join(snap, 'dist/sandbox/sandbox.js'));

// Whatever happens, every sandbox this script may have booted is stopped by its name.
let stopping = false;
const stopAllSync = () => {
  if (stopping) return;
  stopping = true;
  for (const name of names) {
    try {
      sandboxDownSync(name, 10_000);
    } catch {
      // not running
    }
  }
};
process.on('exit', stopAllSync);
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
]) {
  process.once(signal, () => {
    stopAllSync();
    process.exit(code);
  });
}

// ---------------------------------------------------------------------------------------------
// Running things: always asynchronously (the contention sampler keeps ticking), always bounded.

function run(cmd, args, { cwd = work, env = process.env, timeoutMs = RUN_TIMEOUT_MS } = {}) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGTERM' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: `${stderr}${err.message}`, ms: 0 }));
    child.on('close', (code, signal) =>
      resolve({
        code: code ?? -1,
        stdout,
        stderr: signal ? `${stderr}\n(killed by ${signal}: over ${timeoutMs} ms?)` : stderr,
        ms: Number(process.hrtime.bigint() - t0) / 1e6,
      }),
    );
  });
}

/**
 * `cmd args` under GNU time: the peak resident memory of the process (or its largest child), and
 * the CPU time it and its children used (user + system), which says how much of a run was work
 * on this machine's cores rather than waiting on the servers.
 */
async function measured(cmd, args, options) {
  const timeFile = path.join(work, 'time');
  rmSync(timeFile, { force: true });
  const r = await run('/usr/bin/time', ['-f', '%M %U %S', '-o', timeFile, cmd, ...args], options);
  const [rssKb, user, system] = existsSync(timeFile) ? readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number) : [];
  return { ...r, rssKb: rssKb ?? Number.NaN, cpuMs: (user + system) * 1000 };
}

const median = (v) => {
  const s = v.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const tail = (text, n = 25) => text.trim().split('\n').slice(-n).join('\n');

// ---------------------------------------------------------------------------------------------
// Contention: CPU time the whole machine spent, minus what this script, its children and the
// sandboxes' own cgroups spent. What is left is other people's work on the same cores.

const HZ = 100;
function machineBusySeconds() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: idle and iowait are not work.
  return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / HZ;
}
function ourSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  // utime stime cutime cstime: ourselves and every child we waited for (GNU time waits for its own).
  let seconds = (fields[11] + fields[12] + fields[13] + fields[14]) / HZ;
  for (const name of names) {
    for (const root of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
      const file = path.join(root, `stack-sandbox-${name}`, 'cpu.stat');
      if (!existsSync(file)) continue;
      seconds += Number(readFileSync(file, 'utf8').match(/usage_usec (\d+)/)?.[1] ?? 0) / 1e6;
      break;
    }
  }
  return seconds;
}
function contentionMeter() {
  const t0 = Date.now();
  const busy0 = machineBusySeconds();
  const ours0 = ourSeconds();
  const loads = [loadavg()[0]];
  const timer = setInterval(() => loads.push(loadavg()[0]), 2000);
  return () => {
    clearInterval(timer);
    const wall = (Date.now() - t0) / 1000;
    const others = Math.max(0, machineBusySeconds() - busy0 - (ourSeconds() - ours0));
    return { wall, othersCores: others / wall, loadMax: Math.max(...loads) };
  };
}
/** Others' use of the 2 cores above this share of one core: the figures were taken under contention. */
const CONTENDED_CORES = 0.25;

// ---------------------------------------------------------------------------------------------
// Sandboxes and the two projects.

for (const s of await listSandboxes()) {
  // A run of this script that was killed outright leaves its own sandboxes behind.
  if (names.includes(s.name)) await sandboxDown(s.name);
}
const idle = contentionMeter();
await new Promise((r) => setTimeout(r, 3000));
const before = idle();

const servers = [];
for (const name of names) servers.push(await sandboxUp({ name }));
console.error(`booted ${servers.map((s) => `${s.name} ${s.address}`).join(', ')}`);

try {
  const identity = servers[0].identityFile;
  const hostEntry = (s) => `      - { address: ${s.address}, user: deploy, host_key: "${s.hostKey}", identity_file: ${identity} }`;
  const inventoryText = (app, hosts, bodySize) => `app:
  name: ${app}
  source: example
  wsgi: hello.wsgi:application
  requirements: requirements.txt
  static: { url: /static/, path: static }
  health: /health
  env:
    GREETING: Hello
  secrets: [SECRET_KEY]
gateway:
  server: gunicorn
  workers: 2
  timeout: 30
nginx:
  client_max_body_size: ${bodySize}
environments:
  prod:
    domains: [${app}.example.com]
    ssl: none
    hosts:
${hosts.map(hostEntry).join('\n')}
`;
  const project = (app) => {
    const dir = path.join(work, app);
    cpSync(path.join(repo, 'example'), path.join(dir, 'example'), { recursive: true });
    mkdirSync(path.join(dir, '.stack'));
    writeFileSync(path.join(dir, '.stack/secrets.prod'), 'SECRET_KEY=bench-secret\n');
    chmodSync(path.join(dir, '.stack/secrets.prod'), 0o600);
    return dir;
  };
  const hello = project('hello');
  const hola = project('hola');
  const inventories = (dir, app, size) => {
    writeFileSync(path.join(dir, 'one.yml'), inventoryText(app, servers.slice(0, 1), size));
    writeFileSync(path.join(dir, 'all.yml'), inventoryText(app, servers, size));
  };
  inventories(hello, 'hello', '16m');
  inventories(hola, 'hola', '16m');

  const stack = async (dir, inventory, ...args) => {
    // --debug: the summary line then names each host's SSH round trips (as -v does, without the step lines).
    const r = await measured(process.execPath, [stackBin, '--debug', '-i', inventory, ...args], { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
    if (r.code !== 0) throw new Error(`stack ${args.join(' ')} (${inventory}) failed:\n${tail(r.stdout + r.stderr)}`);
    const out = r.stdout + r.stderr;
    return {
      ms: r.ms,
      rssKb: r.rssKb,
      cpuMs: r.cpuMs,
      trips: [...out.matchAll(/(\d+) ssh round trips/g)].map((m) => Number(m[1])),
      // Each host's own time: their sum over the wall time says how far the hosts overlapped.
      hostSeconds: [...out.matchAll(/ssh round trips in ([\d.]+)s/g)].reduce((n, m) => n + Number(m[1]), 0),
      changes: Number(out.match(/changed (\d+) things?/)?.[1] ?? Number.NaN),
      out,
    };
  };

  for (const [dir, app] of [
    [hello, 'hello'],
    [hola, 'hola'],
  ]) {
    const r = await stack(dir, 'all.yml', 'setup', 'prod');
    console.error(`stack setup of ${app} on ${HOSTS} host(s): ${(r.ms / 1000).toFixed(1)} s`);
  }

  // The playbook's side: the files stack renders for hola, as templates; an inventory; its variables.
  const ans = path.join(work, 'ansible');
  const rendered = path.join(ans, 'rendered');
  const rr = await run(process.execPath, [stackBin, '-i', 'all.yml', 'render', 'prod', '-o', rendered], { cwd: hola });
  if (rr.code !== 0) throw new Error(`stack render failed:\n${rr.stderr}`);
  const templates = path.join(ans, 'templates');
  // Every host gets the same files (same domain, workers and nginx): the first host's are the templates.
  cpSync(path.join(rendered, servers[0].address), templates, { recursive: true });
  const jinja = (rel, change) => {
    const file = path.join(templates, rel);
    const text = readFileSync(file, 'utf8');
    if (/\{\{|\{%|\{#/.test(text)) throw new Error(`${rel} holds Jinja delimiters; the playbook would not ship it as rendered`);
    const out = change(text);
    writeFileSync(file, out);
    return text !== out;
  };
  if (!jinja('etc/nginx/sites-available/hola.conf', (t) => t.replace(/client_max_body_size 16m;/, 'client_max_body_size {{ client_max_body_size }};')))
    throw new Error('the rendered site has no client_max_body_size 16m;');
  if (!jinja('etc/hola/env', (t) => t.replace(/^SECRET_KEY="\[REDACTED\]"$/m, `SECRET_KEY="{{ lookup('env', 'SECRET_KEY') }}"`)))
    throw new Error('the rendered env file has no redacted SECRET_KEY line');
  for (const rel of ['etc/hola/gunicorn.conf.py', 'etc/systemd/system/hola.service', 'etc/systemd/system/hola.socket']) jinja(rel, (t) => t);
  writeFileSync(path.join(ans, 'known_hosts'), servers.map((s) => `${s.address} ${s.hostKey}\n`).join(''));
  const sshCommon = [
    '-F /dev/null',
    '-o IdentitiesOnly=yes',
    `-o UserKnownHostsFile=${path.join(ans, 'known_hosts')}`,
    '-o GlobalKnownHostsFile=/dev/null',
    '-o StrictHostKeyChecking=yes',
    '-o HostKeyAlgorithms=ssh-ed25519',
    '-o ConnectTimeout=5',
  ].join(' ');
  writeFileSync(
    path.join(ans, 'inventory.ini'),
    `[bench]\n${servers.map((s) => `${s.name} ansible_host=${s.address}`).join('\n')}\n\n[bench:vars]\nansible_user=deploy\nansible_ssh_private_key_file=${identity}\nansible_ssh_common_args=${sshCommon}\n`,
  );
  mkdirSync(path.join(ans, 'work'));
  mkdirSync(path.join(ans, 'cp'));
  const vars = {
    app: 'hola',
    source_dir: path.join(hola, 'example'),
    templates_dir: templates,
    work_dir: path.join(ans, 'work'),
    domain: 'hola.example.com',
    health_path: '/health',
    static_probe: '/static/style.css',
    client_max_body_size: '16m',
    keep: 5,
  };
  const writeVars = () => writeFileSync(path.join(ans, 'vars.json'), JSON.stringify(vars));
  writeVars();
  const ansibleEnv = {
    ...process.env,
    ANSIBLE_CONFIG: path.join(repo, 'bench/ansible/ansible.cfg'),
    // Its own control sockets, so no other Ansible user's masters are reused (or closed).
    ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(ans, 'cp'),
    ANSIBLE_LOCAL_TEMP: path.join(ans, 'tmp'),
    ANSIBLE_NOCOLOR: '1',
    SECRET_KEY: 'bench-secret',
  };
  const playbook = path.join(repo, 'bench/ansible/deploy.yml');
  const ansible = async (hosts, verbose = false) => {
    const args = ['-i', path.join(ans, 'inventory.ini'), '-e', `@${path.join(ans, 'vars.json')}`, playbook];
    if (hosts === 1) args.push('--limit', servers[0].name);
    if (verbose) args.push('-vvv');
    const r = await measured('ansible-playbook', args, { cwd: ans, env: ansibleEnv });
    const recap = [...r.stdout.matchAll(/^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/gm)];
    if (r.code !== 0 || recap.length === 0 || recap.some((m) => m[4] !== '0' || m[5] !== '0'))
      throw new Error(`ansible-playbook failed (exit ${r.code}):\n${tail(r.stdout + r.stderr, 40)}`);
    // With -vvv, every ssh (module run) and sftp (file transfer) OpenSSH starts is logged once.
    const execs = verbose ? (r.stdout.match(/SSH: EXEC (ssh|sftp|scp) /g) ?? []).length : Number.NaN;
    return { ms: r.ms, rssKb: r.rssKb, changes: Math.max(...recap.map((m) => Number(m[3]))), execs };
  };

  // First deploys (untimed): every host runs the current code of both apps.
  const firstStack = await stack(hello, 'all.yml', 'deploy', 'prod');
  const firstAnsible = await ansible(HOSTS);
  console.error(`first deploys on ${HOSTS} host(s): stack ${(firstStack.ms / 1000).toFixed(1)} s, Ansible ${(firstAnsible.ms / 1000).toFixed(1)} s`);

  // The playbook must put exactly stack's files in place, with stack's modes and owners.
  const rootSsh = (s, command) => run('ssh', [...sshOptions(identity, knownHostsFile(s.name)), `root@${s.address}`, command], { timeoutMs: 30_000 });
  const managed = [
    'etc/hola/env',
    'etc/hola/gunicorn.conf.py',
    'etc/nginx/sites-available/hola.conf',
    'etc/systemd/system/hola.service',
    'etc/systemd/system/hola.socket',
  ];
  const header = [
    ...(await run(process.execPath, [stackBin, '-i', 'one.yml', 'render', 'prod'], { cwd: hola })).stdout.matchAll(/^==> [^:]+:(\S+) \((\d+) (\S+),/gm),
  ];
  const want = new Map(header.map((m) => [m[1].slice(1), `${Number.parseInt(m[2], 8).toString(8)} ${m[3]}`]));
  const remote = await rootSsh(
    servers[0],
    `cd / && for f in ${managed.join(' ')}; do printf '%s %s %s\\n' "$f" "$(sha256sum < "$f" | cut -c1-64)" "$(stat -c '%a %U:%G' "$f")"; done`,
  );
  const { createHash } = await import('node:crypto');
  const sameFiles = managed.map((rel) => {
    let local = readFileSync(path.join(rendered, servers[0].address, rel), 'utf8');
    if (rel === 'etc/hola/env') local = local.replace('"[REDACTED]"', '"bench-secret"');
    const line = remote.stdout.split('\n').find((l) => l.startsWith(`${rel} `)) ?? '';
    const [, sum, mode, owner] = line.split(' ');
    return { rel, bytes: sum === createHash('sha256').update(local).digest('hex'), mode: `${mode} ${owner}` === want.get(rel) };
  });
  const filesOk = sameFiles.every((f) => f.bytes && f.mode);
  console.error(
    `playbook's managed files on ${servers[0].name}: ${filesOk ? 'byte-identical to stack render, same modes and owners' : `DIFFER: ${JSON.stringify(sameFiles)}`}`,
  );

  // -------------------------------------------------------------------------------------------
  // The floor: node starting, one OpenSSH connection running `true`, and sudo on top of it; and
  // the same from inside node with the connection stack makes (ssh2), its parts timed.

  const floorMeter = contentionMeter();
  const floor = { node: [], ssh: [], sshSudo: [], inproc: [] };
  const ssh = [...sshOptions(identity, knownHostsFile(servers[0].name)), `deploy@${servers[0].address}`];
  const inprocScript = `
    const t0 = performance.now();
    const { connectHost } = await import(${JSON.stringify(path.join(snap, 'dist/ssh/connect.js'))});
    const t1 = performance.now();
    const shell = await connectHost({ address: ${JSON.stringify(servers[0].address)}, user: 'deploy', host_key: ${JSON.stringify(servers[0].hostKey)}, identity_file: ${JSON.stringify(identity)} }, { baseDir: '/' });
    const t2 = performance.now();
    await shell.exec('true');
    const t3 = performance.now();
    const r = await shell.sudo('true', '');
    const t4 = performance.now();
    await shell.close();
    if (r.code !== 0) throw new Error('sudo failed: ' + r.stderr);
    console.log(JSON.stringify({ start: t0, load: t1 - t0, connect: t2 - t1, exec: t3 - t2, sudo: t4 - t3 }));`;
  for (let i = 0; i < FLOOR_RUNS; i++) {
    floor.node.push((await run(process.execPath, ['-e', '0'])).ms);
    const a = await run('ssh', [...ssh, 'true'], { timeoutMs: 30_000 });
    if (a.code !== 0) throw new Error(`ssh true failed: ${a.stderr}`);
    floor.ssh.push(a.ms);
    const b = await run('ssh', [...ssh, 'sudo -n true'], { timeoutMs: 30_000 });
    if (b.code !== 0) throw new Error(`ssh sudo -n true failed: ${b.stderr}`);
    floor.sshSudo.push(b.ms);
    const c = await run(process.execPath, ['--input-type=module', '-e', inprocScript], { timeoutMs: 30_000 });
    if (c.code !== 0) throw new Error(`the in-process floor failed: ${c.stderr}`);
    floor.inproc.push({ ...JSON.parse(c.stdout), wall: c.ms });
  }
  const floorLoad = floorMeter();
  const nodeMs = median(floor.node);
  const sshMs = median(floor.ssh);
  const sudoMs = median(floor.sshSudo) - sshMs;
  const floorMs = nodeMs + sshMs + sudoMs;

  // -------------------------------------------------------------------------------------------
  // The rounds.

  const wsgiOf = (dir) => path.join(dir, 'example/hello/wsgi.py');
  const originals = new Map([hello, hola].map((d) => [d, readFileSync(wsgiOf(d), 'utf8')]));
  let edit = 0;
  const scenarios = [
    { key: 'noop', label: 'no-op deploy', prepare: () => {} },
    {
      key: 'template',
      label: 'one template changed (nginx client_max_body_size)',
      prepare: (tool) => {
        const size = `${20 + ++edit}m`;
        if (tool === 'stack') inventories(hello, 'hello', size);
        else {
          vars.client_max_body_size = size;
          writeVars();
        }
      },
    },
    {
      key: 'code',
      label: 'one Python file changed',
      prepare: (tool) => {
        const dir = tool === 'stack' ? hello : hola;
        writeFileSync(wsgiOf(dir), `${originals.get(dir)}\n# bench edit ${++edit}\n`);
      },
    },
  ];
  const results = [];
  let cutShort = false;
  for (const hosts of [...new Set([1, HOSTS])]) {
    const inventory = hosts === 1 ? 'one.yml' : 'all.yml';
    for (const sc of scenarios) {
      if (Date.now() > DEADLINE) {
        cutShort = true;
        break;
      }
      const row = { hosts, ...sc, stack: [], ansible: [], stackTrips: new Set(), ansibleExecs: Number.NaN, flags: new Set() };
      const meter = contentionMeter();
      const once = async (tool, timed, verbose = false) => {
        sc.prepare(tool);
        if (tool === 'stack') {
          const r = await stack(hello, inventory, 'deploy', 'prod');
          if (timed && (sc.key === 'noop') !== (r.changes === 0)) row.flags.add(`stack changed ${r.changes}`);
          if (timed) {
            row.stack.push(r);
            for (const t of r.trips) row.stackTrips.add(t);
          }
        } else {
          const r = await ansible(hosts, verbose);
          if (timed && (sc.key === 'noop') !== (r.changes === 0)) row.flags.add(`ansible changed ${r.changes}`);
          if (verbose) row.ansibleExecs = r.execs;
          if (timed) row.ansible.push(r);
        }
      };
      // The warm-up; on one host, Ansible's runs OpenSSH with -vvv so its connections can be counted.
      await once('stack', false);
      await once('ansible', false, hosts === 1);
      for (let i = 0; i < ROUNDS && Date.now() < DEADLINE; i++) {
        for (const tool of i % 2 === 0 ? ['stack', 'ansible'] : ['ansible', 'stack']) await once(tool, true);
      }
      if (row.stack.length < ROUNDS || row.ansible.length < ROUNDS) cutShort = true;
      row.load = meter();
      results.push(row);
      console.error(`done: ${sc.label}, ${hosts} host(s)`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // The table.

  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  const spread = (rows) => `${s(median(rows.map((r) => r.ms)))} (${s(Math.min(...rows.map((r) => r.ms)))}-${s(Math.max(...rows.map((r) => r.ms)))})`;
  const contended = (l) => (l.othersCores > CONTENDED_CORES ? `CONTENDED ${l.othersCores.toFixed(2)}` : `${l.othersCores.toFixed(2)}`);
  const lines = [];
  const out = (line = '') => lines.push(line);
  out(`stack vs Ansible: ${HOSTS} sandbox(es) (Debian ${servers[0].release}), ${ROUNDS} alternating rounds after a warm-up, ${started.toISOString()}`);
  out(
    `node ${process.version}, ${spawnSync('ansible-playbook', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0]}, 2 cores shared; stack deploys hosts ${parallel ? 'IN PARALLEL (deploy --parallel exists)' : 'ONE AFTER ANOTHER (no --parallel yet)'}`,
  );
  out(`others' CPU use before starting: ${before.othersCores.toFixed(2)} cores (load ${before.loadMax.toFixed(2)})`);
  out();
  const head = [
    'scenario',
    'hosts',
    'stack median (min-max)',
    'stack CPU',
    'Ansible median (min-max)',
    'stack/Ansible',
    'stack trips/host',
    'Ansible ssh/host',
    "others' cores",
  ];
  const table = [head];
  for (const r of results) {
    const ratio = median(r.stack.map((x) => x.ms)) / median(r.ansible.map((x) => x.ms));
    table.push([
      `${r.label}${r.flags.size ? ` [${[...r.flags].join(', ')}]` : ''}`,
      String(r.hosts),
      spread(r.stack),
      s(median(r.stack.map((x) => x.cpuMs))),
      spread(r.ansible),
      ratio.toFixed(2),
      [...r.stackTrips].sort((a, b) => a - b).join('/'),
      Number.isNaN(r.ansibleExecs) ? '' : String(r.ansibleExecs),
      contended(r.load),
    ]);
  }
  const widths = head.map((_, i) => Math.max(...table.map((row) => row[i].length)));
  for (const row of table) out(row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  out();
  if (HOSTS > 1) {
    const of = (key, hosts, tool) => {
      const r = results.find((x) => x.key === key && x.hosts === hosts);
      return r ? median(r[tool].map((x) => x.ms)) : Number.NaN;
    };
    const overlap = (key) => {
      const r = results.find((x) => x.key === key && x.hosts === HOSTS);
      return r ? median(r.stack.map((x) => (x.hostSeconds * 1000) / x.ms)) : Number.NaN;
    };
    for (const sc of scenarios) {
      out(
        `${HOSTS} hosts / 1 host, ${sc.label}: stack ${(of(sc.key, HOSTS, 'stack') / of(sc.key, 1, 'stack')).toFixed(2)}x${parallel ? '' : ' (sequential)'}, Ansible ${(of(sc.key, HOSTS, 'ansible') / of(sc.key, 1, 'ansible')).toFixed(2)}x; stack's hosts overlapped ${overlap(sc.key).toFixed(1)}x (sum of per-host times / wall)`,
      );
    }
    const big = results.filter((r) => r.hosts === HOSTS).flatMap((r) => r.stack.map((x) => x.rssKb));
    out(
      `stack's peak memory during ${HOSTS}-host deploys (GNU time, max RSS): median ${(median(big) / 1024).toFixed(0)} MiB, max ${(Math.max(...big) / 1024).toFixed(0)} MiB`,
    );
  }
  const one = results.filter((r) => r.hosts === 1).flatMap((r) => r.stack.map((x) => x.rssKb));
  const ansibleRss = results.flatMap((r) => r.ansible.map((x) => x.rssKb));
  out(
    `stack's peak memory on 1 host: median ${(median(one) / 1024).toFixed(0)} MiB; ansible-playbook's largest process: median ${(median(ansibleRss) / 1024).toFixed(0)} MiB`,
  );
  out();
  const noop1 = results.find((r) => r.key === 'noop' && r.hosts === 1);
  const ip = (k) => median(floor.inproc.map((x) => x[k]));
  out(
    `floor (${FLOOR_RUNS} runs, medians; others' cores ${contended(floorLoad)}): node -e 0 ${s(nodeMs)}; ssh deploy@host true ${s(sshMs)} (OpenSSH, stack's sandbox options); ssh deploy@host sudo -n true ${s(median(floor.sshSudo))} (sudo adds ${s(sudoMs)}); sum ${s(floorMs)}`,
  );
  out(
    `  in node, as stack connects: process ${s(ip('wall'))} = start ${s(ip('start'))} + loading src/ssh/connect ${s(ip('load'))} + ssh2 connect ${s(ip('connect'))} + exec true ${s(ip('exec'))} + sudo -n true ${s(ip('sudo'))}`,
  );
  if (noop1) out(`no-op on 1 host / floor: ${(median(noop1.stack.map((x) => x.ms)) / floorMs).toFixed(2)}x (aim: within 2x)`);
  const code1 = results.find((r) => r.key === 'code' && r.hosts === 1);
  if (code1) out(`code change on 1 host: ${s(median(code1.stack.map((x) => x.ms)))} (aim: under 1.5 s)`);
  if (cutShort) out(`CUT SHORT: the ${process.env.BUDGET_MINUTES ?? 40}-minute budget ran out; rows have fewer rounds than ${ROUNDS}`);
  if (!filesOk) out("WARNING: the playbook did not reproduce stack's files exactly (see above)");
  console.log(lines.join('\n'));
  writeFileSync(path.join(work, 'table.txt'), `${lines.join('\n')}\n`);
  console.error(`(also in ${path.join(work, 'table.txt')})`);

  // Ansible's control masters would outlive the sandboxes by a minute; close them now. Their
  // sockets are named by a hash of Ansible's own, so each is named here by its file.
  for (const socket of readdirSync(path.join(ans, 'cp'))) {
    await run('ssh', ['-o', `ControlPath=${path.join(ans, 'cp', socket)}`, '-O', 'exit', 'bench'], { timeoutMs: 10_000 });
  }
} finally {
  for (const name of names) await sandboxDown(name).catch((err) => console.error(`could not stop ${name}: ${err.message}`));
  stopping = true;
}
