/**
 * Everything the app runs besides the web, on a fresh server: a worker that takes jobs from the
 * app's Redis (test/fixtures/worker, python3-redis from Debian), a scheduled job every 10 s, and
 * the deploys that keep them in step. A job queued through the web comes back through the web; a
 * deploy of new code restarts the workers (new PIDs) while the job one of them holds finishes;
 * the scheduled job runs on its own and never twice at once, not even across a deploy; scale
 * 3 -> 1 leaves one instance; a worker that crashes at start fails the deploy and the previous
 * release comes back with its workers; a process taken out of the inventory is gone.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { ROOT, stack, type CliResult } from '../helpers/cli.js';
import { stepTimer } from '../helpers/timing.js';
import { bootSandbox, rootExec, type SandboxInfo } from '../helpers/sandbox.js';

const APP = 'tasks';
const DOMAIN = 'tasks.work.test';

let server: SandboxInfo;
let dir: string;
const { timed, report } = stepTimer('processes');

function run(args: string[]): CliResult {
  return stack(args, { cwd: dir });
}

function deploy(label: string): CliResult {
  const r = run(['deploy', 'sbx']);
  process.stderr.write(`[processes] ${label}: exit ${r.code}\n`);
  return r;
}

// biome-ignore lint/suspicious/noExplicitAny: the inventory as plain YAML data
function editInventory(change: (doc: Record<string, any>) => void): void {
  const file = path.join(dir, 'inventory.yml');
  const doc = parse(readFileSync(file, 'utf8'));
  change(doc);
  writeFileSync(file, stringify(doc));
}

/** A request to the app through nginx on the sandbox: status and JSON body. */
// biome-ignore lint/suspicious/noExplicitAny: the app's JSON, whatever the path answers
async function get(pathname: string): Promise<{ status: number; body: any }> {
  const r = await runProgram(
    'curl',
    ['-s', '--max-time', '10', '-w', '\n%{http_code}', '--resolve', `${DOMAIN}:80:${server.address}`, `http://${DOMAIN}${pathname}`],
    15_000,
  );
  const at = r.stdout.lastIndexOf('\n');
  const body = r.stdout.slice(0, at);
  return { status: Number(r.stdout.slice(at + 1)), body: body ? JSON.parse(body) : null };
}

/** Polls `fn` every half second until it returns something, for at most `seconds`. */
async function until<T>(seconds: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`nothing after ${seconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const result = (id: string) => until(20, async () => ((await get(`/result?id=${id}`)).status === 200 ? (await get(`/result?id=${id}`)).body : undefined));
const workers = async () => (await get('/workers')).body as Record<string, { pid: number; release: string }>;
const live = async () => (await get('/health')).body.release as string;
const active = (unit: string) => rootExec(server, `systemctl is-active ${unit} || true`);

/** New code: one more line in a module, so the release's source hash changes. */
function touchCode(mark: string): void {
  const file = path.join(dir, 'app/tasks/common.py');
  writeFileSync(file, `${readFileSync(file, 'utf8')}\n# ${mark}\n`);
}

describe('workers, a scheduled job and Redis, kept in step by deploys', () => {
  beforeAll(async () => {
    server = await timed('boot a fresh sandbox', () => bootSandbox('work'));
    dir = mkdtempSync(path.join(tmpdir(), 'stack-work-'));
    cpSync(path.join(ROOT, 'test/fixtures/worker'), path.join(dir, 'app'), { recursive: true });
    writeFileSync(
      path.join(dir, 'inventory.yml'),
      stringify({
        app: { name: APP, source: 'app', wsgi: 'tasks.web:application', health: '/health', packages: ['python3-redis'] },
        gateway: { server: 'gunicorn', workers: 2 },
        processes: { worker: { command: 'python -m tasks.worker', scale: 3, stop_timeout: 60 } },
        schedule: { tick: { command: 'python -m tasks.tick', on: '*:*:0/10' } },
        redis: true,
        environments: {
          sbx: {
            domains: [DOMAIN],
            ssl: 'none',
            hosts: [{ address: server.address, user: 'deploy', host_key: server.hostKey, identity_file: server.identityFile }],
          },
        },
      }),
    );
  }, 180_000);

  afterAll(() => report());

  it('renders the units, checked by systemd-analyze verify', () => {
    const r = run(['render', 'sbx', '--check']);
    expect(r.code, r.stderr).toBe(0);
    const out = run(['render', 'sbx']).stdout;
    expect(out).toContain(`/etc/systemd/system/${APP}.worker@.service`);
    expect(out).toContain('ExecStart=/bin/sh -c "exec python -m tasks.worker"');
    expect(out).toContain('TimeoutStopSec=60');
    expect(out).toContain('OnCalendar=*:*:0/10');
  });

  it('sets up and deploys: three workers, the timer, all enabled under the app target', async () => {
    const setup = await timed('stack setup', () => run(['setup', 'sbx']));
    expect(setup.code, setup.stderr).toBe(0);
    const r = await timed('stack deploy (first)', () => deploy('first deploy'));
    expect(r.code, r.stderr).toBe(0);
    for (const n of [1, 2, 3]) expect(await active(`${APP}.worker@${n}.service`)).toBe('active');
    expect(await rootExec(server, `systemctl is-enabled ${APP}.worker@1.service ${APP}.job.tick.timer ${APP}.target`)).toBe('enabled\nenabled\nenabled');
  });

  it('passes a job queued through the web to a worker and shows its result through the web', async () => {
    expect((await get('/enqueue?id=first&seconds=0')).status).toBe(200);
    const done = await result('first');
    expect(done.by).toMatch(/^worker@[123]$/);
    // Its instances' journal, by the process's name.
    const logs = run(['logs', 'sbx', 'worker', '-n', '20']);
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/tasks\.worker@[123]/);
  });

  it('runs the scheduled job on its own within 30 s', async () => {
    const ticks = await timed('first tick', () => until(30, async () => ((await get('/ticks')).body.length > 0 ? (await get('/ticks')).body : undefined)));
    expect(ticks[0].release).toBe(await live());
  });

  it('restarts the workers on new code once the web is healthy, and the job one holds finishes (warm stop)', async () => {
    const before = await workers();
    const oldRelease = await live();
    await get('/enqueue?id=inflight&seconds=6');
    // One of them holds it now.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    touchCode('new code 1');
    const r = await timed('stack deploy (new code, workers restart)', () => deploy('deploy new code'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/restart tasks\.worker@1\.service tasks\.worker@2\.service tasks\.worker@3\.service/);
    const done = await result('inflight');
    expect(done.release).toBe(oldRelease);
    expect(Object.values(before).map((w) => w.pid)).toContain(done.pid);
    const after = await workers();
    const newRelease = await live();
    expect(newRelease).not.toBe(oldRelease);
    for (const n of [1, 2, 3]) {
      expect(after[`worker@${n}`]!.release).toBe(newRelease);
      expect(after[`worker@${n}`]!.pid).not.toBe(before[`worker@${n}`]!.pid);
    }
  }, 120_000);

  it('never runs the scheduled job twice at once, not across a deploy either; a run finishes on its release', async () => {
    // Each run now takes 12 s, longer than the 10 s between its starts.
    editInventory((doc) => {
      doc.schedule.tick.command = 'python -m tasks.tick 12';
    });
    const r = deploy('deploy a slow tick');
    expect(r.code, r.stderr).toBe(0);
    // Wait until a run is under way, then deploy new code in the middle of it.
    await until(30, async () => ((await rootExec(server, `systemctl is-active ${APP}.job.tick.service || true`)) === 'activating' ? true : undefined));
    touchCode('new code 2');
    const mid = await timed('stack deploy while a job runs', () => deploy('deploy during a job'));
    const midEnd = Date.now() / 1000;
    expect(mid.code, mid.stderr).toBe(0);
    expect(mid.stderr).toMatch(/hold tasks\.job\.tick\.timer while the release switches/);
    const after = await live();
    await new Promise((resolve) => setTimeout(resolve, 30_000));
    const ticks = ((await get('/ticks')).body as { started: number; finished: number; release: string }[]).filter((t) => t.finished - t.started > 10);
    expect(ticks.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.started, JSON.stringify(ticks)).toBeGreaterThanOrEqual(ticks[i - 1]!.finished);
    // The run under way while the release switched finished on the release it started with.
    const across = ticks.find((t) => t.started < midEnd && t.finished > midEnd);
    expect(across, JSON.stringify({ midEnd, ticks })).toBeDefined();
    expect(across!.release).not.toBe(after);
    expect(ticks.at(-1)!.release).toBe(after);
  }, 150_000);

  it('leaves one instance when scaled from 3 to 1', async () => {
    editInventory((doc) => {
      doc.processes.worker.scale = 1;
    });
    const r = await timed('stack deploy (scale 3 -> 1)', () => deploy('scale down'));
    expect(r.code, r.stderr).toBe(0);
    expect(await active(`${APP}.worker@1.service`)).toBe('active');
    for (const n of [2, 3]) {
      expect(await active(`${APP}.worker@${n}.service`)).toBe('inactive');
      expect(await rootExec(server, `systemctl is-enabled ${APP}.worker@${n}.service || true`)).not.toBe('enabled');
    }
  }, 90_000);

  it('fails a deploy whose worker crashes at start, and the previous release comes back with its workers', async () => {
    const before = await live();
    writeFileSync(path.join(dir, 'app/CRASH_AT_START'), 'the worker of this release exits at once\n');
    try {
      const r = await timed('stack deploy (worker crashes)', () => deploy('crashing worker'));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/tasks\.worker@1\.service did not stay up/);
      expect(r.stderr).toMatch(/crashes at start/);
      expect(await live()).toBe(before);
      const w = await until(15, async () => {
        const now = (await workers())['worker@1'];
        return now && now.release === before && (await active(`${APP}.worker@1.service`)) === 'active' ? now : undefined;
      });
      expect(w.release).toBe(before);
      expect((await get('/enqueue?id=after-crash&seconds=0')).status).toBe(200);
      expect((await result('after-crash')).release).toBe(before);
    } finally {
      // The next deploys ship code without it.
      rmSync(path.join(dir, 'app/CRASH_AT_START'), { force: true });
    }
  }, 90_000);

  it('stops and removes a process taken out of the inventory', async () => {
    editInventory((doc) => {
      delete doc.processes;
    });
    const r = await timed('stack deploy (worker removed)', () => deploy('remove the worker'));
    expect(r.code, r.stderr).toBe(0);
    expect(await active(`${APP}.worker@1.service`)).not.toBe('active');
    expect(await rootExec(server, `ls /etc/systemd/system/${APP}.worker@.service 2>&1 || true`)).toMatch(/No such file/);
    expect(await active(`${APP}.job.tick.timer`)).toBe('active');
  }, 90_000);

  it('runs a job now with stack schedule run, and shows jobs and processes in status and logs', async () => {
    const r = await timed('stack schedule run', () => run(['schedule', 'run', 'sbx', 'tick']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/job tick success/);
    const status = run(['status', 'sbx']);
    expect(status.code, status.stdout).toBe(0);
    // Every 10 s, 12 s a run: the timer may have started the next run already.
    expect(status.stdout).toMatch(/job tick\s+(last .* \(success\), next |running now)/);
    expect(status.stdout).not.toMatch(/for -\d+s/);
    expect(run(['schedule', 'run', 'sbx', 'nosuchjob']).code).toBe(2);
  }, 90_000);

  it('puts back the processes of the release a rollback goes to', async () => {
    const r = await timed('stack rollback (worker comes back)', () => run(['rollback', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    expect(await rootExec(server, `ls /etc/systemd/system/${APP}.worker@.service`)).toContain('worker@.service');
    expect(await until(15, async () => ((await active(`${APP}.worker@1.service`)) === 'active' ? true : undefined))).toBe(true);
    expect(await active(`${APP}.job.tick.timer`)).toBe('active');
  }, 90_000);
});
