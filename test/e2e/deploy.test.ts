/**
 * End to end against a real throwaway server (systemd, sshd, nginx, gunicorn): setup, a first
 * deploy that serves the app through nginx, a second that changes nothing, a dry run that shows
 * exactly one template change and touches nothing, a broken template that nginx -t refuses while
 * the site keeps serving, and host keys that are unknown or changed.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stack, type CliResult } from '../helpers/cli.js';
import { exampleProject } from '../helpers/project.js';
import { bootSandbox, sshExec, type SandboxInfo } from '../helpers/sandbox.js';
import { runProgram } from '../../src/sandbox/sandbox.js';

const SECRET = 's3cr3t-value-never-printed';
let server: SandboxInfo;
let dir: string;

function run(args: string[], cwd = dir): CliResult {
  const r = stack(args, { cwd });
  // No command, successful or not, may ever print a secret value.
  expect(r.stdout + r.stderr).not.toContain(SECRET);
  return r;
}

async function remote(command: string): Promise<string> {
  const r = await sshExec(server, command);
  return r.stdout.trim();
}

/** sha256 of every managed file, to prove a command changed nothing. */
async function managedHashes(): Promise<string> {
  return remote(
    'sudo sha256sum /etc/nginx/sites-available/hello.conf /etc/systemd/system/hello.service /etc/hello/gunicorn.conf.py /etc/hello/env 2>&1; readlink /srv/hello/current',
  );
}

/** One request on a fresh connection (a pooled keep-alive one may be closed by a reload). */
async function http(pathname: string): Promise<{ status: number; body: string; headers: Map<string, string> }> {
  const r = await runProgram('curl', ['-s', '-i', '--max-time', '10', `http://${server.address}${pathname}`], 15_000);
  const [head, ...body] = r.stdout.split('\r\n\r\n');
  const lines = head!.split('\r\n');
  const headers = new Map(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as [string, string]));
  return { status: Number(lines[0]!.split(' ')[1]), body: body.join('\r\n\r\n'), headers };
}

beforeAll(async () => {
  server = await bootSandbox('dep');
  dir = exampleProject(server);
});

describe('stack setup and deploy on a fresh server', () => {
  it('provisions the server with setup, and setup again changes nothing', () => {
    const first = run(['setup', 'sbx']);
    expect(first.stderr).toMatch(/install packages: .*nginx/);
    expect(first.code).toBe(0);
    const again = run(['setup', 'sbx']);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/done: changed 0 things/);
  });

  it('shows the whole first deploy in a dry run, and exits 3 with --exit-code', async () => {
    const r = run(['deploy', 'sbx', '--dry-run', '--exit-code']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/new file \/etc\/nginx\/sites-available\/hello\.conf/);
    expect(r.stderr).toMatch(/new release \d{8}T\d{6}\.\d{3}Z/);
    expect(r.stderr).toMatch(/SECRET_KEY="\[REDACTED\]"/);
    expect(await remote('readlink /srv/hello/current || echo none')).toBe('none');
  });

  it('deploys the app, which then answers through nginx', async () => {
    const r = run(['deploy', 'sbx']);
    expect(r.stderr).toMatch(/health 200/);
    expect(r.code).toBe(0);
    const health = await http('/health');
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: 'ok' });
    const page = await http('/');
    expect(page.body).toContain('Hello from');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const css = await http('/static/style.css');
    expect(css.status).toBe(200);
    expect(css.headers.get('cache-control')).toBe('max-age=31536000');
    expect(css.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await http('/.git/config')).status).toBe(403);
    // The app runs as its own user, its env file is private, the socket is not world-writable.
    expect(await remote('pid=$(systemctl show -p MainPID --value hello); ps -o user= -p $pid --ppid $pid | sort -u')).toBe('hello');
    expect(await remote('sudo stat -c "%a %U" /etc/hello/env')).toBe('600 root');
    expect(await remote('sudo stat -c "%a %U %G" /run/hello/gunicorn.sock')).toBe('660 hello www-data');
    expect(await remote(`sudo grep -c ${SECRET} /etc/hello/env`)).toBe('1');
  });

  it('changes nothing and restarts nothing the second time', async () => {
    const pids = await remote('systemctl show -p MainPID --value hello nginx');
    const before = await managedHashes();
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/done: changed 0 things on 1 host/);
    expect(await remote('systemctl show -p MainPID --value hello nginx')).toBe(pids);
    expect(await managedHashes()).toBe(before);
  });

  it('shows exactly a template change in a dry run, and changes nothing', async () => {
    mkdirSync(path.join(dir, '.stack/templates/nginx/partials'), { recursive: true });
    const builtin = readFileSync(path.resolve(__dirname, '../../templates/nginx/partials/headers.hbs'), 'utf8');
    writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), `${builtin}add_header X-Deployed-By "stack" always;\n`);
    const before = await managedHashes();
    const r = run(['deploy', 'sbx', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/changed \/etc\/nginx\/sites-available\/hello\.conf/);
    const added = r.stderr.split('\n').filter((l) => /^\+\s/.test(l));
    const removed = r.stderr.split('\n').filter((l) => /^-\s/.test(l));
    expect(added.length).toBeGreaterThan(0);
    expect(added.every((l) => l.includes('X-Deployed-By'))).toBe(true);
    expect(removed).toEqual([]);
    expect(r.stderr).toMatch(/then: reload nginx/);
    expect(r.stderr).not.toMatch(/restart hello/);
    expect(await managedHashes()).toBe(before);
    expect((await http('/')).headers.get('x-deployed-by')).toBeUndefined();
  });

  it('applies that change with a reload of nginx only', async () => {
    const appPid = await remote('systemctl show -p MainPID --value hello');
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    expect((await http('/')).headers.get('x-deployed-by')).toBe('stack');
    expect(await remote('systemctl show -p MainPID --value hello')).toBe(appPid);
  });

  it('refuses a template that nginx -t rejects, and the site keeps serving', async () => {
    const before = await managedHashes();
    writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), 'add_header_typo X-Broken "yes";\n');
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nginx -t/);
    expect(r.stderr).toMatch(/unknown directive "add_header_typo"/);
    expect(await managedHashes()).toBe(before);
    expect((await http('/health')).status).toBe(200);
    // No staged or backup file is left behind.
    expect(await remote('sudo find /etc/nginx /etc/hello /etc/systemd/system -name "*.stack-*" | wc -l')).toBe('0');
  });

  it('ships a new release when the code changes, and serves it', async () => {
    writeFileSync(
      path.join(dir, '.stack/templates/nginx/partials/headers.hbs'),
      readFileSync(path.resolve(__dirname, '../../templates/nginx/partials/headers.hbs'), 'utf8'),
    );
    const wsgi = path.join(dir, 'example/hello/wsgi.py');
    writeFileSync(wsgi, readFileSync(wsgi, 'utf8').replace('"status": "ok"', '"status": "ok", "version": 2'));
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    expect(JSON.parse((await http('/health')).body)).toMatchObject({ version: 2 });
    // Every deploy that changed something made a release; the newest is live.
    const releases = (await remote('sudo ls /srv/hello/releases')).split('\n');
    expect(releases.length).toBeGreaterThanOrEqual(3);
    expect(await remote('sudo readlink /srv/hello/current')).toBe(`releases/${releases.at(-1)}`);
  });
});

describe('host keys and unreachable servers', () => {
  it('refuses an unknown host key, names its fingerprint, and trust pins it', async () => {
    const fresh = exampleProject(server, { pin: false });
    const r = run(['deploy', 'sbx', '--dry-run'], fresh);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown host key SHA256:[A-Za-z0-9+/]{43}/);
    expect(r.stderr).toMatch(/stack trust ENV/);
    const trusted = run(['trust', 'sbx', '--yes'], fresh);
    expect(trusted.code).toBe(0);
    const text = readFileSync(path.join(fresh, 'inventory.yml'), 'utf8');
    expect(text).toContain(`host_key: ${server.hostKey}`);
    expect(text).toContain('# test project');
    expect(run(['deploy', 'sbx', '--dry-run'], fresh).code).toBe(0);
  });

  it('refuses a changed host key, loudly', () => {
    const other = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBmXgD0t3fhAf3bqCkXlJQyYcN0kH0gX7Wbqk1b0c1Y6';
    const spoofed = exampleProject(server, { pin: other });
    const r = run(['deploy', 'sbx', '--dry-run'], spoofed);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/HOST KEY CHANGED/);
    expect(r.stderr).toMatch(/refusing to connect/);
    const trust = run(['trust', 'sbx', '--yes'], spoofed);
    expect(trust.code).toBe(1);
    expect(readFileSync(path.join(spoofed, 'inventory.yml'), 'utf8').replace(/\s+/g, ' ')).toContain(other);
  });

  describe('a server that never answers', () => {
    let silent: Server;
    let port: number;
    beforeAll(async () => {
      // Accepts TCP connections on loopback and never says a word of SSH.
      silent = createServer(() => {});
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      port = (silent.address() as { port: number }).port;
    });
    afterAll(() => silent.close());

    it('gives one clear line within the timeout', () => {
      const p = exampleProject(server);
      const inv = path.join(p, 'inventory.yml');
      writeFileSync(inv, readFileSync(inv, 'utf8').replace(`address: ${server.address}`, `address: 127.0.0.1\n        port: ${port}`));
      const t0 = Date.now();
      const r = run(['--connect-timeout', '2', 'deploy', 'sbx', '--dry-run'], p);
      expect(Date.now() - t0).toBeLessThan(15_000);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cannot connect to deploy@127\.0\.0\.1:\d+: no SSH handshake within 2 s/);
      expect(
        r.stderr
          .trim()
          .split('\n')
          .filter((l) => l.startsWith('error:')),
      ).toHaveLength(1);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    });
  });
});
