/**
 * Faults during deploys, on real sandbox servers, under a bounded load loop on /health:
 * - SIGKILL of the deploying process, 20 times, at seeded random points of every phase of a
 *   deploy (connect, facts, upload, virtualenv, stage+switch, restart, health, prune), timed
 *   from a normal deploy's phases; after each kill whatever runs on the server is left to finish,
 *   then the site must serve, the live files must be those recorded in the live release, and the
 *   next deploy must succeed and put the change live;
 * - the deploy user's SSH connection cut in the middle of a release upload;
 * - two deploys started at the same moment: the lock lets exactly one through;
 * - a deploy started while the activation of a killed client still runs on the server (it must
 *   not take the lock over as stale).
 * Every CLI run here is asynchronous: a spawnSync would freeze this process and its load loop.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Run, startStack } from '../helpers/cli.js';
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

const cli = (args: string[], cwd: string) => startStack(args, { cwd }).done;

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

interface ServerState {
  /** Deploy processes (sudo'd scripts, deploy-user SSH sessions) found at the first look. */
  busy: number;
  /** How long until none was left (0.1 s polls; two quiet polls in a row count). */
  waitedMs: number;
  current: string;
  manifest: boolean;
  differs: string[];
  leftovers: number;
  lock: 'held' | 'free';
  /** Release directories without a manifest (an upload that was cut off). */
  incomplete: number;
  extra: string;
}

/**
 * In one root session: first waits until nothing of a deploy runs on the server any more (no
 * sudo'd script: `sh /run/stack-script.*` for facts and activation, `sh -c stack_main...` for a release upload;
 * no SSH session of the deploy user), then compares the live files with the copies recorded in
 * the live release (the env file holds secrets: root reads it), checks the release's manifest,
 * looks for leftovers of staging and at the lock. `extra` is a shell command whose output (one
 * line) comes back as is.
 */
async function serverState(info: SandboxInfo, extra = 'true'): Promise<ServerState> {
  const script = [
    // [x]yz patterns never match this script's own shell.
    `pat='[s]udo -n -- sh|[s]tack-script|[s]tack_main|[s]shd: deploy'`,
    't0=$(date +%s%N); first=$(pgrep -f "$pat" | wc -l); quiet=0; i=0',
    'while [ $quiet -lt 2 ] && [ $i -lt 900 ]; do if pgrep -f "$pat" >/dev/null; then quiet=0; else quiet=$((quiet+1)); fi; i=$((i+1)); sleep 0.1; done',
    '[ $quiet -ge 2 ] || { echo "a deploy script still runs after 90 s:"; pgrep -af "$pat" | cut -c1-200; exit 1; } >&2',
    'echo "busy $first"; echo "waited $(( ($(date +%s%N) - t0) / 1000000 ))"',
    'cur=$(readlink /srv/hello/current || echo -)',
    'echo "current $cur"',
    'rel=/srv/hello/$cur',
    '[ -f "$rel/.stack-release.json" ] && echo "manifest yes" || echo "manifest no"',
    `for f in ${LIVE_FILES.join(' ')}; do cmp -s "$f" "$rel/.stack/config$f" || echo "differs $f"; done`,
    `echo "leftovers $(find /etc/nginx /etc/hello /etc/systemd/system /srv/hello -maxdepth 3 \\( -name '*.stack-new.*' -o -name '*.stack-bak.*' -o -name '*.partial' \\) | wc -l)"`,
    '[ -d /var/lib/stack/hello.lock ] && echo "lock held" || echo "lock free"',
    'echo "incomplete $(for r in /srv/hello/releases/*/; do [ -f "$r.stack-release.json" ] || echo "$r"; done | wc -l)"',
    `echo "extra $(${extra})"`,
  ].join('\n');
  const r = await sshExec(info, script, 'root', 120_000);
  if (r.code !== 0) throw new Error(`root@${info.address}: checking the server failed (exit ${r.code}): ${r.stderr}`);
  const out = r.stdout;
  const field = (k: string) =>
    out
      .split('\n')
      .filter((l) => l.startsWith(`${k} `))
      .map((l) => l.slice(k.length + 1));
  return {
    busy: Number(field('busy')[0]),
    waitedMs: Number(field('waited')[0]),
    current: field('current')[0] ?? '',
    manifest: field('manifest')[0] === 'yes',
    differs: field('differs'),
    leftovers: Number(field('leftovers')[0]),
    lock: field('lock')[0] as 'held' | 'free',
    incomplete: Number(field('incomplete')[0]),
    extra: field('extra')[0] ?? '',
  };
}

function expectConsistent(c: ServerState, context: string): void {
  expect({ context, current: c.current, manifest: c.manifest, differs: c.differs, leftovers: c.leftovers }).toEqual({
    context,
    current: expect.stringMatching(/^releases\/\d{8}T\d{6}\.\d{3}Z$/),
    manifest: true,
    differs: [],
    leftovers: 0,
  });
}

type Kind = 'code' | 'template';

/**
 * The phases of each kind of deploy, each starting when the CLI prints a step line, and how
 * many of the campaign's kills go into each. The timing of each phase comes from a normal deploy.
 */
const PHASES: Record<Kind, { phase: string; starts: RegExp | null; kills: number }[]> = {
  code: [
    { phase: 'connect', starts: null, kills: 1 },
    { phase: 'facts', starts: /: gather facts$/, kills: 1 },
    { phase: 'upload', starts: /: unpack release /, kills: 1 },
    { phase: 'build', starts: /: create virtualenv$/, kills: 2 },
    { phase: 'stage+switch', starts: /: switch current to release /, kills: 2 },
    { phase: 'restart', starts: /: restart hello$/, kills: 1 },
    { phase: 'health', starts: /: health check /, kills: 1 },
    { phase: 'prune', starts: /: keep the last /, kills: 1 },
  ],
  template: [
    { phase: 'connect', starts: null, kills: 1 },
    { phase: 'facts', starts: /: gather facts$/, kills: 2 },
    { phase: 'stage+switch', starts: /: release \S+ \(code of /, kills: 3 },
    { phase: 'restart', starts: /: reload nginx$/, kills: 2 },
    { phase: 'health', starts: /: health check /, kills: 1 },
    { phase: 'prune', starts: /: keep the last /, kills: 1 },
  ],
};

/** The last `host: step` line a deploy printed, and the phase it belongs to. */
function lastStep(stderr: string, address: string): { step: string; phase: string } {
  if (/^done: /m.test(stderr)) return { step: 'done', phase: 'finished' };
  const prefix = `${address}: `;
  const steps = stderr
    .split('\n')
    .filter((l) => l.startsWith(prefix) && !l.includes('stale deploy lock'))
    .map((l) => l.slice(prefix.length));
  const step = steps.at(-1);
  if (!step) return { step: '(no step yet)', phase: 'connect' };
  const phases: [RegExp, string][] = [
    [/^gather facts/, 'facts'],
    [/^unpack release/, 'upload'],
    [/^(create virtualenv|pip install|compile Python files)/, 'build'],
    [/^(release .*new configuration|update |create |set mode|link |remove |switch current|validate|hook: )/, 'stage+switch'],
    [/^(reload systemd|restart |reload nginx|enable |start )/, 'restart'],
    [/^health check/, 'health'],
    [/^keep the last/, 'prune'],
  ];
  return { step, phase: phases.find(([re]) => re.test(step))?.[1] ?? 'other' };
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
  cleanups.push(
    () => rmSync(dir, { recursive: true, force: true }),
    () => rmSync(dir2, { recursive: true, force: true }),
  );
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
    // 4 MB that do not compress: the upload lasts long enough to be cut by a kill.
    writeFileSync(path.join(dir, 'example/noise.bin'), randomBytes(4 * 1024 * 1024));
    let run = 0;
    /** Each deploy changes something: code (a new release is uploaded) or a template (nginx reload). */
    const change = (kind: Kind) => {
      run++;
      if (kind === 'code') appendFileSync(wsgi, `# run ${run}\n`);
      else writeFileSync(headers, `${BUILTIN_HEADERS}add_header X-Run "${run}" always;\n`);
      return run;
    };
    /** Prints 1 when run n's change is what the server has. */
    const applied = (kind: Kind, n: number) =>
      kind === 'code'
        ? `grep -c '^# run ${n}$' /srv/hello/current/hello/wsgi.py || true`
        : `grep -c 'X-Run "${n}"' /etc/nginx/sites-available/hello.conf || true`;

    // The load runs through the whole campaign, in one segment per run so that a failure can be
    // put next to the kill it followed.
    const url = `http://${server.address}/health`;
    let load = startLoad(url, { concurrency: 2, maxMs: 120_000, maxRequests: 1_000_000 });
    const segments: LoadResult[] = [];
    const nextSegment = async () => {
      const next = startLoad(url, { concurrency: 2, maxMs: 120_000, maxRequests: 1_000_000 });
      const r = await load.stop();
      load = next;
      segments.push(r);
      return r;
    };

    // A normal deploy of each kind, uninterrupted: how long it takes, and when each phase starts.
    const timeline = {} as Record<Kind, { ms: number; phases: Map<string, { start: number; length: number }> }>;
    for (const kind of ['code', 'template'] as const) {
      const n = change(kind);
      const d = startStack(['deploy', 'sbx'], { cwd: dir });
      const seen: [number, string][] = [];
      d.onStderrLine((line) => seen.push([Date.now() - d.startedAt, line]));
      const r = await d.done;
      expect(r.code, r.stderr).toBe(0);
      const phases = new Map<string, { start: number; length: number }>();
      const list = PHASES[kind];
      let previous = 0;
      const starts = list.map((p) => (previous = p.starts ? (seen.find(([, l]) => p.starts!.test(l))?.[0] ?? previous) : 0));
      for (const [i, p] of list.entries()) phases.set(p.phase, { start: starts[i]!, length: Math.max(10, (starts[i + 1] ?? r.ms) - starts[i]!) });
      timeline[kind] = { ms: r.ms, phases };
      expect((await serverState(server, applied(kind, n))).extra).toBe('1');
    }
    const baseline = await nextSegment();

    // 20 runs, code and template alternately; each kill goes at a seeded random point of its
    // phase, timed from the step line that starts it (so delays span 0 to 100 % of a deploy,
    // and a slow start cannot shift a kill into the wrong phase).
    const random = seeded(20261123);
    const queue = (kind: Kind) =>
      PHASES[kind].flatMap((p) =>
        Array.from({ length: p.kills }, () => ({ kind, target: p, offset: Math.round(random() * timeline[kind].phases.get(p.phase)!.length) })),
      );
    const codeRuns = queue('code');
    const templateRuns = queue('template');
    const plan = codeRuns.flatMap((c, i) => [c, templateRuns[i]!]);

    interface Outcome {
      run: number;
      kind: Kind;
      target: string;
      killedAt: number | null;
      step: string;
      phase: string;
      busy: number;
      waitedMs: number;
      incomplete: number;
      stale: boolean;
      requests: number;
      failures: number;
    }
    const outcomes: Outcome[] = [];
    for (const { kind, target, offset } of plan) {
      const n = change(kind);
      const d = startStack(['deploy', 'sbx'], { cwd: dir });
      let killedAt: number | null = null;
      const fire = () => {
        if (d.child.exitCode !== null || d.child.signalCode !== null) return;
        killedAt = Date.now() - d.startedAt;
        d.child.kill('SIGKILL');
      };
      if (!target.starts) {
        setTimeout(fire, offset);
      } else {
        let armed = false;
        d.onStderrLine((line) => {
          if (armed || !target.starts!.test(line)) return;
          armed = true;
          setTimeout(fire, offset);
        });
      }
      const r = await d.done;
      const { step, phase } = killedAt === null ? { step: 'done', phase: 'finished' } : lastStep(r.stderr, server.address);
      if (killedAt === null) expect(r.code, r.stderr).toBe(0);
      const context = `run ${n} (${kind}, ${killedAt === null ? 'not killed' : `killed at ${killedAt} ms during "${step}"`})`;

      // (a) whatever still runs on the server finishes (or rolls back) on its own; then
      // (b) the site serves and (c) what is live is what the live release recorded.
      const state = await serverState(server);
      expect((await get(server, '/health')).status, context).toBe(200);
      expectConsistent(state, context);
      // (d) the next deploy succeeds, clearing the dead process's lock if need be, and the
      // change is live.
      const next = await cli(['deploy', 'sbx'], dir);
      expect(next.code, `${context}, then a deploy: ${next.stderr}`).toBe(0);
      expect((await get(server, '/health')).status, context).toBe(200);
      const after = await serverState(server, applied(kind, n));
      expectConsistent(after, `${context}, then a deploy`);
      expect(after.lock, context).toBe('free');
      expect(after.incomplete, `${context}: releases without a manifest`).toBe(0);
      expect(after.extra, `${context}: the change is live`).toBe('1');

      const seg = await nextSegment();
      outcomes.push({
        run: n,
        kind,
        target: target.phase,
        killedAt,
        step,
        phase,
        busy: state.busy,
        waitedMs: state.waitedMs,
        incomplete: state.incomplete,
        stale: /clearing a stale deploy lock/.test(next.stderr),
        requests: seg.total,
        failures: failed(seg),
      });
      if (failed(seg) > 0) console.log(`${context}: ${failed(seg)} failed requests ${JSON.stringify(seg.failures)}`);
    }
    segments.push(await load.stop());

    const total = segments.reduce((s, r) => s + r.total, 0);
    const failures = segments.reduce((s, r) => s + failed(r), 0);
    const kills = outcomes.filter((o) => o.killedAt !== null);
    const byPhase: Record<string, number> = {};
    for (const o of outcomes) byPhase[o.phase] = (byPhase[o.phase] ?? 0) + 1;
    const t = (k: Kind) => `${timeline[k].ms} ms (${[...timeline[k].phases].map(([p, v]) => `${p} ${v.start}+${v.length}`).join(', ')})`;
    console.log(
      `SIGKILL campaign: normal code deploy ${t('code')}; template deploy ${t('template')}\n` +
        `SIGKILL campaign: ${outcomes.length} runs, ${kills.length} killed; phase hit ${JSON.stringify(byPhase)}; ` +
        `${kills.filter((o) => o.busy > 0).length} left a deploy script running on the server; next deploy cleared a stale lock ${outcomes.filter((o) => o.stale).length} times; ` +
        `${total} requests to /health, ${failures} not 200 (of which ${failed(baseline)} during the ${baseline.total} requests of the 2 measuring deploys)`,
    );
    for (const o of outcomes) {
      console.log(
        `  run ${String(o.run).padStart(2)} ${o.kind.padEnd(8)} aimed at ${o.target.padEnd(12)} ` +
          `${o.killedAt === null ? 'not killed: it had finished' : `killed at ${String(o.killedAt).padStart(4)} ms during "${o.step}" [${o.phase}]`}; ` +
          `${o.busy > 0 ? `server script went on for ~${o.waitedMs} ms` : 'nothing left running on the server'}${o.incomplete ? `, ${o.incomplete} release(s) without a manifest left` : ''}; ` +
          `next deploy ${o.stale ? 'cleared a stale lock' : 'found no lock'}; ${o.requests} requests, ${o.failures} failed`,
      );
    }

    expect(outcomes.length).toBeGreaterThanOrEqual(20);
    // The kills reached every part of a deploy.
    const hit = new Set(kills.map((o) => o.phase));
    for (const p of ['connect', 'facts']) expect([...hit], p).toContain(p);
    expect(
      [...hit].some((p) => ['upload', 'build'].includes(p)),
      'a kill during the upload',
    ).toBe(true);
    expect(
      [...hit].some((p) => ['stage+switch', 'restart', 'health'].includes(p)),
      'a kill during the activation',
    ).toBe(true);
    expect(total).toBeGreaterThan(500);
    expect(Object.assign({}, ...segments.map((s) => s.failures))).toEqual({});
    expect(failures).toBe(0);
  }, 480_000);

  it('keeps serving the previous release when the SSH connection drops in the middle of an upload', async () => {
    const before = await liveRelease(server2);
    const blob = path.join(dir2, 'example/blob.bin');
    // Large and incompressible: packing it takes about two seconds, so the cut lands mid-upload.
    writeFileSync(blob, randomBytes(100 * 1024 * 1024));
    const load = startLoad(`http://${server2.address}/health`, { concurrency: 2, maxMs: 90_000, maxRequests: 1_000_000 });

    // A root session opened beforehand waits for the word, then kills the deploy user's sshd
    // processes (never its own: it is root's). OpenSSH 9.8 and later (Debian 13) name a session's
    // processes "sshd-session: deploy ..." rather than "sshd: deploy ...".
    const khDir = mkdtempSync(path.join(tmpdir(), 'stack-flt-'));
    cleanups.push(() => rmSync(khDir, { recursive: true, force: true }));
    writeFileSync(path.join(khDir, 'known_hosts'), `${server2.address} ${server2.hostKey}\n`);
    const killer = spawn(
      'ssh',
      [
        ...sshOptions(server2.identityFile, path.join(khDir, 'known_hosts')),
        `root@${server2.address}`,
        `echo ready; read go; for i in $(seq 30); do if pgrep -x cat >/dev/null && ls /srv/hello/releases/.*.upload >/dev/null 2>&1; then echo uploading; break; fi; sleep 0.05; done; pkill -KILL -f '[s]shd(-session)?: deploy'; echo "killed $?"`,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    cleanups.push(() => killer.kill('SIGKILL'));
    let killerOut = '';
    const killerDone = new Promise<void>((resolve) => killer.on('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      killer.stdout!.on('data', (d: Buffer) => {
        killerOut += d.toString();
        if (killerOut.includes('ready')) resolve();
      });
      void killerDone.then(() => reject(new Error(`the root session ended early: ${killerOut}`)));
    });

    const d = startStack(['deploy', 'sbx'], { cwd: dir2, limitMs: 60_000 });
    let release = '';
    d.onStderrLine((line) => {
      const m = line.match(/: receive release (\d{8}T\d{6}\.\d{3}Z)$/);
      if (m && !release) {
        release = m[1]!;
        killer.stdin!.write('go\n');
      }
    });
    const r = await d.done;
    if (!release) killer.kill('SIGKILL');
    await Promise.race([killerDone, sleep(10_000)]);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('error:'));
    expect(r.signal, `the client did not exit by itself within 60 s: ${r.stderr}`).toBeNull();
    expect(release, r.stderr).not.toBe('');
    expect(killerOut).toContain('uploading'); // the cut came while the tarball was still arriving
    expect(killerOut).toMatch(/killed 0/);
    expect(r.code, r.stderr).toBe(1);
    expect(errors, r.stderr).toHaveLength(1);
    expect(errors[0]).toMatch(/deploy@169\.254\.\d+\.2: the connection was lost during "upload release \d{8}T\d{6}\.\d{3}Z"/);
    expect(r.stderr).toMatch(/hint: a step that had fully reached the server finishes/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr).not.toMatch(/create virtualenv/);

    // The previous release still serves; the cut one is not live and has no manifest.
    const state = await serverState(
      server2,
      `ls -d /srv/hello/releases/${release} /srv/hello/releases/${release}/.stack-release.json 2>/dev/null | tr '\\n' ' '`,
    );
    expect(await liveRelease(server2)).toBe(before);
    expectConsistent(state, 'after the SSH drop');
    expect(state.current).toBe(`releases/${before}`);
    expect(state.extra.trim()).toMatch(new RegExp(`^(/srv/hello/releases/${release.replace(/\./g, '\\.')})?$`));

    // The next deploy, without the blob and with a change of code, clears the dead process's
    // lock, puts a new release live and prunes the cut one.
    rmSync(blob);
    appendFileSync(path.join(dir2, 'example/hello/wsgi.py'), '# after the SSH drop\n');
    const next = await cli(['deploy', 'sbx'], dir2);
    expect(next.code, next.stderr).toBe(0);
    const now = await liveRelease(server2);
    expect(now).toBe(next.stderr.match(/done: .*release (\d{8}T\d{6}\.\d{3}Z)/)?.[1]);
    expect([before, release]).not.toContain(now);
    const after = await serverState(server2, `ls -d /srv/hello/releases/${release} 2>/dev/null || true`);
    expectConsistent(after, 'after the next deploy');
    expect(after.lock).toBe('free');
    expect(after.incomplete).toBe(0);
    expect(after.extra).toBe('');
    const result = await load.stop();
    console.log(
      `SSH drop mid-upload: sshd of the deploy user killed during "unpack release ${release}" (tar still receiving); client exit ${r.code} after ${r.ms} ms with ` +
        `"${errors[0]}"; server side ${state.busy > 0 ? `went on for ~${state.waitedMs} ms` : 'had already stopped'}; still live: ${before}, the cut release ${state.extra.trim() ? 'left without a manifest' : 'gone'}; ` +
        `next deploy exit ${next.code}${/clearing a stale deploy lock/.test(next.stderr) ? ' (cleared the stale lock)' : ''}, now live: ${now}, cut release pruned; ` +
        `${result.total} requests, ${failed(result)} not 200 ${JSON.stringify(result.failures)}`,
    );
    expect(result.failures).toEqual({});
  }, 120_000);

  it('lets exactly one of two simultaneous deploys through', async () => {
    const before = await liveRelease(server);
    appendFileSync(path.join(dir, 'example/hello/wsgi.py'), '# concurrent\n');
    const load = startLoad(`http://${server.address}/health`, { concurrency: 2, maxMs: 60_000, maxRequests: 1_000_000 });
    const a = startStack(['deploy', 'sbx'], { cwd: dir });
    const b = startStack(['deploy', 'sbx'], { cwd: dir });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    const runs = [
      { pid: a.child.pid, r: ra },
      { pid: b.child.pid, r: rb },
    ];
    expect(runs.map((x) => x.r.code).sort(), `${ra.stderr}\n---\n${rb.stderr}`).toEqual([0, 1]);
    const winner = runs.find((x) => x.r.code === 0)!;
    const loser = runs.find((x) => x !== winner)!;
    const errors = loser.r.stderr.split('\n').filter((l) => l.startsWith('error:'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(new RegExp(`another deploy holds the lock: .*\\(deploy sbx, pid ${winner.pid} on `));
    expect(loser.r.stderr).toMatch(/stack lock release sbx/);
    expect(loser.r.stderr).not.toMatch(/^\s+at /m);
    const release = winner.r.stderr.match(/done: .*release (\d{8}T\d{6}\.\d{3}Z)/)?.[1];
    expect(await liveRelease(server)).toBe(release);
    expect(release).not.toBe(before);
    const status = await cli(['lock', 'status', 'sbx'], dir);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/not locked/);
    const result = await load.stop();
    console.log(
      `Concurrent deploys: exits ${ra.code} and ${rb.code}; the other said "${errors[0]}"; live: ${release}; lock status: "${status.stdout.trim()}"; ` +
        `${result.total} requests, ${failed(result)} not 200 ${JSON.stringify(result.failures)}`,
    );
    expect(result.failures).toEqual({});
  }, 60_000);

  it('does not run a deploy alongside an activation that outlived its killed client', async () => {
    // A slow before_activate hook (think: a migration) that fails once. The client of the first
    // deploy is killed while the hook runs; its activation goes on on the server, by design, and
    // then rolls back. A deploy started meanwhile must not take the lock over as "stale" and go
    // live alongside: the rollback would then silently undo it.
    const inventory = path.join(dir2, 'inventory.yml');
    appendFileSync(
      inventory,
      'hooks:\n  before_activate:\n    - "if [ -e /srv/hello/shared/fail-once ]; then rm -f /srv/hello/shared/fail-once; sleep 4; echo migration failed; exit 1; fi"\n',
    );
    await root(server2, 'install -o hello -g hello -m 0640 /dev/null /srv/hello/shared/fail-once');
    const headers = path.join(dir2, '.stack/templates/nginx/partials/headers.hbs');
    mkdirSync(path.dirname(headers), { recursive: true });
    writeFileSync(headers, `${BUILTIN_HEADERS}add_header X-Run "A" always;\n`);

    const a = startStack(['deploy', 'sbx'], { cwd: dir2 });
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
    const state = await serverState(server2, `grep -o 'X-Run "[AB]"' /etc/nginx/sites-available/hello.conf || echo none`);
    const served = await runProgram('curl', ['-s', '-o', '/dev/null', '-D', '-', '--max-time', '10', `http://${server2.address}/`], 15_000);
    const reported = rb.stderr.match(/done: .*release (\d{8}T\d{6}\.\d{3}Z)/)?.[1];
    console.log(
      `Deploy after a killed activation: second deploy exit ${rb.code}${/clearing a stale deploy lock/.test(rb.stderr) ? ' after clearing the "stale" lock of the killed client' : ''}` +
        `${reported ? `, reported release ${reported} live` : `: "${rb.stderr.split('\n').find((l) => l.startsWith('error:'))}"`}; afterwards current is ${state.current}, ` +
        `hello.conf has ${state.extra}, nginx serves X-Run ${served.stdout.match(/^x-run: (.*)$/im)?.[1]?.trim() ?? 'none'}`,
    );
    expect((await get(server2, '/health')).status).toBe(200);
    expectConsistent(state, 'after both');
    // Either the second deploy refused (or waited for) the running activation, or what it
    // reported as live is live.
    if (rb.code === 0) {
      expect(state.current, rb.stderr).toBe(`releases/${reported}`);
      expect(state.extra).toBe('X-Run "B"');
    } else {
      expect(rb.stderr).toMatch(/another deploy holds the lock/);
    }
  }, 60_000);
});
