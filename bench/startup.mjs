#!/usr/bin/env node
// Start-up cost of the CLI, measured against a bare Node start on the same machine.
// Prints medians of N runs (default 10): `node -e 0`, `stack --help`, `stack render` of the
// example inventory, and each divided by the bare start. Run after `npm run build`.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.env.RUNS ?? 10);
const stack = path.join(root, 'bin/stack.js');
const example = path.join(root, 'inventory.example.yml');

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function time(args) {
  const samples = [];
  for (let i = 0; i < runs + 1; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    if (i > 0) samples.push(ms); // the first run warms the file cache
  }
  return median(samples);
}

const bare = time(['-e', '0']);
const rows = [
  ['node -e 0', bare],
  ['stack --help', time([stack, '--help'])],
  ['stack render prod (example)', time([stack, 'render', 'prod', '-i', example])],
];
console.log(`median of ${runs} runs, node ${process.version}, ${new Date().toISOString()}`);
for (const [name, ms] of rows) console.log(`${name.padEnd(30)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / bare).toFixed(2)}x bare node`);
