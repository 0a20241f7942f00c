/**
 * Faults during deploys, on real sandbox servers, under a bounded load loop on /health:
 * - the deploying process is SIGKILLed at delays spread over a whole deploy (connect, facts,
 *   upload, activation, health); after each kill the server-side script is left to finish, the
 *   site must still serve, the live files must be those recorded in the live release, and the
 *   next deploy must succeed;
 * - the SSH connection is cut in the middle of a release upload;
 * - two deploys start at the same moment: the lock lets exactly one through;
 * - a deploy started right after a client was killed mid-activation, while that activation
 *   still runs on the server.
 * Every CLI run here is asynchronous: a spawnSync would freeze this process and its load loop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STACK } from '../helpers/cli.js';
import { startLoad, type LoadResult } from '../helpers/load.js';
import { exampleProject } from '../helpers/project.js';
import { bootSandbox, sshExec, type SandboxInfo } from '../helpers/sandbox.js';
import { runProgram, sshOptions } from '../../src/sandbox/sandbox.js';

const LIVE_FILES = [
  '/etc/nginx/sites-available/hello.conf',
  '/etc/systemd/system/hello.service',
  '/etc/systemd/system/hello.socket',
  '/etc/hello/gunicorn.conf.py',
  '/etc/hello/env',
];
const BUILTIN_HEADERS = readFileSync(path.resolve(__dirname, '../../templates/nginx/partials/headers.hbs'), 'utf8');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: SandboxInfo; // the kill campaign, then the concurrent deploys
let dir: string;
let server2: SandboxInfo; // the SSH drop, then the deploy after a killed activation
let dir2: string;
const cleanups: (() => void)[] = [];
afterAll(() => {
  for (const c of cleanups) c();
});

// ---------------------------------------------------------------------------------------------

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

interface Started {
  child: ChildProcess;
  done: Promise<Run>;
  stderr: () => string;
  onStderrLine: (fn: (line: string) => void) => void;
}

/** The built CLI as a real, asynchronous process (killed if it runs longer than limitMs). */
function startCli(args: string[], cwd: string, limitMs = 120_000): Started {
  const t0 = Date.now();
  const child = spawn(process.execPath, [STACK, ...args], { cwd, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let partial = '';
  const listeners: ((line: string) => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    const text = d.toString();
    stderr += text;
    partial += text;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      for (const fn of listeners) fn(line);
    }
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), limitMs);
  const done = new Promise<Run>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
  return { child, done, stderr: () => stderr, onStderrLine: (fn) => listeners.push(fn) };
}

const cli = (args: string[], cwd: string) => startCli(args, cwd).done;

async function root(info: SandboxInfo, command: string): Promise<string> {
  const r = await sshExec(info, command, 'root', 30_000);
  if (r.code !== 0) throw new Error(`root@${info.address}: ${command}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

/** One request on a fresh connection to the sandbox. */
async function get(info: SandboxInfo, pathname: string): Promise<{ status: number; body: string }> {
  const r = await runProgram('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '10', `http://${info.address}${pathname}`], 15_000);
  const nl = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl) };
}

async function liveRelease(info: SandboxInfo): Promise<string> {
  const h = await get(info, '/health');
  expect(h.status).toBe(200);
  return (JSON.parse(h.body) as { release: string }).release;
}

/**
 * Waits until nothing of a deploy runs on the server any more: no sudo'd script (`sh -s` for
 * facts and activation, `sh -c stack_main...` for a release upload) and no SSH session of the
 * deploy user. Quiet twice in a row counts. Returns how long it took.
 */
async function waitIdle(info: SandboxInfo, timeoutMs = 90_000): Promise<number> {
  const t0 = Date.now();
  let quiet = 0;
  while (Date.now() - t0 < timeoutMs) {
    // [x]yz patterns never match this command's own shell.
    const r = await sshExec(info, `pgrep -f '[s]udo -n -- sh|^sh -s$|[s]tack_main|[s]shd: deploy' || true`, 'root', 30_000);
    if (r.code === 0 && r.stdout.trim() === '') {
      if (++quiet >= 2) return Date.now() - t0;
    } else {
      quiet = 0;
    }
    await sleep(150);
  }
  throw new Error(`a deploy script still runs on ${info.address} after ${timeoutMs} ms`);
}

interface Consistency {
  current: string;
  manifest: boolean;
  differs: string[];
  leftovers: number;
  lock: 'held' | 'free';
  extra: string;
}

/**
 * The live files against the copies recorded in the live release (root: the env file holds
 * secrets), the release's manifest, leftovers of staging, and the lock. `extra` is a shell
 * command whose output comes back as is.
 */
async function consistency(info: SandboxInfo, extra = 'true'): Promise<Consistency> {
  const script = [
    'cur=$(readlink /srv/hello/current || echo -)',
    'echo "current $cur"',
    'rel=/srv/hello/$cur',
    '[ -f "$rel/.stack-release.json" ] && echo "manifest yes" || echo "manifest no"',
    `for f in ${LIVE_FILES.join(' ')}; do cmp -s "$f" "$rel/.stack/config$f" || echo "differs $f"; done`,
    `echo "leftovers $(find /etc/nginx /etc/hello /etc/systemd/system /srv/hello -maxdepth 3 \\( -name '*.stack-new.*' -o -name '*.stack-bak.*' -o -name '*.partial' \\) | wc -l)"`,
    '[ -d /var/lib/stack/hello.lock ] && echo "lock held" || echo "lock free"',
    `echo "extra $(${extra})"`,
  ].join('\n');
  const out = await root(info, script);
  const field = (k: string) => out.split('\n').filter((l) => l.startsWith(`${k} `)).map((l) => l.slice(k.length + 1));
  return {
    current: field('current')[0] ?? '',
    manifest: field('manifest')[0] === 'yes',
    differs: field('differs'),
    leftovers: Number(field('leftovers')[0]),
    lock: field('lock')[0] as 'held' | 'free',
    extra: field('extra')[0] ?? '',
  };
}

function expectConsistent(c: Consistency, context: string): void {
  expect({ context, ...c, extra: undefined }).toEqual({ context, current: expect.stringMatching(/^releases\/\d{8}T\d{6}Z$/), manifest: true, differs: [], leftovers: 0, lock: c.lock, extra: undefined });
}

/** The last `host: step` line a deploy printed, and the phase it belongs to. */
function lastStep(stderr: string, address: string): { step: string; phase: string } {
  if (/^done: /m.test(stderr)) return { step: 'done', phase: 'finished' };
  const prefix = `${address}: `;
  const steps = stderr.split('\n').filter((l) => l.startsWith(prefix) && !l.includes('stale deploy lock')).map((l) => l.slice(prefix.length));
  const step = steps.at(-1);
  if (!step) return { step: '(none yet)', phase: 'connect' };
  const phase = /^gather facts/.test(step)
    ? 'facts'
    : /^(unpack release|create virtualenv|pip install|compile Python files)/.test(step)
      ? 'upload'
      : /^(release .*new configuration|update |create |set mode|link |remove |switch current|validate|hook)/.test(step)
        ? 'stage+switch'
        : /^(reload systemd|restart|reload nginx|enable|start)/.test(step)
          ? 'restart'
          : /^health check/.test(step)
            ? 'health'
            : /^keep the last/.test(step)
              ? 'prune'
              : 'other';
  return { step, phase };
}

/** mulberry32: a fixed seed gives the same spread of delays on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const failed = (r: LoadResult) => r.total - r.ok;

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  [server, server2] = await Promise.all([bootSandbox('flt'), bootSandbox('fltssh')]);
  dir = exampleProject(server);
  dir2 = exampleProject(server2);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => rmSync(dir2, { recursive: true, force: true }));
  const setups = await Promise.all([cli(['setup', 'sbx'], dir), cli(['setup', 'sbx'], dir2)]);
  for (const s of setups) expect(s.code, s.stderr).toBe(0);
  const deploys = await Promise.all([cli(['deploy', 'sbx'], dir), cli(['deploy', 'sbx'], dir2)]);
  for (const d of deploys) expect(d.code, d.stderr).toBe(0);
}, 180_000);

describe('faults during deploys', () => {
  it('survives SIGKILL of the deploying process at any point of a deploy', async () => {
    const wsgi = path.join(dir, 'example/hello/wsgi.py');
    const headers = path.join(dir, '.stack/templates/nginx/partials/headers.hbs');
    mkdirSync(path.dirname(headers), { recursive: true });
    let run = 0;
    let lastStart = 0;
    /** Each deploy changes something: code (a new release is uploaded) or a template (nginx reload). */
    const change = (kind: 'code' | 'template') => {
      run++;
      if (kind === 'code') appendFileSync(wsgi, `# run ${run}\n`);
      else writeFileSync(headers, `${BUILTIN_HEADERS}add_header X-Run "${run}" always;\n`);
      return run;
    };
    /** Release ids have one-second resolution: never two deploys in the same second. */
    const spaced = async () => {
      const wait = lastStart + 1100 - Date.now();
      if (wait > 0) await sleep(wait);
      lastStart = Date.now();
    };
    const applied = (kind: 'code' | 'template', n: number) =>
      kind === 'code' ? `grep -c '^# run ${n}$' /srv/hello/current/hello/wsgi.py || true` : `grep -c 'X-Run "${n}"' /etc/nginx/sites-available/hello.conf || true`;

    let load = startLoad(`http://${server.address}/health`, { concurrency: 2, maxMs: 120_000 });
    const segments: LoadResult[] = [];
    const nextSegment = async () => {
      const next = startLoad(`http://${server.address}/health`, { concurrency: 2, maxMs: 120_000 });
      const r = await load.stop();
      load = next;
      segments.push(r);
      return r;
    };

    // A normal deploy of each kind, uninterrupted, to know how long one takes.
    const duration: Record<'code' | 'template', number> = { code: 0, template: 0 };
    for (const kind of ['code', 'template'] as const) {
      const n = change(kind);
      await spaced();
      const r = await cli(['deploy', 'sbx'], dir);
      expect(r.code, r.stderr).toBe(0);
      duration[kind] = r.ms;
      expect((await consistency(server, applied(kind, n))).extra).toBe('1');
    }
    const baseline = await nextSegment();

    // 20 runs, alternating kinds; each kind's delays are spread from 0 to 110 % of its duration
    // (one delay per equal slice, at a seeded random point of the slice).
    const RUNS = 20;
    const random = seeded(20261123);
    const perKind = RUNS / 2;
    const plan = Array.from({ length: RUNS }, (_, i) => {
      const kind = i % 2 === 0 ? ('code' as const) : ('template' as const);
      const j = Math.floor(i / 2);
      return { kind, delay: Math.round(((j + random()) / perKind) * 1.1 * duration[kind]) };
    });

    interface Record_ {
      run: number;
      kind: string;
      delay: number;
      killed: boolean;
      step: string;
      phase: string;
      serverMs: number;
      stale: boolean;
      failures: number;
      requests: number;
    }
    const records: Record_[] = [];
    for (const { kind, delay } of plan) {
      const n = change(kind);
      await spaced();
      const d = startCli(['deploy', 'sbx'], dir);
      await sleep(delay);
      const killed = d.child.exitCode === null && d.child.signalCode === null && d.child.kill('SIGKILL');
      const r = await d.done;
      const { step, phase } = killed ? lastStep(r.stderr, server.address) : { step: 'done', phase: 'finished' };
      if (!killed) expect(r.code, r.stderr).toBe(0);
      const context = `run ${n} (${kind}, killed at ${delay} ms during ${step})`;

      // (a) the server-side script, if any, runs to its end (or rolls back) on its own.
      const serverMs = await waitIdle(server);
      // (b) the site serves, (c) what is live is what the live release recorded.
      expect((await get(server, '/health')).status, context).toBe(200);
      expectConsistent(await consistency(server), context);
      // (d) the next deploy succeeds (clearing the lock of the dead process if need be), and
      // the change is live.
      await spaced();
      const next = await cli(['deploy', 'sbx'], dir);
      expect(next.code, `${context}: ${next.stderr}`).toBe(0);
      expect((await get(server, '/health')).status, context).toBe(200);
      const after = await consistency(server, applied(kind, n));
      expectConsistent(after, `${context}, then a deploy`);
      expect(after.lock, context).toBe('free');
      expect(after.extra, `${context}: the change is live`).toBe('1');

      const seg = await nextSegment();
      records.push({ run: n, kind, delay, killed, step, phase, serverMs, stale: /clearing a stale deploy lock/.test(next.stderr), failures: failed(seg), requests: seg.total });
      if (failed(seg) > 0) console.log(`${context}: ${failed(seg)} failed requests ${JSON.stringify(seg.failures)}`);
    }
    const last = await load.stop();
    segments.push(last);

    const total = segments.reduce((s, r) => s + r.total, 0);
    const failures = segments.reduce((s, r) => s + failed(r), 0);
    const byPhase: Record<string, number> = {};
    for (const r of records) byPhase[r.phase] = (byPhase[r.phase] ?? 0) + 1;
    console.log(
      `SIGKILL campaign: normal deploy ${duration.code} ms (code) / ${duration.template} ms (template); ${records.length} runs, ` +
        `${records.filter((r) => r.killed).length} killed; kills per phase ${JSON.stringify(byPhase)}; ` +
        `stale locks cleared by the next deploy: ${records.filter((r) => r.stale).length}; ` +
        `${total} requests to /health, ${failures} not 200 (baseline ${baseline.total} requests, ${failed(baseline)} not 200)`,
    );
    for (const r of records) {
      console.log(
        `  run ${String(r.run).padStart(2)} ${r.kind.padEnd(8)} kill at ${String(r.delay).padStart(5)} ms: ${r.killed ? `during "${r.step}" [${r.phase}]` : 'deploy had already finished'}; ` +
          `server script ran ${r.serverMs} ms more; next deploy ${r.stale ? 'cleared a stale lock' : 'found no lock'}; ${r.requests} requests, ${r.failures} failed`,
      );
    }

    expect(records.length).toBeGreaterThanOrEqual(20);
    // The spread reached every part of a deploy.
    const phases = new Set(records.filter((r) => r.killed).map((r) => r.phase));
    for (const p of ['connect', 'facts', 'upload']) expect([...phases], p).toContain(p);
    expect([...phases].some((p) => ['stage+switch', 'restart', 'health'].includes(p)), 'a kill during activation').toBe(true);
    expect(total).toBeGreaterThan(500);
    expect(Object.assign({}, ...segments.map((s) => s.failures))).toEqual({});
    expect(failures).toBe(0);
  }, 300_000);

  it('keeps serving the previous release when the SSH connection drops in the middle of an upload', async () => {
    const before = await liveRelease(server2);
    const blob = path.join(dir2, 'example/blob.bin');
    writeFileSync(blob, randomBytes(40 * 1024 * 1024));
    const load = startLoad(`http://${server2.address}/health`, { concurrency: 2, maxMs: 90_000 });

    // A root session opened beforehand, waiting for the word: it then kills the deploy user's
    // sshd processes (never its own, which is root's).
    const khDir = mkdtempSync(path.join(tmpdir(), 'stack-flt-'));
    cleanups.push(() => rmSync(khDir, { recursive: true, force: true }));
    writeFileSync(path.join(khDir, 'known_hosts'), `${server2.address} ${server2.hostKey}\n`);
    const killer = spawn(
      'ssh',
      [
        ...sshOptions(server2.identityFile, path.join(khDir, 'known_hosts')),
        `root@${server2.address}`,
        `echo ready; read go; if pgrep -f '[t]ar -xzf - -C /srv/hello/releases' >/dev/null; then echo uploading; fi; pkill -KILL -f '[s]shd: deploy'; echo "killed $?"`,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    cleanups.push(() => killer.kill('SIGKILL'));
    let killerOut = '';
    const ready = new Promise<void>((resolve) =>
      killer.stdout!.on('data', (d: Buffer) => {
        killerOut += d.toString();
        if (killerOut.includes('ready')) resolve();
      }),
    );
    const killerDone = new Promise<void>((resolve) => killer.on('close', () => resolve()));
    await ready;

    const d = startCli(['deploy', 'sbx'], dir2);
    let release = '';
    d.onStderrLine((line) => {
      const m = line.match(/: unpack release (\d{8}T\d{6}Z)$/);
      if (m && !release) {
        release = m[1]!;
        killer.stdin!.write('go\n');
      }
    });
    const r = await d.done;
    await killerDone;
    const serverMs = await waitIdle(server2);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error:'));

    expect(release, r.stderr).not.toBe('');
    expect(killerOut).toContain('uploading'); // the cut came while the tarball was still arriving
    expect(killerOut).toMatch(/killed 0/);
    expect(r.code, r.stderr).toBe(1);
    expect(errors, r.stderr).toHaveLength(1);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toMatch(/create virtualenv/);
    // The previous release still serves; the cut one is not live and has no manifest.
    expect(await liveRelease(server2)).toBe(before);
    const c = await consistency(server2, `ls -d /srv/hello/releases/${release} /srv/hello/releases/${release}/.stack-release.json 2>/dev/null | tr '\\n' ' '`);
    expectConsistent(c, 'after the SSH drop');
    expect(c.current).toBe(`releases/${before}`);
    expect(c.extra.trim()).toMatch(new RegExp(`^(/srv/hello/releases/${release})?$`));

    // The next deploy (without the blob) clears the dead process's lock and succeeds.
    rmSync(blob);
    await sleep(1100);
    const next = await cli(['deploy', 'sbx'], dir2);
    expect(next.code, next.stderr).toBe(0);
    const now = await liveRelease(server2);
    expect(now).not.toBe(before);
    const after = await consistency(server2, `ls -d /srv/hello/releases/${release} 2>/dev/null || true`);
    expectConsistent(after, 'after the next deploy');
    expect(after.lock).toBe('free');
    expect(after.extra).toBe(''); // the incomplete release was pruned
    const result = await load.stop();
    console.log(
      `SSH drop mid-upload: killed sshd during "unpack release ${release}"; client exit ${r.code} after ${r.ms} ms with "${errors[0]}"; ` +
        `server script ended ${serverMs} ms after the client; still live: ${before}; next deploy exit ${next.code}` +
        `${/clearing a stale deploy lock/.test(next.stderr) ? ' (cleared the stale lock)' : ''}, now live: ${now}; ` +
        `${result.total} requests, ${failed(result)} not 200 ${JSON.stringify(result.failures)}`,
    );
    expect(result.failures).toEqual({});
  }, 120_000);

  it('lets exactly one of two simultaneous deploys through', async () => {
    const before = await liveRelease(server);
    appendFileSync(path.join(dir, 'example/hello/wsgi.py'), '# concurrent\n');
    const load = startLoad(`http://${server.address}/health`, { concurrency: 2, maxMs: 60_000 });
    await sleep(1100);
    const a = startCli(['deploy', 'sbx'], dir);
    const b = startCli(['deploy', 'sbx'], dir);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    const runs = [
      { pid: a.child.pid, r: ra },
      { pid: b.child.pid, r: rb },
    ];
    const winner = runs.find((x) => x.r.code === 0);
    const loser = runs.find((x) => x !== winner);
    expect(runs.map((x) => x.r.code).sort(), `${ra.stderr}\n---\n${rb.stderr}`).toEqual([0, 1]);
    const errors = loser!.r.stderr.split('\n').filter((l) => l.startsWith('error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(new RegExp(`another deploy holds the lock: .*\\(deploy sbx, pid ${winner!.pid} on `));
    expect(loser!.r.stderr).toMatch(/stack lock release sbx/);
    expect(loser!.r.stderr).not.toMatch(/^\s+at /m);
    const release = winner!.r.stderr.match(/release (\d{8}T\d{6}Z)/)?.[1];
    expect(await liveRelease(server)).toBe(release);
    expect(release).not.toBe(before);
    const status = await cli(['lock', 'status', 'sbx'], dir);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/not locked/);
    const result = await load.stop();
    console.log(
      `Concurrent deploys: exits ${ra.code} and ${rb.code}; the loser said "${errors[0]}"; live: ${release}; lock status: "${status.stdout.trim()}"; ` +
        `${result.total} requests, ${failed(result)} not 200 ${JSON.stringify(result.failures)}`,
    );
    expect(result.failures).toEqual({});
  }, 60_000);

  it('does not run a deploy alongside an activation that outlived its killed client', async () => {
    // A slow before_activate hook (think: a migration) that fails once. The client of the first
    // deploy is killed while the hook runs; its activation goes on on the server, by design. A
    // deploy started right then must not take over the lock as "stale" and go live alongside.
    const inventory = path.join(dir2, 'inventory.yml');
    appendFileSync(
      inventory,
      'hooks:\n  before_activate:\n    - "if [ -e /srv/hello/shared/fail-once ]; then rm -f /srv/hello/shared/fail-once; sleep 4; echo migration failed; exit 1; fi"\n',
    );
    await root(server2, 'install -o hello -g hello -m 0640 /dev/null /srv/hello/shared/fail-once');
    const headers = path.join(dir2, '.stack/templates/nginx/partials/headers.hbs');
    mkdirSync(path.dirname(headers), { recursive: true });
    writeFileSync(headers, `${BUILTIN_HEADERS}add_header X-Run "A" always;\n`);
    await sleep(1100);

    const a = startCli(['deploy', 'sbx'], dir2);
    const second = new Promise<Run>((resolve) => {
      let started = false;
      a.onStderrLine((line) => {
        if (started || !/: hook: /.test(line)) return;
        started = true;
        a.child.kill('SIGKILL');
        writeFileSync(headers, `${BUILTIN_HEADERS}add_header X-Run "B" always;\n`);
        setTimeout(() => void cli(['deploy', 'sbx'], dir2).then(resolve), 1100);
      });
    });
    const ra = await a.done;
    expect(ra.signal, ra.stderr).toBe('SIGKILL');
    const rb = await second;
    await waitIdle(server2);
    const c = await consistency(server2, `grep -o 'X-Run "[AB1-9]*"' /etc/nginx/sites-available/hello.conf || echo none`);
    const reported = rb.stderr.match(/done: .*release (\d{8}T\d{6}Z)/)?.[1];
    console.log(
      `Deploy after a killed activation: second deploy exit ${rb.code}${/clearing a stale deploy lock/.test(rb.stderr) ? ', after clearing the "stale" lock of the killed client' : ''}` +
        `${reported ? `, reported release ${reported} live` : ''}; on the server afterwards: current ${c.current}, hello.conf has ${c.extra}`,
    );
    expect((await get(server2, '/health')).status).toBe(200);
    expectConsistent(c, 'after both');
    // Either the second deploy refused (or waited for) the running activation, or what it
    // reported as live is live.
    if (rb.code === 0) {
      expect(c.current, rb.stderr).toBe(`releases/${reported}`);
      expect(c.extra).toBe('X-Run "B"');
    } else {
      expect(rb.stderr).toMatch(/another deploy holds the lock/);
    }
  }, 60_000);
});
