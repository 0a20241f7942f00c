#!/usr/bin/env node
// Restarts under load on a sandbox server (run as root after `npm run build`): deploys the
// example app with GATEWAY (gunicorn or uwsgi, default uwsgi; THREADS per worker, default 1),
// then restarts the app RESTARTS times (default 50) with `systemctl restart`, exactly as a
// deploy does, while CLIENTS (default 4) clients send requests on fresh connections to /health
// through nginx. Prints every response that was not a 200 and what nginx logged about it.
// Traffic goes only to the sandbox address.
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { sandboxUp, sandboxDown } = await import(path.join(root, 'dist/sandbox/sandbox.js'));
const gateway = process.env.GATEWAY ?? 'uwsgi';
const restarts = Number(process.env.RESTARTS ?? 50);
const clients = Number(process.env.CLIENTS ?? 4);
const threads = Number(process.env.THREADS ?? 1);
const stackBin = path.join(root, 'bin/stack.js');

function stack(dir, ...args) {
  const r = spawnSync(process.execPath, [stackBin, ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  if (r.status !== 0) throw new Error(`stack ${args.join(' ')} failed:\n${r.stderr}`);
}

// The sandbox's own host key (fresh on every boot) is the only one accepted.
const knownHosts = path.join(mkdtempSync(path.join(tmpdir(), 'stack-bench-kh-')), 'known_hosts');
const sshArgs = (server) => [
  '-i',
  server.identityFile,
  '-o',
  `UserKnownHostsFile=${knownHosts}`,
  '-o',
  'StrictHostKeyChecking=yes',
  '-o',
  'LogLevel=ERROR',
  `deploy@${server.address}`,
];

function ssh(server, command) {
  const r = spawnSync('ssh', [...sshArgs(server), command], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh ${command} failed: ${r.stderr}`);
  return r.stdout;
}

const name = `rul${process.pid % 1000}`;
const server = await sandboxUp({ name });
try {
  if (!/^169\.254\./.test(server.address)) throw new Error(`not a sandbox address: ${server.address}`);
  writeFileSync(knownHosts, `${server.address} ${server.hostKey}\n`);
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-bench-'));
  cpSync(path.join(root, 'example'), path.join(dir, 'example'), { recursive: true });
  writeFileSync(
    path.join(dir, 'inventory.yml'),
    [
      'app: { name: hello, source: example, wsgi: "hello.wsgi:application", requirements: requirements.txt, health: /health, secrets: [SECRET_KEY] }',
      `gateway: { server: ${gateway}, workers: 2, threads: ${threads} }`,
      'environments:',
      '  sbx:',
      `    domains: [${server.address}]`,
      '    ssl: none',
      `    hosts: [{ address: ${server.address}, user: deploy, host_key: "${server.hostKey}", identity_file: ${server.identityFile} }]`,
      '',
    ].join('\n'),
  );
  mkdirSync(path.join(dir, '.stack'));
  writeFileSync(path.join(dir, '.stack/secrets.sbx'), 'SECRET_KEY=bench\n');
  chmodSync(path.join(dir, '.stack/secrets.sbx'), 0o600);
  stack(dir, 'setup', 'sbx');
  stack(dir, 'deploy', 'sbx');
  ssh(server, 'sudo truncate -s 0 /var/log/nginx/hello.error.log');

  const counts = { total: 0, ok: 0, failures: {} };
  let stopping = false;
  const agent = new http.Agent({ keepAlive: false });
  const one = () =>
    new Promise((resolve) => {
      const count = (key) => {
        counts.total++;
        if (key === '200') counts.ok++;
        else counts.failures[key] = (counts.failures[key] ?? 0) + 1;
        resolve();
      };
      const req = http.get(`http://${server.address}/health`, { agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => count(String(res.statusCode)));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (err) => count(err.code ?? err.message));
    });
  const loop = async () => {
    while (!stopping) await one();
  };
  const workers = Array.from({ length: clients }, loop);
  const started = Date.now();
  const perRestart = [];
  for (let i = 0; i < restarts; i++) {
    const before = counts.total;
    // Asynchronous, so the load loop keeps running in this process while systemd restarts.
    await new Promise((resolve, reject) => {
      // reset-failed also resets systemd's start rate limit (5 starts in 10 s), which these
      // back-to-back restarts would hit; a deploy never restarts that often.
      const p = spawn('ssh', [...sshArgs(server), 'sudo systemctl reset-failed hello; sudo systemctl restart hello'], { stdio: 'inherit' });
      p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`restart ${i} exited ${code}`))));
    });
    perRestart.push(counts.total - before);
    await new Promise((r) => setTimeout(r, 200));
  }
  stopping = true;
  await Promise.all(workers);
  agent.destroy();
  const ms = Date.now() - started;
  const errors = ssh(server, 'sudo cat /var/log/nginx/hello.error.log').trim();
  console.log(
    `${gateway} ${ssh(server, gateway === 'uwsgi' ? 'uwsgi --version' : '/usr/bin/gunicorn --version').trim()}, 2 workers x ${threads} thread(s), ${clients} clients, ${restarts} restarts in ${(ms / 1000).toFixed(1)} s`,
  );
  console.log(`requests ${counts.total}, 200: ${counts.ok}, failures ${JSON.stringify(counts.failures)}`);
  console.log(`requests answered while each restart ran: min ${Math.min(...perRestart)}, max ${Math.max(...perRestart)}`);
  const lines = errors ? errors.split('\n') : [];
  console.log(`nginx hello.error.log: ${lines.length} line(s)${lines.length > 0 ? `, the first ${Math.min(5, lines.length)}:` : ''}`);
  for (const l of lines.slice(0, 5)) console.log(`  ${l}`);
} finally {
  await sandboxDown(name);
}
