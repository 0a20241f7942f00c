#!/usr/bin/env node
// Deploy timings on a sandbox server (run as root after `npm run build`): the wall time of
// `stack deploy` with nothing to change, with one template changed and with new code, as medians of N runs
// (default 5), with the SSH round trips (exec calls) per host that each took.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { sandboxUp, sandboxDown } = await import(path.join(root, 'dist/sandbox/sandbox.js'));
const runs = Number(process.env.RUNS ?? 5);
const stackBin = path.join(root, 'bin/stack.js');

function median(v) {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function stack(dir, ...args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [stackBin, '--debug', ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`stack ${args.join(' ')} failed:\n${r.stderr}`);
  const trips = Number(r.stderr.match(/(\d+) ssh round trips/)?.[1] ?? NaN);
  const changes = Number(r.stderr.match(/changed (\d+) thing/)?.[1] ?? NaN);
  return { ms, trips, changes };
}

const name = `bench${process.pid % 1000}`;
const server = await sandboxUp({ name });
try {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-bench-'));
  cpSync(path.join(root, 'example'), path.join(dir, 'example'), { recursive: true });
  writeFileSync(
    path.join(dir, 'inventory.yml'),
    readFileSync(path.join(root, 'inventory.example.yml'), 'utf8')
      .replace(/domains: \[hello\.example\.com, www\.hello\.example\.com\]/, `domains: [${server.address}]`)
      .replace(/ssl: letsencrypt\n\s+email: ops@example.com/, 'ssl: none')
      .replace(
        /- \{ address: 203\.0\.113\.10, user: deploy, port: 22 \}/,
        `- { address: ${server.address}, user: deploy, host_key: "${server.hostKey}", identity_file: ${server.identityFile} }`,
      ),
  );
  mkdirSync(path.join(dir, '.stack/templates/nginx/partials'), { recursive: true });
  writeFileSync(path.join(dir, '.stack/secrets.prod'), 'SECRET_KEY=bench\n');
  chmodSync(path.join(dir, '.stack/secrets.prod'), 0o600);
  const headers = readFileSync(path.join(root, 'templates/nginx/partials/headers.hbs'), 'utf8');

  const first = stack(dir, 'setup', 'prod');
  const deploy = stack(dir, 'deploy', 'prod');
  console.log(
    `sandbox ${server.address}; setup ${first.ms.toFixed(0)} ms (${first.trips} round trips), first deploy ${deploy.ms.toFixed(0)} ms (${deploy.trips} round trips)`,
  );

  const noop = [];
  for (let i = 0; i < runs; i++) noop.push(stack(dir, 'deploy', 'prod'));
  const changed = [];
  for (let i = 0; i < runs; i++) {
    writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), `${headers}add_header X-Bench "${i}" always;\n`);
    changed.push(stack(dir, 'deploy', 'prod'));
  }
  // New code each time: upload, virtualenv, build, seal, restart.
  const code = [];
  const wsgi = path.join(dir, 'example/hello/wsgi.py');
  const original = readFileSync(wsgi, 'utf8');
  for (let i = 0; i < runs; i++) {
    writeFileSync(wsgi, `${original}\n# bench ${i}\n`);
    code.push(stack(dir, 'deploy', 'prod'));
  }
  const report = (label, rows) =>
    console.log(
      `${label.padEnd(34)} median ${median(rows.map((r) => r.ms))
        .toFixed(0)
        .padStart(5)} ms  (min ${Math.min(...rows.map((r) => r.ms)).toFixed(0)}, max ${Math.max(...rows.map((r) => r.ms)).toFixed(0)})  ` +
        `ssh round trips ${[...new Set(rows.map((r) => r.trips))].join('/')}  changes ${[...new Set(rows.map((r) => r.changes))].join('/')}`,
    );
  console.log(`${runs} runs each, wall time of the whole \`stack deploy\` process, node ${process.version}`);
  report('deploy, nothing to change', noop);
  report('deploy, one template changed', changed);
  report('deploy, new code', code);
} finally {
  await sandboxDown(name);
}
