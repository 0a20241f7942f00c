/**
 * `redis:` on a fresh server: the app's own Redis, an instance of Debian's redis-server@.service,
 * on a unix socket only. Setup provisions it and stops Debian's default instance (TCP 6379) for
 * good; the app reaches it through REDIS_URL from `stack run`, from its hooks and from a service
 * sandboxed like its own unit; nobody else gets in (another user, the build user, nginx), and
 * nothing listens on TCP. The inventory's memory limit and policy are what Redis runs with; a
 * changed limit restarts it (its data kept), and a second setup or deploy changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shCommand } from '../../src/remote/quote.js';
import type { CliResult } from '../helpers/cli.js';
import { stepTimer } from '../helpers/timing.js';
import { editInventory, exampleProject, stackIn } from '../helpers/project.js';
import { bootSandbox, rootExec, type SandboxInfo, sshExec, TEST_RELEASE } from '../helpers/sandbox.js';

const APP = 'hello';
const UNIT = `redis-server@${APP}.service`;
const SOCKET = `/run/redis-${APP}/redis-server.sock`;
const CONF = `/etc/redis/redis-${APP}.conf`;
const DROPIN = `/etc/systemd/system/${UNIT}.d/stack.conf`;
const DATA = `/var/lib/redis/${APP}`;
/** A Python one-liner with redis-py, as an app would write it: REDIS_URL from its environment. */
const py = (code: string) => `import os, redis; r = redis.Redis.from_url(os.environ['REDIS_URL']); ${code}`;

let server: SandboxInfo;
let dir: string;
const { timed, report } = stepTimer('redis');

function run(args: string[]): CliResult {
  return stackIn(dir, args);
}

function ok(r: CliResult): CliResult {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

/** redis-cli as root, on the app's socket. */
const cli = (...args: string[]) => rootExec(server, shCommand('redis-cli', '-s', SOCKET, ...args));

/** What nothing but the app's Redis may show: every TCP listener, and any redis process among them. */
async function tcpListeners(): Promise<string> {
  return rootExec(server, 'ss -Hltnp');
}

async function expectNoRedisOnTcp(): Promise<void> {
  const tcp = await tcpListeners();
  expect(tcp).not.toMatch(/redis/);
  expect(tcp).not.toMatch(/:6379\b/);
  const refused = await sshExec(server, 'redis-cli -h 127.0.0.1 -p 6379 ping', 'root');
  expect(refused.code).not.toBe(0);
  expect(refused.stdout + refused.stderr).toMatch(/Connection refused/);
}

describe('redis: the app’s own Redis on a unix socket only', () => {
  beforeAll(async () => {
    server = await timed(`boot a fresh sandbox (Debian ${TEST_RELEASE})`, () => bootSandbox('redis'));
    dir = exampleProject(server, {
      hooks: {
        // After the handlers: the first deploy's Redis has started by then.
        after_activate: [`python3 -c "${py("r.set('hook', 'after_activate')")}"`],
      },
    });
    editInventory(dir, (doc) => {
      doc.redis = true;
      doc.app.packages = ['python3-redis'];
    });
  }, 240_000);

  afterAll(() => report());

  it('gives the app REDIS_URL and CELERY_BROKER_URL on the socket, and renders Redis’s files', () => {
    const r = ok(run(['render', 'sbx', '--only', 'app,redis']));
    expect(r.stdout).toContain(`REDIS_URL="unix://${SOCKET}"`);
    expect(r.stdout).toContain(`CELERY_BROKER_URL="redis+socket://${SOCKET}"`);
    expect(r.stdout).toMatch(/^port 0$/m);
    expect(r.stdout).toMatch(/^maxmemory 256mb$/m);
    expect(r.stdout).toMatch(/^maxmemory-policy noeviction$/m);
    expect(r.stdout).toMatch(new RegExp(`^Group=${APP}$`, 'm'));
  }, 300_000);

  it('setup installs Redis and starts the app’s instance; Debian’s default one (TCP) is stopped and masked', async () => {
    const r = await timed('stack setup (with redis)', () => ok(run(['setup', 'sbx'])));
    expect(r.stderr).toMatch(/install packages: .*redis-server/);
    expect(await rootExec(server, `systemctl is-active ${UNIT}; systemctl is-enabled ${UNIT}; true`)).toBe('active\nenabled');
    expect(await rootExec(server, 'systemctl is-enabled redis-server.service; systemctl is-active redis-server.service; true')).toBe('masked\ninactive');
    await expectNoRedisOnTcp();
  }, 300_000);

  it('deploys; the instance runs from the inventory’s files, enabled, logging to the journal', async () => {
    const r = await timed('stack deploy (first)', () => ok(run(['deploy', 'sbx'])));
    expect(r.stderr).toMatch(/health 200/);
    expect(await rootExec(server, `systemctl is-active ${UNIT}; systemctl is-enabled ${UNIT}`)).toBe('active\nenabled');
    expect(await rootExec(server, `stat -c '%a %U:%G' ${CONF} ${DROPIN} ${DATA}`)).toBe(`640 root:${APP}\n644 root:root\n750 redis:redis`);
    // The running server says which file it read, and that it is not on any port.
    const info = await cli('info', 'server');
    expect(info).toContain(`config_file:${CONF}`);
    expect(info).toMatch(/^tcp_port:0\r?$/m);
    expect(await rootExec(server, `journalctl -u ${UNIT} --no-pager -o cat`)).toMatch(/ready to accept connections/i);
    // The process: redis's user, the app's group; not in group redis.
    const pid = await rootExec(server, `systemctl show -p MainPID --value ${UNIT}`);
    expect(await rootExec(server, `ps -o user=,group= -p ${pid}`)).toMatch(new RegExp(`^redis\\s+${APP}$`));
    expect((await rootExec(server, `id -nG ${APP}`)).split(' ')).not.toContain('redis');
    // It may write its own data folder and nothing else: not the file stack manages.
    expect(await rootExec(server, `systemctl show -p ReadWritePaths --value ${UNIT}`)).toBe(DATA);
    const rewrite = await sshExec(server, `redis-cli -s ${SOCKET} config rewrite`, 'root');
    expect(rewrite.stdout + rewrite.stderr).toMatch(/Read-only file system/);
  }, 300_000);

  it('listens on nothing but its unix socket: no TCP port, not even on localhost', async () => {
    await expectNoRedisOnTcp();
    expect(await rootExec(server, 'ss -Hlxp | grep redis-server')).toContain(SOCKET);
    expect(await cli('config', 'get', 'port')).toBe('port\n0');
    expect(await rootExec(server, 'systemctl is-enabled redis-server.service; systemctl is-active redis-server.service; true')).toBe('masked\ninactive');
  }, 300_000);

  it('lets the app use its socket: stack run, its hooks, and a service sandboxed like its own unit', async () => {
    const r = ok(run(['run', 'sbx', '--', 'python3', '-c', py("r.set('k', 'v'); print(r.get('k'))")]));
    expect(r.stdout.trim()).toBe("b'v'");
    // The first deploy's after_activate hook (as the app's user, read-only system, private /tmp).
    expect(await cli('get', 'hook')).toBe('after_activate');
    // The app's unit, as written to the server: the same user, group, environment and sandbox.
    const unit = await rootExec(server, `cat /etc/systemd/system/${APP}.service`);
    const service = unit.slice(unit.indexOf('[Service]'), unit.indexOf('[Install]'));
    const keys =
      /^(User|Group|EnvironmentFile|UMask|NoNewPrivileges|Protect\w+|Private\w+|Restrict\w+|ReadWritePaths|LockPersonality|SystemCall\w+|CapabilityBoundingSet)=/;
    const properties = service.split('\n').filter((l) => keys.test(l));
    expect(properties).toContain('ProtectSystem=strict');
    expect(properties).toContain(`User=${APP}`);
    const sandboxed = shCommand(
      'systemd-run',
      '--quiet',
      '--wait',
      '--pipe',
      '--collect',
      ...properties.flatMap((p) => ['-p', p]),
      '--',
      '/usr/bin/python3',
      '-c',
      py("r.set('unit', 'ok'); print(r.get('unit'))"),
    );
    expect(await rootExec(server, sandboxed)).toBe("b'ok'");
  }, 300_000);

  it('keeps everyone else out: another user, the build user, nginx; the socket is 770, the app’s group', async () => {
    expect(await rootExec(server, `stat -c '%a %U:%G' ${SOCKET}`)).toBe(`770 redis:${APP}`);
    expect(await rootExec(server, `stat -c '%a %U:%G' /run/redis-${APP}`)).toBe(`2750 redis:${APP}`);
    for (const user of ['nobody', `${APP}-build`, 'www-data']) {
      const r = await sshExec(server, `runuser -u ${user} -- redis-cli -s ${SOCKET} ping`, 'root');
      expect(r.stdout + r.stderr, user).toMatch(/Permission denied/);
      expect(r.stdout + r.stderr, user).not.toMatch(/PONG/);
      // Straight at the socket, as a client library would: refused by the kernel.
      const direct = await sshExec(
        server,
        `runuser -u ${user} -- python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.connect('${SOCKET}')"`,
        'root',
      );
      expect(direct.code, user).not.toBe(0);
      expect(direct.stderr, user).toMatch(/PermissionError/);
    }
    // Its data: redis's alone (the dump holds every key).
    await cli('save');
    expect(await rootExec(server, `ls ${DATA}`)).toBe('dump.rdb');
    const peek = await sshExec(server, `runuser -u ${APP} -- ls ${DATA}`, 'root');
    expect(peek.code).not.toBe(0);
  }, 300_000);

  it('runs with the inventory’s memory limit and policy (defaults 256mb, noeviction)', async () => {
    expect(await cli('config', 'get', 'maxmemory')).toBe(`maxmemory\n${256 * 1024 * 1024}`);
    expect(await cli('config', 'get', 'maxmemory-policy')).toBe('maxmemory-policy\nnoeviction');
  }, 300_000);

  it('changes nothing on a second setup or deploy', async () => {
    const setup = await timed('stack setup (again)', () => ok(run(['setup', 'sbx'])));
    expect(setup.stderr).toMatch(/done: changed 0 things/);
    expect(ok(run(['setup', 'sbx', '--dry-run'])).stderr).toMatch(/nothing to change/);
    const dry = ok(run(['deploy', 'sbx', '--dry-run', '--exit-code']));
    expect(dry.stderr).toMatch(/nothing to change/);
    expect(dry.stderr).not.toMatch(/redis/);
  }, 300_000);

  it('restarts Redis with a changed limit and policy, its data kept; hooks before activation reach it too', async () => {
    const before = await rootExec(server, `systemctl show -p MainPID --value ${UNIT}`);
    editInventory(dir, (doc) => {
      doc.redis = { maxmemory: '64mb', policy: 'allkeys-lru' };
      // Runs before the handlers, with the Redis that is running.
      doc.hooks = { ...doc.hooks, before_activate: [`python3 -c "${py("r.set('before', 'before_activate')")}"`] };
    });
    const dry = ok(run(['deploy', 'sbx', '--dry-run']));
    expect(dry.stderr).toMatch(/^-maxmemory 256mb$/m);
    expect(dry.stderr).toMatch(/^\+maxmemory 64mb$/m);
    expect(dry.stderr).toMatch(/^\+maxmemory-policy allkeys-lru$/m);
    expect(dry.stderr).toContain(`restart ${UNIT}`);
    // The drop-in did not change: Debian's default instance is left alone.
    expect(dry.stderr).not.toMatch(/mask Debian/);

    const r = await timed('stack deploy (maxmemory 64mb)', () => ok(run(['deploy', 'sbx'])));
    expect(r.stderr).toContain(`restart ${UNIT}`);
    const after = await rootExec(server, `systemctl show -p MainPID --value ${UNIT}`);
    expect(after).not.toBe(before);
    expect(await cli('config', 'get', 'maxmemory')).toBe(`maxmemory\n${64 * 1024 * 1024}`);
    expect(await cli('config', 'get', 'maxmemory-policy')).toBe('maxmemory-policy\nallkeys-lru');
    // Saved on the way down, loaded on the way up.
    expect(await cli('get', 'k')).toBe('v');
    expect(await cli('get', 'before')).toBe('before_activate');
    await expectNoRedisOnTcp();
    expect(ok(run(['deploy', 'sbx', '--dry-run'])).stderr).toMatch(/nothing to change/);
  }, 300_000);

  it('keeps Debian’s default instance down when the package is installed again', async () => {
    await timed('apt-get install --reinstall redis-server', () =>
      rootExec(server, 'DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -q --no-install-recommends redis-server >/dev/null 2>&1'),
    );
    expect(await rootExec(server, 'systemctl is-enabled redis-server.service; systemctl is-active redis-server.service; true')).toBe('masked\ninactive');
    await expectNoRedisOnTcp();
    expect(await cli('ping')).toBe('PONG');
  }, 300_000);
});
