#!/usr/bin/env node
// Where a one-host deploy's time goes, and what a change to the CLI saves. Run as root; each
// argument is the root of a built CLI (bin/stack.js, dist/, templates/...; default: this
// repository). Boots the sandbox bench1, sets it up and deploys once with the first CLI, then
// times no-op deploys and one-Python-file deploys with every CLI in turn, in a rotating order,
// RUNS times (default 7). Prints each CLI's medians and, from one `node --cpu-prof` no-op run
// each, where its CPU time went, by package or stack folder, with idle time (waiting on the
// server or a child process) apart. Asserts nothing.
//
//   sudo node bench/variants.mjs /tmp/before /tmp/after
import { spawn } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const clis = (process.argv.length > 2 ? process.argv.slice(2) : [repo]).map((d) => path.resolve(d));
const RUNS = Math.max(1, Number(process.env.RUNS ?? 7));
const name = 'bench1';
const { sandboxUp, sandboxDown, sandboxDownSync } = await import(path.join(clis[0], 'dist/sandbox/sandbox.js'));
process.on('exit', () => sandboxDownSync(name, 10_000));
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
]) {
  process.once(signal, () => process.exit(code));
}

function run(cmd, args, cwd) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** CPU time of a .cpuprofile by where the code lives: a package, a stack folder, or V8's own buckets. */
function profileBuckets(file) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const buckets = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const node = byId.get(prof.samples[i]);
    const url = node.callFrame.url;
    let key = node.callFrame.functionName.startsWith('(') ? node.callFrame.functionName : 'node internals';
    const pkg = url.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/);
    const own = url.match(/\/dist\/([^/]+)\//);
    if (pkg) key = pkg[1];
    else if (own) key = `stack ${own[1]}/`;
    else if (url.includes('/dist/')) key = 'stack (top)';
    buckets.set(key, (buckets.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000);
  }
  return [...buckets.entries()].sort((a, b) => b[1] - a[1]);
}

const server = await sandboxUp({ name });
try {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-bench-variants-'));
  cpSync(path.join(repo, 'example'), path.join(dir, 'example'), { recursive: true });
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
gateway: { server: gunicorn, workers: 2, timeout: 30 }
environments:
  prod:
    domains: [hello.example.com]
    ssl: none
    hosts:
      - { address: ${server.address}, user: deploy, host_key: "${server.hostKey}", identity_file: ${server.identityFile} }
`,
  );
  mkdirSync(path.join(dir, '.stack'));
  writeFileSync(path.join(dir, '.stack/secrets.prod'), 'SECRET_KEY=bench\n');
  chmodSync(path.join(dir, '.stack/secrets.prod'), 0o600);
  const cpuFile = path.join(dir, 'cpu');
  const stack = async (cli, ...args) => {
    const node = [...(args[0] === '--cpu-prof' ? [args.shift(), '--cpu-prof-dir', args.shift()] : []), path.join(cli, 'bin/stack.js'), '--debug', ...args];
    // GNU time for the CPU the CLI itself used (user + system): what waiting on others' work
    // on the shared cores stretches least.
    const r = await run('/usr/bin/time', ['-f', '%U %S', '-o', cpuFile, process.execPath, ...node], dir);
    if (r.code !== 0) throw new Error(`${cli}: stack ${args.join(' ')} failed:\n${r.out}`);
    const [user, system] = readFileSync(cpuFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
    return {
      ms: r.ms,
      cpuMs: (user + system) * 1000,
      trips: Number(r.out.match(/(\d+) ssh round trips/)?.[1]),
      changes: Number(r.out.match(/changed (\d+) thing/)?.[1]),
    };
  };
  await stack(clis[0], 'setup', 'prod');
  await stack(clis[0], 'deploy', 'prod');
  const times = clis.map(() => ({ noop: [], code: [] }));
  const wsgi = path.join(dir, 'example/hello/wsgi.py');
  const original = readFileSync(wsgi, 'utf8');
  let edit = 0;
  const load = [loadavg()[0]];
  for (let i = 0; i < RUNS; i++) {
    const order = clis.map((_, k) => (k + i) % clis.length);
    for (const k of order) times[k].noop.push(await stack(clis[k], 'deploy', 'prod'));
    for (const k of order) {
      writeFileSync(wsgi, `${original}\n# edit ${++edit}\n`);
      times[k].code.push(await stack(clis[k], 'deploy', 'prod'));
    }
    load.push(loadavg()[0]);
  }
  console.log(
    `${RUNS} runs each, rotating order, 1 sandbox (${server.release}); load average ${Math.min(...load).toFixed(1)}-${Math.max(...load).toFixed(1)} on 2 cores`,
  );
  for (const [k, cli] of clis.entries()) {
    const t = times[k];
    const fmt = (rows) =>
      `${(median(rows.map((r) => r.ms)) / 1000).toFixed(3)} s (min ${(Math.min(...rows.map((r) => r.ms)) / 1000).toFixed(3)}), CPU ${(median(rows.map((r) => r.cpuMs)) / 1000).toFixed(3)} s, trips ${[...new Set(rows.map((r) => r.trips))].join('/')} changes ${[...new Set(rows.map((r) => r.changes))].join('/')}`;
    console.log(`${cli}\n  no-op        ${fmt(t.noop)}\n  code change  ${fmt(t.code)}`);
  }
  for (const cli of clis) {
    const profDir = mkdtempSync(path.join(tmpdir(), 'stack-prof-'));
    await stack(cli, '--cpu-prof', profDir, 'deploy', 'prod');
    const file = path.join(profDir, readdirSync(profDir)[0]);
    const buckets = profileBuckets(file);
    const total = buckets.reduce((n, [, ms]) => n + ms, 0);
    console.log(`${cli}: one no-op under --cpu-prof, ${total.toFixed(0)} ms sampled (${file})`);
    for (const [key, ms] of buckets.slice(0, 14)) console.log(`  ${key.padEnd(28)} ${ms.toFixed(1).padStart(7)} ms`);
  }
} finally {
  await sandboxDown(name);
}
