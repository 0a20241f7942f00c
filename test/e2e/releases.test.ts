/**
 * Releases that carry their configuration, on a real server: listing, a manual rollback that
 * restores code and configuration together, automatic rollbacks (an app that does not start, a
 * failing health check), hooks, the deploy lock and the audit log.
 */
import { cpSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { ROOT, type CliResult } from '../helpers/cli.js';
import { exampleProject, stackIn } from '../helpers/project.js';
import { sharedServer, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

// On the shared server, as the app `rel` of its own domain.
const APP = 'rel';
const DOMAIN = 'rel.stack.test';
let server: SandboxInfo;
let dir: string;

const run = (args: string[]): CliResult => stackIn(dir, args);
async function root(command: string): Promise<string> {
  return (await sshExec(server, command, 'root')).stdout.trim();
}
/** curl options that send DOMAIN's requests to the server. */
const toServer = () => ['--resolve', `${DOMAIN}:80:${server.address}`];
async function health(): Promise<{ http: string; release?: string; version?: number }> {
  const r = await runProgram('curl', ['-s', '-i', '--max-time', '10', ...toServer(), `http://${DOMAIN}/health`], 15_000);
  const [head, body] = r.stdout.split('\r\n\r\n');
  return { ...(body ? JSON.parse(body) : {}), http: head!.split(' ')[1]! };
}
async function header(name: string): Promise<string | undefined> {
  const r = await runProgram('curl', ['-s', '-I', '--max-time', '10', ...toServer(), `http://${DOMAIN}/`], 15_000);
  return r.stdout
    .split('\r\n')
    .find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    ?.split(': ')[1];
}
/** A release id as a regular expression that matches only it. */
const literal = (id: string) => id.replace(/\./g, '\\.');
const wsgi = () => path.join(dir, 'example/hello/wsgi.py');
const original = readFileSync(path.join(ROOT, 'example/hello/wsgi.py'), 'utf8');
const headers = readFileSync(path.join(ROOT, 'templates/nginx/partials/headers.hbs'), 'utf8');

/** Code version N (in /health) and configuration version N (an X-Version header). */
function version(n: number): void {
  writeFileSync(wsgi(), original.replace('"status": "ok"', `"status": "ok", "version": ${n}`));
  mkdirSync(path.join(dir, '.stack/templates/nginx/partials'), { recursive: true });
  writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), `${headers}add_header X-Version "${n}" always;\n`);
}

beforeAll(async () => {
  server = await sharedServer();
  dir = exampleProject(server, {
    name: APP,
    domain: DOMAIN,
    // A build hook writes into the release before it is sealed; the app's hooks only read it.
    hooks: {
      build: ['touch built'],
      before_activate: [`python -c "print('migrating')" && test -f built && touch /srv/${APP}/shared/migrated`],
      after_activate: [`test -f /srv/${APP}/shared/migrated`],
    },
  });
  expect(run(['setup', 'sbx']).code).toBe(0);
});

describe('releases and rollback', () => {
  let v1: string;
  let v2: string;

  it('records each release with its manifest and configuration', async () => {
    version(1);
    const first = run(['deploy', 'sbx']);
    expect(first.code).toBe(0);
    v1 = first.stderr.match(/release (\d{8}T\d{6}\.\d{3}Z)/)![1]!;
    version(2);
    const second = run(['deploy', 'sbx']);
    expect(second.code).toBe(0);
    v2 = second.stderr.match(/release (\d{8}T\d{6}\.\d{3}Z)/)![1]!;
    expect(await health()).toMatchObject({ http: '200', version: 2, release: v2 });
    expect(await header('X-Version')).toBe('"2"'.replace(/"/g, ''));
    const list = run(['releases', 'sbx']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`  ${literal(v1)}  .*root@`));
    expect(list.stdout).toMatch(new RegExp(`\\* ${literal(v2)} .*live`));
    // The configuration each release went live with is kept with it, env file private.
    expect(await root(`grep -c 'X-Version "1"' /srv/${APP}/releases/${v1}/.stack/config/etc/nginx/sites-available/${APP}.conf`)).toBe('1');
    expect(await root(`stat -c '%a %U' /srv/${APP}/releases/${v2}/.stack/config/etc/${APP}/env /srv/${APP}/releases/${v2}/.stack`)).toBe('600 root\n700 root');
    // The build hook wrote into the new release; the before_activate hook ran after it.
    expect(await root(`test -f /srv/${APP}/releases/${v2}/built && test -f /srv/${APP}/shared/migrated && echo yes`)).toBe('yes');
  });

  it('rolls back code and configuration together', async () => {
    // A dry run shows what would be restored, the env file's secret redacted, and changes nothing.
    const dry = run(['rollback', 'sbx', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stderr).toMatch(new RegExp(`rollback to ${literal(v1)} would restore \\d+ file`));
    expect(dry.stderr).toMatch(/^-\s*add_header X-Version "2" always;$/m);
    expect(dry.stderr).toMatch(/^\+\s*add_header X-Version "1" always;$/m);
    expect(dry.stderr).toContain(`link /srv/${APP}/current -> releases/${v1} (now releases/${v2})`);
    // The same steps the real rollback will run, planned from the releases the host recorded.
    expect(dry.stderr).toContain(`steps: restore release ${v1} (code and configuration) (2 SSH round trips with the facts)`);
    expect(await root(`readlink /srv/${APP}/current`)).toBe(`releases/${v2}`);
    expect(await header('X-Version')).toBe('2');
    const r = run(['rollback', 'sbx']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`now runs release ${literal(v1)} \\(was ${literal(v2)}\\), code and configuration; health 200`));
    expect(await health()).toMatchObject({ http: '200', version: 1, release: v1 });
    expect(await header('X-Version')).toBe('1');
    expect(run(['releases', 'sbx']).stdout).toMatch(new RegExp(`\\* ${literal(v1)} .*live`));
    // Back to the newest one by name.
    expect(run(['rollback', 'sbx', v2]).code).toBe(0);
    expect(await health()).toMatchObject({ version: 2 });
    expect(await header('X-Version')).toBe('2');
    const none = run(['rollback', 'sbx', '20000101T000000Z']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/there is no release 20000101T000000Z/);
  });

  it('makes a new release of the same code when only the configuration changes', async () => {
    writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), `${headers}add_header X-Version "2b" always;\n`);
    const pid = await root(`systemctl show -p MainPID --value ${APP}`);
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/code of \d{8}T\d{6}\.\d{3}Z, new configuration/);
    expect(await header('X-Version')).toBe('2b');
    expect(await root(`systemctl show -p MainPID --value ${APP}`)).toBe(pid);
    expect(run(['releases', 'sbx']).stdout).toMatch(/\(code of \d{8}T\d{6}\.\d{3}Z\)\s+live/);
  });
});

describe('automatic rollback', () => {
  /** Still the release that was live before, with the same code; the app runs from `current`. */
  async function expectPreviousServing(before: { version?: number; current: string }) {
    const now = await health();
    expect(now.http).toBe('200');
    expect(now.version).toBe(before.version);
    expect(await root(`readlink /srv/${APP}/current`)).toBe(before.current);
  }
  async function live() {
    return { ...(await health()), current: await root(`readlink /srv/${APP}/current`) };
  }

  it('puts the previous release back when the new one does not start', async () => {
    const before = await live();
    const releasesBefore = await root(`ls /srv/${APP}/releases`);
    writeFileSync(wsgi(), `raise RuntimeError("boom at import")\n${original}`);
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/failed.*rolled back to the previous release, which answers its health check/);
    expect(r.stderr).toMatch(/boom at import/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    await expectPreviousServing(before);
    expect(await root(`ls /srv/${APP}/releases`)).toBe(releasesBefore);
  });

  it('puts the previous release back when the health check fails', async () => {
    const before = await live();
    writeFileSync(
      wsgi(),
      original.replace(
        'start_response("200 OK", [("Content-Type", "application/json")',
        'start_response("500 Internal Server Error", [("Content-Type", "application/json")',
      ),
    );
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/health check failed \(exit 1\); rolled back to the previous release/);
    expect(r.stderr).toMatch(/answered 500, not 200/);
    await expectPreviousServing(before);
  });

  it('stops before anything goes live when a hook fails, with its output redacted', async () => {
    writeFileSync(wsgi(), original);
    const before = await live();
    const files = await root(`sha256sum /etc/nginx/sites-available/${APP}.conf /etc/${APP}/env; readlink /srv/${APP}/current`);
    const inv = path.join(dir, 'inventory.yml');
    const text = readFileSync(inv, 'utf8');
    writeFileSync(inv, text.replace(/before_activate:\n(\s+)- .*\n/, `before_activate:\n$1- echo "key is $SECRET_KEY"; echo migration failed >&2; exit 3\n`));
    try {
      const r = run(['deploy', 'sbx']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/hook echo/);
      expect(r.stderr).toMatch(/key is \[REDACTED\]/);
      expect(r.stderr).toMatch(/migration failed/);
      expect(await root(`sha256sum /etc/nginx/sites-available/${APP}.conf /etc/${APP}/env; readlink /srv/${APP}/current`)).toBe(files);
      await expectPreviousServing(before);
    } finally {
      writeFileSync(inv, text);
    }
  });

  it('records every outcome in the audit log', () => {
    const r = run(['audit', 'sbx', '-n', '50']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/deploy sbx .* ok/);
    expect(r.stdout).toMatch(/rollback sbx .* ok/);
    expect(r.stdout).toMatch(/failed: health check/);
    expect(r.stdout).toMatch(/failed: hook echo/);
  });
});

describe('the deploy lock', () => {
  const lockInfo = (client: string, pid: number) =>
    `mkdir -p /var/lib/stack/${APP}.lock && printf 'token=other\\nwho=alice@laptop\\nclient=${client}\\npid=${pid}\\nsince=2026-01-01T00:00:00Z\\ncommand=deploy sbx\\n' > /var/lib/stack/${APP}.lock/info && printf other > /var/lib/stack/${APP}.lock/token`;

  it('refuses a deploy while another holds the lock, naming it and how to clear it', async () => {
    await root(lockInfo('laptop', 4242));
    expect(run(['lock', 'status', 'sbx']).stdout).toMatch(/locked by alice@laptop \(deploy sbx, pid 4242 on laptop/);
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/another deploy holds the lock: alice@laptop/);
    expect(r.stderr).toMatch(/stack lock release ENV|stack lock release sbx/);
    expect(run(['deploy', 'sbx', '--dry-run']).stderr).toMatch(/holds the deploy lock right now/);
    expect(run(['lock', 'release', 'sbx']).stdout).toMatch(/released the lock held by alice@laptop/);
    expect(run(['lock', 'status', 'sbx']).stdout).toMatch(/not locked/);
  });

  it('clears a lock left by a stack process of this machine that no longer runs', async () => {
    await root(lockInfo(hostname(), 999_999));
    const r = run(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/clearing a stale deploy lock left by alice@laptop .*no longer runs/);
    expect(run(['lock', 'status', 'sbx']).stdout).toMatch(/not locked/);
  });

  it('waits for the lock with --wait', async () => {
    await root(lockInfo('laptop', 4242));
    // Released by "the other deploy" three seconds later.
    void sshExec(server, `sleep 3; rm -rf /var/lib/stack/${APP}.lock`, 'root');
    const t0 = Date.now();
    const r = run(['deploy', 'sbx', '--wait']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/waiting for the deploy lock/);
    expect(Date.now() - t0).toBeGreaterThan(2500);
  });
});

describe('keeping releases', () => {
  it('keeps the last N after a successful deploy, plus any a running process still uses', async () => {
    const inv = path.join(dir, 'inventory.yml');
    const text = readFileSync(inv, 'utf8');
    writeFileSync(inv, text.replace(/( {2}sbx:\n)/, '$1    keep: 2\n'));
    try {
      // Three configuration-only deploys: the app is not restarted, so it keeps working in the
      // release it started from, which must survive the pruning.
      const appRelease = (await root(`readlink /proc/$(systemctl show -p MainPID --value ${APP})/cwd`)).split('/').pop()!;
      for (let i = 0; i < 3; i++) {
        writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), `${headers}add_header X-Keep "${i}" always;\n`);
        expect(run(['deploy', 'sbx']).code).toBe(0);
      }
      const releases = (await root(`ls /srv/${APP}/releases`)).split('\n');
      const current = (await root(`readlink /srv/${APP}/current`)).replace('releases/', '');
      expect(releases).toContain(current);
      expect(releases).toContain(appRelease);
      expect(releases.filter((r) => r !== appRelease)).toHaveLength(2);
      expect((await health()).http).toBe('200');
    } finally {
      writeFileSync(inv, text);
    }
  });
});

describe('a first deploy that fails, and a project shipped from its own folder', () => {
  // Its own app and domain on the shared server, with the inventory inside what ships
  // (`source: .`, the usual layout).
  const FIRST = 'first';
  const FIRST_DOMAIN = 'first.stack.test';
  let project: string;
  const inFirst = (args: string[]) => stackIn(project, args);
  const inventoryFile = () => path.join(project, 'inventory.yml');
  const firstHealth = async () =>
    (
      await runProgram(
        'curl',
        [
          '-s',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '--max-time',
          '10',
          '--resolve',
          `${FIRST_DOMAIN}:80:${server.address}`,
          `http://${FIRST_DOMAIN}/health`,
        ],
        15_000,
      )
    ).stdout;
  const units = () => root(`systemctl is-enabled ${FIRST}.socket ${FIRST}.service; systemctl is-active ${FIRST}.socket ${FIRST}.service; true`);

  beforeAll(() => {
    project = exampleProject(server, { name: FIRST, domain: FIRST_DOMAIN });
    cpSync(path.join(project, 'example'), project, { recursive: true });
    rmSync(path.join(project, 'example'), { recursive: true });
    const inv = parse(readFileSync(inventoryFile(), 'utf8'));
    inv.app.source = '.';
    writeFileSync(inventoryFile(), stringify(inv));
  });

  it('says there was no previous release, and leaves the app stopped and disabled rather than crash-looping', async () => {
    // Setup writes and enables the units: the case where a broken app was restarted forever.
    expect(inFirst(['setup', 'sbx']).code).toBe(0);
    expect(await units()).toBe('enabled\nenabled\nactive\ninactive');
    const good = readFileSync(path.join(project, 'hello/wsgi.py'), 'utf8');
    writeFileSync(path.join(project, 'hello/wsgi.py'), `raise RuntimeError("boom at first import")\n${good}`);
    const r = inFirst(['deploy', 'sbx']);
    writeFileSync(path.join(project, 'hello/wsgi.py'), good);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/boom at first import/);
    expect(r.stderr).toMatch(
      /there was no previous release to go back to: the app's units are stopped and disabled until a deploy succeeds; GET \/health now answers \d{3} \(/,
    );
    expect(r.stderr).not.toMatch(/rolled back to the previous release/);
    expect(await root(`readlink /srv/${FIRST}/current || echo none`)).toBe('none');
    expect(await units()).toBe('disabled\ndisabled\ninactive\ninactive');
    // Nothing restarts it meanwhile, not even a request through nginx to its socket.
    await firstHealth();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(await root(`systemctl show -p NRestarts --value ${FIRST}.service; systemctl is-active ${FIRST}.service; true`)).toBe('0\ninactive');
  });

  it('refuses a release whose static files nginx cannot read, though the app is healthy', async () => {
    const inv = readFileSync(inventoryFile(), 'utf8');
    // A build hook that leaves its output unreadable for others, as a strict umask would.
    writeFileSync(inventoryFile(), `${inv}hooks:\n  build: ["chmod o-r static/style.css"]\n`);
    const r = inFirst(['deploy', 'sbx']);
    writeFileSync(inventoryFile(), inv);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/static files check/);
    expect(r.stderr).toMatch(/GET \/static\/style\.css through nginx answered 403, not 200: nginx may not read it/);
    expect(r.stderr).toMatch(/there was no previous release to go back to/);
    expect(await units()).toBe('disabled\ndisabled\ninactive\ninactive');
  });

  it('then deploys, enabling and starting the app, and checks one static file through nginx', async () => {
    const r = inFirst(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/health 200/);
    expect(await firstHealth()).toBe('200');
    expect(await units()).toBe('enabled\nenabled\nactive\nactive');
  });

  it('keeps an inventory edit a configuration-only release although the inventory is in the source folder', async () => {
    const inv = parse(readFileSync(inventoryFile(), 'utf8'));
    inv.app.env.GREETING = 'Howdy';
    writeFileSync(inventoryFile(), stringify(inv));
    const dry = inFirst(['deploy', 'sbx', '--dry-run']);
    expect(dry.stderr).toMatch(/new release \S+ \(code of \S+, new configuration\)/);
    expect(dry.stderr).not.toMatch(/ships new files/);
    const r = inFirst(['deploy', 'sbx']);
    expect(r.code).toBe(0);
    const live = await root(`readlink /srv/${FIRST}/current`);
    expect(await root(`test -e /srv/${FIRST}/${live}/inventory.yml && echo shipped || echo absent`)).toBe('absent');
    expect(await root(`grep -c '^STACK_DOMAINS="${FIRST_DOMAIN}"$' /etc/${FIRST}/env; grep -c '^STACK_URL="http://${FIRST_DOMAIN}"$' /etc/${FIRST}/env`)).toBe(
      '1\n1',
    );
  });
});
