/**
 * The requirements, installed for real: a wheel built here (test/fixtures/pip) and served from a
 * local package index on the host's end of the server's network, named by app.index_url. The
 * app imports it through nginx. A code change with the same requirements reuses the sealed
 * virtualenv (no pip, not a request to the index); new requirements get a new one; a rollback
 * finds the old one still there; the app's user can write into none of them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/sandbox/sandbox.js';
import type { CliResult } from '../helpers/cli.js';
import { startPackageIndex, type PackageIndex } from '../helpers/package-index.js';
import { exampleProject, stackIn, editInventory as editProjectInventory } from '../helpers/project.js';
import { sharedServer, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

// On the shared server, as the app `pip` of its own domain.
const APP = 'pip';
const DOMAIN = 'pip.stack.test';
let server: SandboxInfo;
let index: PackageIndex;
let dir: string;

/** stack, timed; no output may show the index's URL (it may carry a token) or a secret. */
function run(args: string[]): CliResult & { ms: number } {
  const t0 = Date.now();
  const r = stackIn(dir, args);
  const ms = Date.now() - t0;
  expect(r.stdout + r.stderr).not.toContain(index.url);
  return { ...r, ms };
}
async function root(command: string): Promise<string> {
  const r = await sshExec(server, command, 'root');
  if (r.code !== 0) throw new Error(`${command}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}
/** A command as the app's user, outside any sandbox (the strongest position it can get). */
async function asApp(command: string): Promise<number> {
  return (await sshExec(server, `runuser -u ${APP} -- sh -c '${command.replace(/'/g, `'\\''`)}' 2>&1`, 'root')).code;
}
async function get(pathname: string): Promise<{ status: string; body: string }> {
  const r = await runProgram(
    'curl',
    ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '10', '--resolve', `${DOMAIN}:80:${server.address}`, `http://${DOMAIN}${pathname}`],
    15_000,
  );
  const nl = r.stdout.lastIndexOf('\n');
  return { status: r.stdout.slice(nl + 1), body: r.stdout.slice(0, nl) };
}
/** Where the live release's .venv leads, and the live release. */
async function liveVenv(): Promise<{ release: string; link: string }> {
  const release = (await root(`readlink /srv/${APP}/current`)).replace('releases/', '');
  return { release, link: await root(`readlink /srv/${APP}/releases/${release}/.venv`) };
}

const wsgi = () => path.join(dir, 'example/hello/wsgi.py');
let original: string;
/** Code version N (in /health); /hello answers what the installed stackhello says. */
function version(n: number): void {
  const route = [
    'if path == "/hello":',
    '        import stackhello',
    '        payload = stackhello.greeting().encode()',
    '        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))])',
    '        return [payload]',
    '    if path == "/":',
  ].join('\n');
  writeFileSync(wsgi(), original.replace('"status": "ok"', `"status": "ok", "version": ${n}`).replace('if path == "/":', route));
}
function requirements(pin: string): void {
  // The index is plain http on a private address: pip ignores such an index unless trusted.
  writeFileSync(path.join(dir, 'example/requirements.txt'), `--trusted-host ${index.host}\n${pin}\n`);
}
// biome-ignore lint/suspicious/noExplicitAny: the parsed inventory is edited freely, like a user would
const editInventory = (change: (doc: Record<string, any>) => void) => editProjectInventory(dir, change);

beforeAll(async () => {
  server = await sharedServer();
  index = await startPackageIndex(server.hostSideAddress, ['1.0', '1.1']);
  dir = exampleProject(server, {
    name: APP,
    domain: DOMAIN,
    // As the build user, in the release before it is sealed: the virtualenv must be readable to
    // it, a reused one too (root's and sealed by then).
    hooks: { build: ["python -c \"import stackhello; open('static/greeting.txt', 'w').write(stackhello.greeting())\""] },
  });
  original = readFileSync(wsgi(), 'utf8');
  editInventory((doc) => {
    doc.app.index_url = index.url;
  });
  requirements('stackhello==1.0');
  version(1);
  const setup = run(['setup', 'sbx']);
  expect(setup.code, setup.stderr).toBe(0);
}, 300_000);

afterAll(async () => {
  await index?.close();
});

describe('requirements from a package index', () => {
  let first: { release: string; link: string };
  let buildMs = 0;

  it('installs the pinned wheel into a new, sealed virtualenv that the app imports', async () => {
    const dry = run(['deploy', 'sbx', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stderr).toContain(
      'virtualenv: built (none on the server for these requirements and this Python), then pip install -r requirements.txt from the index in app.index_url',
    );
    const r = run(['deploy', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    buildMs = r.ms;
    expect(await get('/hello')).toEqual({ status: '200', body: 'hello from stackhello 1.0' });
    expect((await get('/health')).status).toBe('200');
    expect((await get('/static/greeting.txt')).body).toBe('hello from stackhello 1.0');
    // pip asked the index for the project and fetched the one wheel pinned.
    expect(index.requests).toContain('/simple/stackhello/');
    expect(index.requests).toContain('/files/stackhello-1.0-py3-none-any.whl');
    expect(index.requests).not.toContain('/files/stackhello-1.1-py3-none-any.whl');
    first = await liveVenv();
    expect(first.link).toMatch(/^\.\.\/\.\.\/venvs\/[0-9a-f]{64}$/);
    const venv = `/srv/${APP}/releases/${first.release}/.venv`;
    expect(await root(`${venv}/bin/python -c "import stackhello, sys; print(stackhello.__file__, sys.prefix)"`)).toMatch(
      new RegExp(`^${venv}/lib/python3\\.\\d+/site-packages/stackhello/__init__\\.py ${venv}$`),
    );
    // Built where it lives: its scripts name its own path, never a release's.
    const real = `/srv/${APP}/venvs/${first.link.split('/').pop()}`;
    expect(await root(`head -n1 ${real}/bin/pip`)).toBe(`#!${real}/bin/python3`);
    expect(await root(`stat -c '%U:%G %a' /srv/${APP}/venvs ${real} ${real}/.stack-venv`)).toBe(`root:${APP} 751\nroot:root 755\nroot:root 644`);
    expect(await root(`find ${real} ! -user root | head -n 3`)).toBe('');
    // The unit's interpreter is reached through current, the release and its link.
    expect(await root(`systemd-analyze verify /etc/systemd/system/${APP}.service 2>&1`)).toBe('');
    // The URL went on stdin: no file of the release or virtualenv, no unit, no journal has it.
    expect(await root(`grep -rlF '${index.url}' /srv/${APP} /etc/systemd/system /run/systemd/transient 2>/dev/null || echo none`)).toBe('none');
  });

  it('reuses the virtualenv for new code with the same requirements: no pip, no request to the index', async () => {
    const asked = index.requests.length;
    version(2);
    const dry = run(['deploy', 'sbx', '--dry-run']);
    expect(dry.stderr).toMatch(/virtualenv: reused \(requirements and Python unchanged, [0-9a-f]{12}\)/);
    const r = run(['deploy', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/pip install|create virtualenv/);
    expect(index.requests.length).toBe(asked);
    const now = await liveVenv();
    expect(now.release).not.toBe(first.release);
    expect(now.link).toBe(first.link);
    expect(await get('/health')).toMatchObject({ status: '200' });
    expect(JSON.parse((await get('/health')).body)).toMatchObject({ version: 2 });
    expect((await get('/hello')).body).toBe('hello from stackhello 1.0');
    // The build hook of the new release imported from the reused (sealed) virtualenv.
    expect((await get('/static/greeting.txt')).body).toBe('hello from stackhello 1.0');
    process.stderr.write(`[pip] code change: ${r.ms} ms with the virtualenv reused; first deploy (virtualenv and pip): ${buildMs} ms\n`);
  });

  it("keeps the app's user out of every virtualenv", async () => {
    const { release, link } = await liveVenv();
    const real = `/srv/${APP}/venvs/${link.split('/').pop()}`;
    for (const attempt of [
      `touch ${real}/bin/evil`,
      `echo "import os" >> ${real}/lib/python3.*/site-packages/stackhello/__init__.py`,
      `touch ${real}/lib/python3.*/site-packages/evil.pth`,
      `rm -f ${real}/.stack-venv`,
      `mkdir /srv/${APP}/venvs/${'0'.repeat(64)}`,
      `mv ${real} /srv/${APP}/shared/`,
      `ln -sfn /srv/${APP}/shared /srv/${APP}/releases/${release}/.venv`,
    ]) {
      expect(await asApp(attempt), `${attempt} must fail`).not.toBe(0);
    }
    // It runs it, and nginx cannot even list which there are.
    expect(await asApp(`${real}/bin/python -c "import stackhello"`)).toBe(0);
    expect((await sshExec(server, 'runuser -u www-data -- ls /srv/pip/venvs', 'root')).code).not.toBe(0);
  });

  let second: { release: string; link: string };

  it('builds a new virtualenv when the requirements change, and keeps the old one for rollback', async () => {
    const asked = index.requests.length;
    requirements('stackhello==1.1');
    version(3);
    expect(run(['deploy', 'sbx', '--dry-run']).stderr).toContain('virtualenv: built (none on the server for these requirements and this Python)');
    const r = run(['deploy', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/pip install -r requirements\.txt/);
    expect(index.requests.slice(asked)).toContain('/files/stackhello-1.1-py3-none-any.whl');
    second = await liveVenv();
    expect(second.link).not.toBe(first.link);
    expect((await get('/hello')).body).toBe('hello from stackhello 1.1');
    expect((await root(`ls /srv/${APP}/venvs`)).split('\n').sort()).toEqual([first.link, second.link].map((l) => l.split('/').pop()).sort());
  });

  it('rolls back to the release of the old requirements, which finds its virtualenv', async () => {
    const r = run(['rollback', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(await liveVenv()).toMatchObject({ link: first.link });
    expect((await get('/hello')).body).toBe('hello from stackhello 1.0');
    expect(JSON.parse((await get('/health')).body)).toMatchObject({ version: 2 });
    const back = run(['rollback', 'sbx', second.release]);
    expect(back.code, back.stderr).toBe(0);
    expect((await get('/hello')).body).toBe('hello from stackhello 1.1');
  });

  it('removes a virtualenv once no kept release links to it', async () => {
    editInventory((doc) => {
      doc.environments.sbx.keep = 1;
    });
    version(4);
    const r = run(['deploy', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/pip install/);
    const now = await liveVenv();
    expect(now.link).toBe(second.link);
    expect(await root(`ls /srv/${APP}/releases`)).toBe(now.release);
    expect(await root(`ls /srv/${APP}/venvs`)).toBe(second.link.split('/').pop());
    expect((await get('/hello')).body).toBe('hello from stackhello 1.1');
  });

  it('takes an index URL with credentials from the secret STACK_INDEX_URL, and never shows it', async () => {
    const token = 'tok3n-never-printed';
    const withCredentials = index.url.replace('http://', `http://stack:${token}@`);
    writeFileSync(path.join(dir, '.stack/secrets.sbx'), `${readFileSync(path.join(dir, '.stack/secrets.sbx'), 'utf8')}STACK_INDEX_URL=${withCredentials}\n`);
    const before = await liveVenv();
    const dry = run(['deploy', 'sbx', '--dry-run']);
    // Another index is another virtualenv: the URL is part of what names it.
    expect(dry.stderr).toContain(
      "virtualenv: built (the code is the live release's, but its virtualenv was made for another package index or Python), then pip install -r requirements.txt from the index in secret STACK_INDEX_URL",
    );
    // The same code: only the virtualenv changes, and a release of that code links to it.
    const r = run(['deploy', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr + dry.stdout + dry.stderr).not.toContain(token);
    expect(r.stderr).toMatch(/pip install -r requirements\.txt/);
    const after = await liveVenv();
    expect(after.link).not.toBe(before.link);
    expect(after.release).not.toBe(before.release);
    expect(JSON.parse((await get('/health')).body)).toMatchObject({ version: 4 });
    expect((await get('/hello')).body).toBe('hello from stackhello 1.1');
    expect(await root(`grep -rlF '${token}' /srv/${APP} /etc/${APP} /etc/systemd/system /var/lib/stack /var/log 2>/dev/null || echo none`)).toBe('none');
  });
});
