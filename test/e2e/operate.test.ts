/**
 * Operating a live app on a real server: `stack run` (environment, exit codes, a real terminal
 * driven through tmux, Ctrl-C, no secret on the process list), `stack logs` (recent lines and
 * following), and `stack ssh` (the pinned host key, and only it).
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { STACK } from '../helpers/cli.js';
import { exampleProject, PROJECT_SECRET, stackIn } from '../helpers/project.js';
import { sharedServer, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

// On the shared server, as the app `ops` of its own domain.
const APP = 'ops';
const DOMAIN = 'ops.stack.test';
let server: SandboxInfo;
let dir: string;

const run = (args: string[]) => stackIn(dir, args);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function root(command: string): Promise<string> {
  return (await sshExec(server, command, 'root')).stdout.trim();
}
async function get(pathname: string): Promise<string> {
  return (
    await runProgram(
      'curl',
      ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', '--resolve', `${DOMAIN}:80:${server.address}`, `http://${DOMAIN}${pathname}`],
      15_000,
    )
  ).stdout;
}

/** The CLI started in the background, its output collected, ended with a signal when asked. */
function background(args: string[]) {
  const child = spawn(process.execPath, [STACK, ...args], { cwd: dir, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const limit = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void done.then(() => clearTimeout(limit));
  return { child, output: () => out, done };
}

/** Polls until `check` holds, at most `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(200);
  }
}

beforeAll(async () => {
  server = await sharedServer();
  dir = exampleProject(server, { name: APP, domain: DOMAIN });
  const r = run(['deploy', 'sbx']);
  expect(r.code, r.stderr).toBe(0);
});

describe('stack run', () => {
  it("runs in the live release as the app's user, with its environment and virtualenv, and returns the command's status", () => {
    const r = run([
      'run',
      'sbx',
      '--',
      'sh',
      '-c',
      'echo "user=$(id -un) dir=$(pwd) py=$(command -v python) domains=$STACK_DOMAINS greeting=$GREETING"; exit 7',
    ]);
    expect(r.code).toBe(7);
    expect(r.stdout).toMatch(
      new RegExp(`^user=${APP} dir=/srv/${APP}/releases/\\S+ py=/srv/${APP}/releases/\\S+/\\.venv/bin/python domains=${DOMAIN} greeting=Hello\\n$`),
    );
  });

  it('passes arguments exactly as given, $ and quotes included', () => {
    const r = run(['run', 'sbx', '--', 'printf', '%s|', '$HOME', "it's", '100%', 'a b']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("$HOME|it's|100%|a b|");
  });

  it('gives the app its secret without showing it on the server’s process list or in its own output', async () => {
    const job = background(['run', 'sbx', '--', 'sh', '-c', 'test "$SECRET_KEY" = "$1" && sleep 3 && echo secret-matched', 'x', PROJECT_SECRET]);
    // The secret is an argument of this command on purpose here: what must never carry it is
    // what stack itself adds. So the check is for the name=value form an env file or -E would use.
    await until(async () => (await root(`pgrep -f 'sleep 3' >/dev/null && echo up`)) === 'up');
    const ps = await root('ps -eo args');
    expect(ps).not.toContain(`SECRET_KEY=${PROJECT_SECRET}`);
    expect(await job.done).toBe(0);
    expect(job.output()).toContain('secret-matched');
  });

  it('keeps the secret off every command line while a command runs', async () => {
    const job = background(['run', 'sbx', '--', 'sleep', '4']);
    await until(async () => (await root(`pgrep -x sleep >/dev/null && echo up`)) === 'up');
    expect(await root('ps -eo args')).not.toContain(PROJECT_SECRET);
    expect(await job.done).toBe(0);
    expect(job.output()).not.toContain(PROJECT_SECRET);
  });

  it('stops the remote command on Ctrl-C', async () => {
    const job = background(['run', 'sbx', '--', 'sleep', '60']);
    await until(async () => (await root(`pgrep -u ${APP} -x sleep >/dev/null && echo up`)) === 'up');
    job.child.kill('SIGINT');
    expect(await job.done).toBe(130);
    await until(async () => (await root(`pgrep -u ${APP} -x sleep >/dev/null && echo up || echo gone`)) === 'gone', 5000);
  });

  it('drives an interactive program on a real terminal with -t', async () => {
    const session = `stack-run-${process.pid}`;
    const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
    const command = `cd ${dir} && NO_COLOR=1 ${process.execPath} ${STACK} run sbx -t -- python -c 'x = input("name? "); print("hello", x)'; echo EXIT=$?; sleep 60`;
    expect(tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '20', command).status).toBe(0);
    try {
      await until(() => tmux('capture-pane', '-t', session, '-p').stdout.includes('name?')).catch((err: Error) => {
        throw new Error(`${err.message}; the terminal shows:\n${tmux('capture-pane', '-t', session, '-p').stdout}`);
      });
      tmux('send-keys', '-t', session, 'world', 'Enter');
      await until(() => tmux('capture-pane', '-t', session, '-p').stdout.includes('EXIT='));
      const screen = tmux('capture-pane', '-t', session, '-p').stdout;
      expect(screen).toContain('hello world');
      expect(screen).toContain('EXIT=0');
    } finally {
      tmux('kill-session', '-t', session);
    }
  });

  it('needs a command', () => {
    const missing = run(['run', 'sbx']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/missing required argument 'command'/);
  });
});

describe('stack logs', () => {
  it('shows recent lines of the app and nginx, merged by time and named', async () => {
    const marker = `/logs-marker-${process.pid}`;
    expect(await get(marker)).toBe('404');
    const r = run(['logs', 'sbx', '-n', '200']);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n').filter((l) => l.includes(marker));
    // nginx's access log and gunicorn's, each named.
    expect(lines.some((l) => / nginx access +\S/.test(l))).toBe(true);
    expect(lines.some((l) => new RegExp(` ${APP}\\.service +\\S`).test(l))).toBe(true);
    const times = r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(0, 19));
    expect([...times].sort()).toEqual(times);
    const nginxOnly = run(['logs', 'sbx', 'nginx', '--grep', marker.slice(1)]);
    expect(nginxOnly.stdout.trim().split('\n')).toHaveLength(1);
    expect(nginxOnly.stdout).toMatch(/nginx access/);
  });

  it('follows new lines until Ctrl-C, and leaves nothing running on the server', async () => {
    const job = background(['logs', 'sbx', '-f', '-n', '0']);
    await sleep(1500);
    const marker = `/follow-marker-${process.pid}`;
    await get(marker);
    await until(() => job.output().includes(marker));
    job.child.kill('SIGINT');
    expect(await job.done).toBe(0);
    // By exact name: a pattern would also find the shell that runs pgrep.
    await until(async () => (await root('pgrep -x journalctl; pgrep -x tail; true')) === '', 5000);
  });
});

describe('stack status', () => {
  interface Status {
    ok: boolean;
    hosts: {
      ok: boolean;
      release: { id: string; commit: string | null } | null;
      units: { name: string; active: string }[];
      health: { code: string; ms: number; ok: boolean };
      disk: { dir: string; freeMiB: number }[];
      lock: unknown;
      lastDeploy: { command: string; result: string } | null;
      maintenance: boolean;
      drift: number;
    }[];
  }

  it('reports the live release, units, health, disk, last deploy and no drift, in JSON, with one round trip for the facts', async () => {
    const r = run(['status', 'sbx', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Status;
    expect(s.ok).toBe(true);
    const [h] = s.hosts;
    expect(h!.release!.id).toBe((await root(`readlink /srv/${APP}/current`)).replace('releases/', ''));
    expect(h!.units.map((u) => [u.name, u.active])).toEqual([
      [`${APP}.socket`, 'active'],
      [`${APP}.service`, 'active'],
      ['nginx.service', 'active'],
    ]);
    expect(h!.health).toMatchObject({ code: '200', ok: true });
    expect(h!.disk.map((d) => d.dir)).toEqual([`/srv/${APP}`, '/var']);
    expect(h!.disk.every((d) => d.freeMiB > 0)).toBe(true);
    expect(h!.lastDeploy).toMatchObject({ result: 'ok' });
    expect(h!.maintenance).toBe(false);
    expect(h!.drift).toBe(0);
    expect(h!.lock).toBeNull();
    // The facts, the dry run and the status come back together.
    expect((h as unknown as { roundTrips: number }).roundTrips).toBe(1);
    expect(run(['status', 'sbx']).stdout).toMatch(/checked in 1 SSH round trip, /);
  });

  it('shows drift after an inventory edit, and a stopped unit makes it exit 1', async () => {
    const inv = path.join(dir, 'inventory.yml');
    const text = readFileSync(inv, 'utf8');
    writeFileSync(inv, text.replace('GREETING: ', 'GREETING: Drift'));
    try {
      const drift = JSON.parse(run(['status', 'sbx', '--json']).stdout) as Status;
      expect(drift.hosts[0]!.drift).toBeGreaterThan(0);
    } finally {
      writeFileSync(inv, text);
    }
    await root(`systemctl stop ${APP}.socket ${APP}.service`);
    try {
      const r = run(['status', 'sbx', '--json']);
      expect(r.code).toBe(1);
      const s = JSON.parse(r.stdout) as Status;
      expect(s.ok).toBe(false);
      expect(s.hosts[0]!.units.find((u) => u.name === `${APP}.service`)!.active).toBe('inactive');
      const text = run(['status', 'sbx']);
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/NOT OK/);
      expect(text.stdout).toMatch(new RegExp(`${APP}\\.service +inactive`));
    } finally {
      await root(`systemctl start ${APP}.socket ${APP}.service`);
    }
  });
});

describe('stack restart', () => {
  it('restarts the app under the deploy lock without refusing a request, health-checked and audited', async () => {
    const pid = await root(`systemctl show -p MainPID --value ${APP}`);
    const job = background(['restart', 'sbx']);
    // Requests one after another while it restarts (bounded: at most 200, and only while it runs).
    const codes: string[] = [];
    let finished = false;
    void job.done.then(() => (finished = true));
    while (!finished && codes.length < 200) codes.push(await get('/health'));
    expect(await job.done).toBe(0);
    expect(job.output()).toMatch(/restarted: .* ops\.service; health 200/);
    expect(codes.filter((c) => c !== '200')).toEqual([]);
    expect(await root(`systemctl show -p MainPID --value ${APP}`)).not.toBe(pid);
    expect(run(['audit', 'sbx', '-n', '1']).stdout).toMatch(/restart sbx ops\.service.*ok/);
  });

  it('refuses a process it does not know', () => {
    const r = run(['restart', 'sbx', 'worker']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no process "worker" to restart/);
  });
});

describe('stack maintenance', () => {
  async function page(pathname: string): Promise<{ status: string; retryAfter?: string; body: string }> {
    const r = await runProgram('curl', ['-s', '-i', '--max-time', '10', '--resolve', `${DOMAIN}:80:${server.address}`, `http://${DOMAIN}${pathname}`], 15_000);
    const [head = '', ...body] = r.stdout.split('\r\n\r\n');
    const lines = head.split('\r\n');
    const retry = lines.find((l) => l.toLowerCase().startsWith('retry-after:'));
    return { status: lines[0]!.split(' ')[1]!, retryAfter: retry?.split(': ')[1], body: body.join('\r\n\r\n') };
  }

  it('answers 503 with the page and Retry-After, keeps the health check, and a deploy keeps it on until off', async () => {
    const on = run(['maintenance', 'sbx', 'on', '--message', 'Back at <14:00> UTC']);
    expect(on.code).toBe(0);
    const down = await page('/');
    expect(down.status).toBe('503');
    expect(down.retryAfter).toBe('300');
    expect(down.body).toContain('Back at &lt;14:00&gt; UTC');
    // Static files stay: the page may use them, and deploys check one through nginx.
    expect((await page('/static/style.css')).status).toBe('200');
    expect((await page('/health')).status).toBe('200');
    // A deploy (a configuration change, so the site is rewritten and nginx reloaded) keeps it on.
    const inv = path.join(dir, 'inventory.yml');
    const text = readFileSync(inv, 'utf8');
    writeFileSync(inv, text.replace('GREETING: Hello', 'GREETING: Hi'));
    expect(run(['deploy', 'sbx']).code).toBe(0);
    expect((await page('/')).status).toBe('503');
    const off = run(['maintenance', 'sbx', 'off']);
    expect(off.code).toBe(0);
    const up = await page('/');
    expect(up.status).toBe('200');
    expect(up.body).toContain('Hi from');
    expect(run(['audit', 'sbx', '-n', '5']).stdout).toMatch(/maintenance sbx on[\s\S]*maintenance sbx off/);
  });

  it('says on or off', () => {
    const r = run(['maintenance', 'sbx', 'maybe']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/say on or off, not "maybe"/);
  });
});

describe('stack ssh', () => {
  it('runs a command over ssh with the pinned host key', () => {
    const r = run(['ssh', 'sbx', '--', 'id', '-un']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe('deploy');
  });

  it('refuses a server whose key is not the pinned one', () => {
    const file = path.join(dir, 'inventory.yml');
    const text = readFileSync(file, 'utf8');
    const inv = parse(text);
    inv.environments.sbx.hosts[0].host_key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3NrsUKPeJAezPUNVc+qDB+rkFZJHIBCs5UZZ1sUBXT';
    writeFileSync(file, stringify(inv));
    try {
      const r = run(['ssh', 'sbx', '--', 'id', '-un']);
      expect(r.code).not.toBe(0);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/host key|REMOTE HOST IDENTIFICATION|verification failed/i);
    } finally {
      writeFileSync(file, text);
    }
  });
});
