/**
 * `redis:`, the pure parts: the inventory's values, the app's environment, the files of
 * roles/redis.yml as rendered (the instance's config and the drop-in that gives it the app's
 * group), and what a deploy plans from them. The real Redis is test/e2e/redis.test.ts's.
 */
import { describe, expect, it } from 'vitest';
import { InventoryError } from '../../src/errors.js';
import { parseFacts } from '../../src/facts/host.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Environment } from '../../src/inventory/resolve.js';
import { planDeploy } from '../../src/plan/plan.js';
import { displayContent, Secret } from '../../src/secrets/secret.js';
import { buildDesiredState, type DesiredFile, type DesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { convergedFacts } from '../helpers/plans.js';

const CONF = '/etc/redis/redis-blog.conf';
const DROPIN = '/etc/systemd/system/redis-server@blog.service.d/stack.conf';
const SOCKET = '/run/redis-blog/redis-server.sock';
const UNIT = 'redis-server@blog.service';

/** An inventory with `redis` (a YAML value) at the top, unless undefined, and `own` lines in prod. */
function inventoryText(redis?: string, own: string[] = []): string {
  return `${[
    'app:',
    '  name: blog',
    '  wsgi: blog.wsgi:application',
    '  secrets: [SECRET_KEY]',
    ...(redis === undefined ? [] : [`redis: ${redis}`]),
    'environments:',
    '  prod:',
    '    domains: [blog.example.com]',
    '    hosts:',
    '      - address: 203.0.113.10',
    ...own,
  ].join('\n')}\n`;
}

const envOf = (text: string): Environment => parseInventory(text, 'inventory.yml').environments.prod!;

async function desiredOf(env: Environment): Promise<DesiredState> {
  const secrets = new Map([['SECRET_KEY', new Secret('SECRET_KEY', 'not-a-real-secret')]]);
  return buildDesiredState(env, env.hosts[0]!, { engine: new TemplateEngine('/nonexistent', '/'), facts: { nginxVersion: [1, 22, 1], cpus: 2 }, secrets });
}

function fileOf(d: DesiredState, path: string): DesiredFile {
  const f = d.files.find((x) => x.path === path);
  expect(f, `${path} among ${d.files.map((x) => x.path).join(', ')}`).toBeDefined();
  return f!;
}

/** The non-comment lines of a config file. */
const directives = (f: DesiredFile) =>
  displayContent(f.content)
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'));

describe('redis: in the inventory', () => {
  it('takes the defaults with true (256mb, noeviction), and is null when absent or false', () => {
    expect(envOf(inventoryText('true')).redis).toEqual({ maxmemory: '256mb', policy: 'noeviction' });
    expect(envOf(inventoryText('{ policy: allkeys-lru }')).redis).toEqual({ maxmemory: '256mb', policy: 'allkeys-lru' });
    expect(envOf(inventoryText()).redis).toBeNull();
    expect(envOf(inventoryText('false')).redis).toBeNull();
  });

  it('refuses a size without unit and an unknown policy', () => {
    for (const [bad, said] of [
      ['{ maxmemory: 256 }', /write a size in kb, mb or gb/],
      ['{ policy: lru }', /one of Redis's maxmemory policies/],
    ] as const) {
      expect(() => envOf(inventoryText(bad)), bad).toThrow(InventoryError);
      expect(() => envOf(inventoryText(bad)), bad).toThrow(said);
    }
  });

  it('refuses REDIS_URL set by hand: stack sets it', () => {
    const text = inventoryText('true').replace('  secrets: [SECRET_KEY]', '  secrets: [SECRET_KEY]\n  env: { REDIS_URL: "redis://elsewhere:6379/0" }');
    expect(() => envOf(text)).toThrow(/REDIS_URL: stack sets it from redis:/);
  });
});

describe('the redis role, rendered', async () => {
  const d = await desiredOf(envOf(inventoryText('true')));
  const tuned = await desiredOf(envOf(inventoryText('{ maxmemory: 64mb, policy: allkeys-lru }')));
  const none = await desiredOf(envOf(inventoryText()));

  it('hands the app the socket as REDIS_URL and CELERY_BROKER_URL, the layout’s socket', () => {
    expect(d.layout.redis_socket).toBe(SOCKET);
    const env = displayContent(fileOf(d, d.layout.env_file).content);
    expect(env).toContain(`REDIS_URL="unix://${SOCKET}"\n`);
    expect(env).toContain(`CELERY_BROKER_URL="redis+socket://${SOCKET}"\n`);
    expect(displayContent(fileOf(none, none.layout.env_file).content)).not.toMatch(/REDIS|CELERY/);
  });

  it('configures a unix socket only (770), systemd supervision, the journal, its own data folder and the inventory’s memory', () => {
    const conf = fileOf(d, CONF);
    expect([conf.mode, conf.owner, conf.group, conf.role, conf.validate]).toEqual(['0640', 'root', 'blog', 'redis', undefined]);
    expect(conf.notify).toEqual(['restart-redis']);
    expect(directives(conf)).toEqual([
      'port 0',
      `unixsocket ${SOCKET}`,
      'unixsocketperm 770',
      'supervised systemd',
      'daemonize no',
      'pidfile /run/redis-blog/redis-server.pid',
      'loglevel notice',
      'logfile ""',
      'dir /var/lib/redis/blog',
      'dbfilename dump.rdb',
      'save 3600 1 300 100 60 10000',
      'maxmemory 256mb',
      'maxmemory-policy noeviction',
      'enable-protected-configs no',
      'enable-debug-command no',
      'enable-module-command no',
    ]);
    // No TCP at all: nothing binds an address.
    expect(directives(conf).filter((l) => /^(bind|tls-port|port [1-9])/.test(l))).toEqual([]);
    const t = directives(fileOf(tuned, CONF));
    expect(t).toContain('maxmemory 64mb');
    expect(t).toContain('maxmemory-policy allkeys-lru');
  });

  it('runs the instance with the app’s group through a drop-in: writable only its data folder, its socket folder closed', () => {
    const dropin = fileOf(d, DROPIN);
    expect([dropin.mode, dropin.owner, dropin.group, dropin.role]).toEqual(['0644', 'root', 'root', 'redis']);
    // systemd-analyze verify takes whole units: a drop-in is not checked on its own.
    expect(dropin.validate).toBeUndefined();
    expect(dropin.notify).toEqual(['daemon-reload', 'mask-default-redis', 'enable-redis', 'restart-redis']);
    expect(directives(dropin)).toEqual(['[Service]', 'Group=blog', 'RuntimeDirectoryMode=2750', 'ReadWritePaths=', 'ReadWritePaths=/var/lib/redis/blog']);
  });

  it('installs redis-server, makes the data folder redis’s, runs the instance; nobody joins group redis', () => {
    expect(d.packages).toContain('redis-server');
    expect(d.dirs.find((x) => x.path === '/var/lib/redis/blog')).toMatchObject({ mode: '0750', owner: 'redis', group: 'redis', role: 'redis' });
    expect(d.services).toContain(UNIT);
    expect(d.memberships.filter((m) => m.group === 'redis' && !m.absent)).toEqual([]);
  });

  it('adds nothing of Redis without redis:', () => {
    expect(none.packages).not.toContain('redis-server');
    expect(none.files.filter((f) => f.role === 'redis')).toEqual([]);
    expect(none.dirs.filter((x) => x.role === 'redis')).toEqual([]);
    expect(none.services.filter((s) => s.startsWith('redis'))).toEqual([]);
    // Links and removes take no `when:`: the role has none, so nothing of Debian's Redis is touched.
    expect([...none.links, ...none.removes].filter((x) => x.role === 'redis')).toEqual([]);
  });

  it('runs its handlers after daemon-reload: mask Debian’s default instance, enable and restart the app’s', () => {
    const names = d.handlers.map((h) => h.name);
    const at = (n: string) => names.indexOf(n);
    expect(at('daemon-reload')).toBeGreaterThanOrEqual(0);
    expect(at('mask-default-redis')).toBeGreaterThan(at('daemon-reload'));
    expect(at('enable-redis')).toBeGreaterThan(at('mask-default-redis'));
    expect(at('restart-redis')).toBeGreaterThan(at('enable-redis'));
    const byName = Object.fromEntries(d.handlers.map((h) => [h.name, h]));
    expect(byName['mask-default-redis']!.command).toBe('systemctl disable --now --quiet redis-server.service && systemctl mask --quiet redis-server.service');
    expect(byName['enable-redis']!.command).toBe(`systemctl enable --quiet ${UNIT}`);
    expect(byName['restart-redis']!.service).toBe(UNIT);
    expect(byName['restart-redis']!.command).toContain(`systemctl restart ${UNIT} || { journalctl -u ${UNIT} `);
  });
});

describe('what a deploy plans for Redis', async () => {
  const d = await desiredOf(envOf(inventoryText('true')));

  it('on a new server: every redis handler once, and no separate start of the restarted instance', () => {
    const plan = planDeploy({ desired: d, facts: parseFacts('nginx\t1.22.1') });
    expect(plan.packages).toContain('redis-server');
    expect(plan.files.map((f) => f.file.path)).toEqual(expect.arrayContaining([CONF, DROPIN]));
    expect(plan.handlers.map((h) => h.name)).toEqual(expect.arrayContaining(['daemon-reload', 'mask-default-redis', 'enable-redis', 'restart-redis']));
    expect(plan.start).not.toContain(UNIT);
  });

  it('a changed limit: the config only, and only a restart', () => {
    const plan = planDeploy({ desired: d, facts: parseFacts(convergedFacts(d, null, CONF)) });
    expect(plan.files.map((f) => f.file.path)).toEqual([CONF]);
    expect(plan.handlers.map((h) => h.name)).toEqual(['restart-redis']);
  });

  it('a stopped instance is started; a converged server changes nothing', () => {
    const converged = convergedFacts(d, null);
    const stopped = planDeploy({ desired: d, facts: parseFacts(converged.replace(`service\t${UNIT}\tenabled\tactive`, `service\t${UNIT}\tenabled\tfailed`)) });
    expect(stopped.start).toEqual([UNIT]);
    const same = planDeploy({ desired: d, facts: parseFacts(converged) });
    expect([same.files, same.handlers, same.start, same.dirs, same.packages]).toEqual([[], [], [], [], []]);
  });
});
