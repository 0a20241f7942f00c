#!/usr/bin/env node
// How long loading an inventory takes as it grows: generated inventories of about 100 KB,
// 500 KB and 1 MB (just under the 1 MiB limit), in four shapes that stress different parts of
// the loader: many env keys, many hosts, many secrets and domains, and many bad keys (every
// one reported, each located in the file). Prints the median of RUNS (default 3) loads, in
// process, from dist/ (run `npm run build` first; STACK_DIST=DIR loads another build), and the
// time to refuse a 3 MB file.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.resolve(process.env.STACK_DIST ?? path.join(root, 'dist'));
const runs = Number(process.env.RUNS ?? 3);
const { parseInventory } = await import(pathToFileURL(path.join(dist, 'inventory/load.js')).href);

const SIZES = [
  ['100 KB', 100_000],
  ['500 KB', 500_000],
  ['1 MB', 1_000_000],
];

const head = (env = '') => `app:\n  name: bench\n  wsgi: bench.wsgi:application\n${env}`;
const prod = (domains, hosts) => `environments:\n  prod:\n    domains:\n${domains}    hosts:\n${hosts}`;
const oneHost = '      - address: 203.0.113.10\n';
const oneDomain = '      - bench.example.com\n';

/** Repeats `line(i)` until the document is about `bytes` long; returns the text. */
function fill(bytes, fixed, line) {
  const parts = [];
  let size = fixed;
  for (let i = 0; size < bytes; i++) {
    const l = line(i);
    if (size + l.length > bytes) break;
    parts.push(l);
    size += l.length;
  }
  return parts.join('');
}

const pad = (i) => String(i).padStart(7, '0');
const SHAPES = {
  'env keys': (bytes) => {
    const tail = prod(oneDomain, oneHost);
    const body = fill(bytes, head('  env:\n').length + tail.length, (i) => `    KEY_${pad(i)}: value-${pad(i)}-abcdefghij\n`);
    return head(`  env:\n${body}`) + tail;
  },
  hosts: (bytes) => {
    const fixed = head().length + prod(oneDomain, '').length;
    const hosts = fill(
      bytes,
      fixed,
      (i) => `      - address: 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}\n        user: deploy\n        port: ${1024 + (i % 60000)}\n`,
    );
    return head() + prod(oneDomain, hosts);
  },
  'secrets + domains': (bytes) => {
    const half = Math.floor(bytes / 2);
    const secrets = fill(half, 0, (i) => `    - SECRET_${pad(i)}\n`);
    const domains = fill(bytes - half - 200, 0, (i) => `      - d${pad(i)}.example.com\n`);
    return head(`  secrets:\n${secrets}`) + prod(domains, oneHost);
  },
  'bad keys (errors)': (bytes) => {
    const tail = prod(oneDomain, oneHost);
    const body = fill(bytes, head('  env:\n').length + tail.length, (i) => `    bad-key-${pad(i)}: value-${pad(i)}-abc\n`);
    return head(`  env:\n${body}`) + tail;
  },
};

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function timeLoad(text) {
  const samples = [];
  let outcome = '';
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    try {
      parseInventory(text, 'bench.yml');
      outcome = 'loaded';
    } catch (err) {
      outcome = err?.problems ? `${err.problems.length} problems` : `threw ${err?.name}: ${String(err?.message).slice(0, 60)}`;
    }
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return { ms: median(samples), outcome };
}

const row = (shape, label, text) => {
  const { ms, outcome } = timeLoad(text);
  const kb = (Buffer.byteLength(text) / 1000).toFixed(0);
  console.log(`${shape.padEnd(18)} ${label.padStart(6)} (${kb.padStart(4)} kB)  ${ms.toFixed(1).padStart(9)} ms   ${outcome.slice(0, 60)}`);
};

console.log(`inventory load times, median of ${runs}, node ${process.version}, ${path.relative(root, dist) || dist}`);
for (const [shape, make] of Object.entries(SHAPES)) {
  for (const [label, bytes] of SIZES) row(shape, label, make(bytes));
}
// Past the limit: refused before parsing (SKIP_LARGE=1 leaves it out, for builds without the limit).
if (!process.env.SKIP_LARGE) row('env keys', '3 MB', SHAPES['env keys'](3_000_000));
