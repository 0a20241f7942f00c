/**
 * Locks, cuts and full disks on a real server: a client that goes silent in the middle of an
 * upload (the server must give up on its own and release the lock), a lock whose holder is gone
 * from another machine, and a disk too full for a release or even for the lock.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { startStack } from '../helpers/cli.js';
import { exampleProject, stackIn } from '../helpers/project.js';
import { bootSandbox, rootExec, type SandboxInfo } from '../helpers/sandbox.js';

let server: SandboxInfo;
let dir: string;

const run = (args: string[]) => stackIn(dir, args);
const root = (command: string) => rootExec(server, command);
async function health(): Promise<number> {
  const r = await runProgram('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', `http://${server.address}/health`], 15_000);
  return Number(r.stdout);
}
const wsgi = () => path.join(dir, 'example/hello/wsgi.py');
let version = 1;
function newCode(): void {
  version++;
  writeFileSync(wsgi(), readFileSync(wsgi(), 'utf8').replace(/"status": "ok"(, "version": \d+)?/, `"status": "ok", "version": ${version}`));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = await bootSandbox('lim');
  dir = exampleProject(server);
  // /srv on a small filesystem of its own, to fill it without filling the sandbox's memory.
  await root('mkdir -p /srv && mount -t tmpfs -o size=400m,mode=0755 tmpfs /srv');
  expect(run(['setup', 'sbx']).code).toBe(0);
  const first = run(['deploy', 'sbx']);
  expect(first.code, first.stderr).toBe(0);
}, 240_000);

describe('a client that goes silent during the upload', () => {
  it('is given up on by the server, which releases the lock; the next deploy needs no `lock release`', async () => {
    // Incompressible, so that packing and sending take a few seconds and can be caught half way.
    writeFileSync(path.join(dir, 'example/blob.bin'), randomBytes(60 * 1024 * 1024));
    newCode();
    const deploy = startStack(['deploy', 'sbx'], { cwd: dir, limitMs: 180_000 });
    let stopped = false;
    deploy.onStderrLine((line) => {
      // The client stops dead without closing anything: to the server it is a cut cable.
      if (!stopped && line.includes('receive release')) {
        stopped = true;
        deploy.child.kill('SIGSTOP');
      }
    });
    const t0 = Date.now();
    while (!stopped && Date.now() - t0 < 60_000) await sleep(50);
    expect(stopped).toBe(true);
    expect(await health()).toBe(200);
    // 30 s without a byte, plus a margin.
    await sleep(40_000);
    const state = await root(
      'ls -d /var/lib/stack/hello.lock 2>/dev/null || echo free; pgrep -fa "[s]tack_main|[s]tack-script" | wc -l; ls -A /srv/hello/releases | grep -c upload || true',
    );
    process.stderr.write(`[limits] 40 s after the client went silent: lock ${state.split('\n')[0]}, server scripts ${state.split('\n')[1]}\n`);
    expect(state.split('\n')).toEqual(['free', '0', '0']);
    expect(await health()).toBe(200);
    deploy.child.kill('SIGKILL');
    await deploy.done;
    rmSync(path.join(dir, 'example/blob.bin'));

    const next = run(['deploy', 'sbx']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).not.toMatch(/lock/);
    expect(await health()).toBe(200);
  }, 240_000);
});

describe('a lock whose holder is gone', () => {
  it('is refused while its holder may still act, and cleared once it has shown no life for 10 minutes', async () => {
    const take = (age: string) =>
      root(
        `mkdir -p /var/lib/stack/hello.lock && printf 'token=abc\\nwho=ann@elsewhere\\nclient=elsewhere\\npid=1\\nsince=2026-11-30T10:00:00Z\\ncommand=deploy sbx\\n' > /var/lib/stack/hello.lock/info && printf abc > /var/lib/stack/hello.lock/token && touch -d '${age}' /var/lib/stack/hello.lock/active`,
      );
    await take('2 minutes ago');
    newCode();
    const refused = run(['deploy', 'sbx']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('another deploy holds the lock: ann@elsewhere');
    await take('11 minutes ago');
    const status = run(['lock', 'status', 'sbx']);
    expect(status.stdout).toMatch(/stale: nothing of it has run on the server for 11 minutes/);
    const cleared = run(['deploy', 'sbx']);
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.stderr).toContain('clearing a stale deploy lock left by ann@elsewhere');
  });
});

describe('a full disk', () => {
  it('is found before anything is sent: how much is needed and free, nothing changed, no lock left', async () => {
    const liveBefore = await root('readlink /srv/hello/current');
    // Leave 20 MiB: less than a release needs.
    await root('free=$(df -Pk /srv | awk "NR==2 {print \\$4}"); fallocate -l $(( (free - 20 * 1024) * 1024 )) /srv/fill');
    newCode();
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not enough disk space for a new release in \/srv\/hello\/releases: \d+ MiB free, about \d+ MiB needed/);
    expect(await root('readlink /srv/hello/current')).toBe(liveBefore);
    expect(await root('ls -d /var/lib/stack/hello.lock 2>/dev/null || echo free')).toBe('free');
    expect(await health()).toBe(200);
  });

  it('names "No space left on device" when not even the lock can be written, and leaves no lock behind', async () => {
    await root('mkdir -p /var/lib/stack && mount -t tmpfs -o size=64k tmpfs /var/lib/stack && fallocate -l 64k /var/lib/stack/fill || true');
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot take the deploy lock: .*(No space left on device)/);
    expect(r.stderr).not.toContain('another deploy');
    const status = run(['lock', 'status', 'sbx']);
    expect(status.stdout).toContain('not locked');
    expect(await root('ls -d /var/lib/stack/hello.lock 2>/dev/null || echo free')).toBe('free');
    // Space again: the deploy goes through.
    await root('umount /var/lib/stack && rm -f /srv/fill');
    const ok = run(['deploy', 'sbx']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await health()).toBe(200);
  });
});
