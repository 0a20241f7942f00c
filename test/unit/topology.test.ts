/**
 * Hosts with roles in one environment, rendered per host (pure): nginx only on web hosts and
 * balancing over the app hosts, the gateway on app hosts (on the private address too when web
 * hosts elsewhere reach it, with a firewall letting only them in), processes and jobs on worker
 * hosts (a singleton on the first one), PostgreSQL and its backups on the db host, which lets the
 * app and worker hosts in with a password. The files pass nginx -t and systemd-analyze verify.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { clusterPasswordScript, clusterSecrets, NOT_MADE_YET, parseClusterPassword } from '../../src/apply/cluster.js';
import { checkNginxSites } from '../../src/checks/nginx.js';
import { checkSystemdUnits } from '../../src/checks/systemd.js';
import { renderEnvironment } from '../../src/commands/render.js';
import { InventoryError } from '../../src/errors.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Host } from '../../src/inventory/schema.js';
import { parseDatabase } from '../../src/facts/database.js';
import { parseFacts } from '../../src/facts/host.js';
import { planDeploy } from '../../src/plan/plan.js';
import { planDatabase, type SharedDatabase } from '../../src/plan/database.js';
import { displayContent, Secret } from '../../src/secrets/secret.js';
import type { RemoteShell } from '../../src/ssh/connect.js';
import { configFilesFor, type DesiredState } from '../../src/state/desired.js';
import { hbaBlock } from '../../src/views/database.js';
import { envFileContent, redactEnvFileText } from '../../src/views/envfile.js';
import { DB_PASSWORD_SECRET, GATEWAY_PORT, topologyOf } from '../../src/views/topology.js';
import { hostHealthCheck } from '../../src/apply/deploy-host.js';
import { healthConfig } from '../../src/apply/scripts.js';
import { layoutFor } from '../../src/views/layout.js';
import { ROOT } from '../helpers/cli.js';

const WEB1 = '203.0.113.11';
const WEB2 = '203.0.113.12';
const WRK = '203.0.113.13';
const DB = '203.0.113.14';
const DB_PRIVATE = '10.0.0.14';

// biome-ignore lint/suspicious/noExplicitAny: inventory documents as plain data
function inventory(extra: Record<string, any> = {}, hosts?: object[]) {
  const doc = {
    app: { name: 'shop', wsgi: 'shop.wsgi:application', health: '/health' },
    gateway: { server: 'gunicorn', workers: 2 },
    database: { engine: 'postgresql' },
    processes: { worker: { command: 'celery -A shop worker' }, beat: { command: 'celery -A shop beat', singleton: true } },
    schedule: { clearsessions: { command: 'python manage.py clearsessions', on: 'daily' } },
    ...extra,
    environments: {
      prod: {
        domains: ['shop.example.com'],
        ssl: 'none',
        hosts: hosts ?? [
          { address: WEB1, roles: ['web', 'app'] },
          { address: WEB2, roles: ['web', 'app'] },
          { address: WRK, roles: ['worker'] },
          { address: DB, private_address: DB_PRIVATE, roles: ['db'] },
        ],
      },
    },
  };
  // A key given as null is left out (no database:, no processes:).
  for (const [k, v] of Object.entries(doc)) if (v === null) delete (doc as Record<string, unknown>)[k];
  return parseInventory(stringify(doc), path.join(PROJECT, 'inventory.yml'));
}

/** The project the inventories describe: the WSGI module must be there. */
const PROJECT = mkdtempSync(path.join(tmpdir(), 'stack-topology-'));
mkdirSync(path.join(PROJECT, 'shop'));
writeFileSync(path.join(PROJECT, 'shop/wsgi.py'), 'application = None\n');

async function render(inv = inventory()): Promise<Map<string, DesiredState>> {
  const states = await renderEnvironment(inv, inv.environments.prod!);
  return new Map(states.map((s) => [s.host.address, s]));
}

const file = (s: DesiredState, path: string) => s.files.find((f) => f.path === path);
const text = (s: DesiredState, path: string) => {
  const f = file(s, path);
  if (!f) throw new Error(`${s.host.address} has no ${path}`);
  return displayContent(f.content);
};

describe('what each host runs', () => {
  it('a web+app host: nginx balancing over both app hosts, the gateway on its socket and its private address, no processes', async () => {
    const web1 = (await render()).get(WEB1)!;
    const site = text(web1, '/etc/nginx/sites-available/shop.conf');
    expect(site).toContain(
      [
        'upstream shop_app {',
        '    server unix:/run/shop/gunicorn.sock max_fails=2 fail_timeout=10s;',
        `    server ${WEB2}:8000 max_fails=2 fail_timeout=10s;`,
        '}',
      ].join('\n'),
    );
    expect(site).toContain('proxy_next_upstream error timeout;');
    const socket = text(web1, '/etc/systemd/system/shop.socket');
    expect(socket).toContain('ListenStream=/run/shop/gunicorn.sock\n');
    expect(socket).toContain(`ListenStream=${WEB1}:8000\nFreeBind=yes\n`);
    expect(socket).toContain('After=shop-firewall.service');
    expect(text(web1, '/etc/shop/gunicorn.conf.py')).toContain(`bind = ["unix:/run/shop/gunicorn.sock", "${WEB1}:8000"]`);
    // Only the other web host may reach the gateway's address and port, and this host itself
    // (its own health check goes to its own address); nothing else on the host is touched.
    const rules = text(web1, '/etc/stack/shop-firewall.nft');
    expect(rules).toContain('        iif lo accept\n');
    expect(rules).toContain(
      [`        ip daddr ${WEB1} tcp dport 8000 ip saddr { ${WEB1}, ${WEB2} } accept`, `        ip daddr ${WEB1} tcp dport 8000 drop`].join('\n'),
    );
    expect(rules).not.toMatch(/^ +tcp dport/m);
    expect(web1.services).toContain('shop-firewall.service');
    expect(web1.packages).toContain('nftables');
    expect(web1.files.some((f) => f.path.includes('shop.worker@') || f.path.includes('.job.'))).toBe(false);
    expect(web1.parts).toEqual({ instances: [], timers: [] });
    // No PostgreSQL here: the unit does not wait for one; the env file points at the db host.
    expect(text(web1, '/etc/systemd/system/shop.service')).not.toContain('postgresql');
    expect(web1.packages).not.toContain('postgresql');
    const env = text(web1, '/etc/shop/env');
    expect(env).toContain(`DATABASE_URL="postgresql://shop:[REDACTED]@${DB_PRIVATE}:5432/shop"`);
    expect(env).toContain(`PGHOST="${DB_PRIVATE}"\nPGPORT="5432"\nPGDATABASE="shop"\nPGUSER="shop"\nPGPASSWORD="[REDACTED]"\n`);
  });

  it('the worker host: the app code, its environment, the processes and jobs; no gateway, no nginx', async () => {
    const wrk = (await render()).get(WRK)!;
    const paths = wrk.files.map((f) => f.path);
    expect(paths).toContain('/etc/shop/env');
    expect(paths).toContain('/etc/systemd/system/shop.worker@.service');
    expect(paths).toContain('/etc/systemd/system/shop.beat@.service');
    expect(paths).toContain('/etc/systemd/system/shop.job.clearsessions.timer');
    expect(paths.filter((p) => /nginx|shop\.service$|shop\.socket$|gunicorn/.test(p))).toEqual([]);
    expect(wrk.services).not.toContain('nginx');
    expect(wrk.services).not.toContain('shop.service');
    expect(wrk.handlers.map((h) => h.name)).not.toContain('restart-app');
    expect(wrk.parts.instances).toEqual(['shop.worker@1.service', 'shop.beat@1.service']);
    expect(wrk.users.map((u) => u.name)).toContain('shop');
  });

  it('the db host: PostgreSQL and its backups, nothing of the app', async () => {
    const db = (await render()).get(DB)!;
    expect(db.packages).toContain('postgresql');
    expect(db.files.map((f) => f.path).sort()).toEqual([
      '/etc/stack/shop-firewall.nft',
      '/etc/systemd/system/shop-db-backup-failed.service',
      '/etc/systemd/system/shop-db-backup.service',
      '/etc/systemd/system/shop-db-backup.timer',
      '/etc/systemd/system/shop-firewall.service',
      '/usr/local/lib/stack/db-backup',
    ]);
    expect(db.services).toEqual(['shop-firewall.service', 'shop-db-backup.timer']);
  });

  it('a singleton process and the scheduled jobs run on the first worker host only', async () => {
    const states = await render(
      inventory({}, [
        { address: WEB1, roles: ['web', 'app', 'db'] },
        { address: WRK, roles: ['worker'] },
        { address: WEB2, roles: ['worker'] },
      ]),
    );
    expect(states.get(WRK)!.parts).toEqual({ instances: ['shop.worker@1.service', 'shop.beat@1.service'], timers: ['shop.job.clearsessions.timer'] });
    expect(states.get(WEB2)!.parts).toEqual({ instances: ['shop.worker@1.service'], timers: [] });
    expect(states.get(WEB1)!.parts).toEqual({ instances: [], timers: [] });
  });

  it('a web host alone balances over the app hosts by TCP only; the app hosts let it in', async () => {
    const states = await render(
      inventory({ database: null, processes: null, schedule: null }, [
        { address: WEB1, roles: ['web'] },
        { address: WEB2, roles: ['app'], private_address: '10.0.0.12' },
        { address: WRK, roles: ['app', 'worker', 'db'], private_address: '10.0.0.13' },
      ]),
    );
    const site = text(states.get(WEB1)!, '/etc/nginx/sites-available/shop.conf');
    expect(site).toMatch(
      /upstream shop_app \{\n {4}server 10\.0\.0\.12:8000 max_fails=2 fail_timeout=10s;\n {4}server 10\.0\.0\.13:8000 max_fails=2 fail_timeout=10s;\n\}/,
    );
    expect(states.get(WEB1)!.files.map((f) => f.path)).toEqual(['/etc/nginx/sites-available/shop.conf']);
    expect(text(states.get(WEB2)!, '/etc/stack/shop-firewall.nft')).toContain(`ip daddr 10.0.0.12 tcp dport 8000 ip saddr { 10.0.0.12, ${WEB1} } accept`);
    expect(text(states.get(WEB2)!, '/etc/systemd/system/shop.socket')).toContain('ListenStream=10.0.0.12:8000');
  });

  it('hosts without roles each run everything, as before roles existed', async () => {
    const states = await render(inventory({ processes: null, schedule: null }, [{ address: WEB1 }, { address: WEB2 }]));
    for (const s of states.values()) {
      expect(text(s, '/etc/nginx/sites-available/shop.conf')).toContain('    server unix:/run/shop/gunicorn.sock fail_timeout=0;\n}');
      expect(text(s, '/etc/shop/env')).toContain('DATABASE_URL="postgresql:///shop?host=/var/run/postgresql"');
      expect(s.files.some((f) => f.path.includes('firewall'))).toBe(false);
    }
  });

  it('passes nginx -t and systemd-analyze verify on every host', async () => {
    for (const state of (await render()).values()) {
      for (const site of configFilesFor(state, 'nginx')) {
        const r = await checkNginxSites([site]);
        expect(r.output, state.host.address).not.toMatch(/\[emerg\]/);
        expect(r.ok).toBe(true);
      }
      const units = configFilesFor(state, 'systemd');
      expect(units.length, state.host.address).toBeGreaterThan(0);
      const r = await checkSystemdUnits(units);
      expect(r.output, state.host.address).toBe('');
      expect(r.ok).toBe(true);
    }
  });
});

/** What the inventory's check says of these hosts: '' when it takes them. */
function problemsOf(extra: object, hosts: object[]): string {
  try {
    inventory(extra, hosts);
    return '';
  } catch (e) {
    if (e instanceof InventoryError) return e.message;
    throw e;
  }
}

describe('inventories roles cannot serve', () => {
  const problems = problemsOf;
  it.each([
    [
      'Redis on a db host the app cannot reach',
      { redis: true },
      [
        { address: WEB1, roles: ['web', 'app', 'worker'] },
        { address: DB, roles: ['db'] },
      ],
      /Redis runs on the db host/,
    ],
    [
      'static files on a web host without the app',
      { app: { static: { path: 'static', url: '/static/' } } },
      [
        { address: WEB1, roles: ['web'] },
        { address: DB, roles: ['app', 'worker', 'db'] },
      ],
      /static files/,
    ],
    [
      'two db hosts',
      {},
      [
        { address: WEB1, roles: ['web', 'app', 'worker', 'db'] },
        { address: DB, roles: ['db'] },
      ],
      /several hosts have the role db/,
    ],
    ['no worker for the processes', {}, [{ address: WEB1, roles: ['web', 'app', 'db'] }], /no host has the role worker/],
    [
      'an app host that web hosts elsewhere reach, known by name only',
      { database: null, processes: null, schedule: null },
      [
        { address: WEB1, roles: ['web'] },
        { address: 'app1.example.com', roles: ['app', 'worker'] },
      ],
      /app1\.example\.com is a host name.*private_address/,
    ],
    [
      'the db host that app hosts elsewhere reach, known by name only',
      { processes: null, schedule: null },
      [
        { address: WEB1, roles: ['web', 'app', 'worker'] },
        { address: 'db.example.com', roles: ['db'] },
      ],
      /db\.example\.com is a host name.*private_address/,
    ],
  ])('%s', (_name, extra, hosts, message) => {
    const app = (extra as { app?: object }).app;
    const doc = app ? { ...extra, app: { name: 'shop', wsgi: 'shop.wsgi:application', health: '/health', ...app } } : extra;
    expect(problems(doc, hosts)).toMatch(message);
    // Each problem names the inventory's file and line.
    expect(problems(doc, hosts)).toMatch(/inventory\.yml:\d+:\d+/);
  });
});

describe('the database shared with hosts elsewhere', () => {
  it("pg_hba: the app's role from the app and worker hosts with scram-sha-256, before every reject; alone, as before", () => {
    expect(hbaBlock('shop', 'shop')).not.toContain('scram');
    const block = hbaBlock('shop', 'shop', ['10.0.0.11', 'fd00::12']);
    const lines = block.trimEnd().split('\n');
    expect(lines.slice(2, 4)).toEqual([
      'host    shop            shop            10.0.0.11/32    scram-sha-256',
      'host    shop            shop            fd00::12/128    scram-sha-256',
    ]);
    expect(lines.findIndex((l) => l.includes('reject'))).toBeGreaterThan(3);
    // A host name would make `NAME/32`, which PostgreSQL refuses: never written.
    expect(() => hbaBlock('shop', 'shop', ['app1.example.com'])).toThrow(/not an IP address/);
  });

  it('the role needs a password, PostgreSQL listens on the private address', () => {
    const inv = inventory();
    const base = inv.environments.prod!.database!;
    const db: SharedDatabase = { ...base, clients: [WEB1, WEB2, WRK], listen: `localhost,${DB_PRIVATE}`, passwordFile: '/etc/stack/shop-db-password' };
    const up = 'pg\tup\t15\npgrole\tshop\tf\tf\tf\tt\tf\tf\tf\npgdb\tshop\tshop\tUTF8\tC.UTF-8\tf\npghba\t/etc/postgresql/15/main/pg_hba.conf\t\n';
    const plan = planDatabase({ db, role: 'shop', facts: parseDatabase(up), host: DB, env: 'prod' })!;
    expect(plan.roleAction).toEqual({ kind: 'alter', wrong: ['password'] });
    expect(plan.listen).toBe(`localhost,${DB_PRIVATE}`);
    expect(plan.hba!.block).toMatch(new RegExp(`${WRK}/32 +scram-sha-256`));
    // Alone (no clients), the same facts need nothing of that.
    expect(planDatabase({ db: base, role: 'shop', facts: parseDatabase(up), host: DB, env: 'prod' })?.roleAction ?? null).toBeNull();
  });

  it('the env file carries the password only where it is written; a server copy is redacted', () => {
    const inv = inventory();
    const env = inv.environments.prod!;
    const web1 = env.hosts[0] as Host;
    const password = 'a'.repeat(64);
    const content = envFileContent(env, new Map([[DB_PASSWORD_SECRET, new Secret(DB_PASSWORD_SECRET, password)]]), topologyOf(env, web1));
    expect(String(content)).not.toContain(password);
    expect(content.reveal()).toContain(`DATABASE_URL="postgresql://shop:${password}@${DB_PRIVATE}:5432/shop"`);
    expect(content.reveal()).toContain(`PGPASSWORD="${password}"`);
    expect(redactEnvFileText(content.reveal(), [])).toBe(String(content));
  });

  it('clusterSecrets: one connection to the db host, the script on stdin, the password read from its output', async () => {
    const inv = inventory();
    const env = inv.environments.prod!;
    const password = 'b'.repeat(64);
    const calls: { host: string; script: string }[] = [];
    const shell = (host: Host): RemoteShell => ({
      label: host.address,
      execCount: 0,
      exec: async () => ({ code: 0, stdout: '', stderr: '' }),
      sudo: async () => ({ code: 0, stdout: '', stderr: '' }),
      sudoScript: async (script: string) => {
        calls.push({ host: host.address, script });
        return { code: 0, stdout: `@@dbpassword ${password}\n`, stderr: '' };
      },
      close: async () => {},
    });
    const secrets = await clusterSecrets(env, { baseDir: '/tmp', connect: async (h) => shell(h) });
    expect(calls.map((c) => c.host)).toEqual([DB]);
    expect(calls[0]!.script).toBe(clusterPasswordScript(env));
    expect(calls[0]!.script).toContain("db_cluster_password /etc/stack/shop-db-password shop || fail 'database password'");
    expect(secrets.get(DB_PASSWORD_SECRET)!.reveal()).toBe(password);
    expect(parseClusterPassword('@@dbpassword nothex\n')).toBeNull();
    // A dry run makes nothing on the db host: it only reads, and a password not made yet stands as such.
    await clusterSecrets(env, { baseDir: '/tmp', connect: async (h) => shell(h), dryRun: true });
    expect(calls[1]!.script).toContain("db_cluster_password /etc/stack/shop-db-password shop read || fail 'database password'");
    expect(parseClusterPassword('@@dbpassword -\n')).toBe(NOT_MADE_YET);
    calls.pop();
    // The database on the app's own host: nothing to share, no connection.
    const alone = inventory({}, [{ address: WEB1 }]).environments.prod!;
    expect((await clusterSecrets(alone, { baseDir: '/tmp', connect: async (h) => shell(h) })).size).toBe(0);
    expect(calls).toHaveLength(1);
  });
});

describe('the health check of each host', () => {
  const hosts = [
    { address: WEB1, roles: ['web'] },
    { address: WEB2, private_address: '10.0.0.12', roles: ['app'] },
    { address: WRK, roles: ['worker'] },
    { address: DB, roles: ['db'] },
  ];
  const env = inventory({}, hosts).environments.prod!;
  const layout = layoutFor(env.app, env.gateway);
  const check = (address: string) => hostHealthCheck(env, false, layout, topologyOf(env, env.hosts.find((h) => h.address === address)!));

  it('a web host: through its own nginx, on port 80', () => {
    expect(healthConfig(check(WEB1)!)).toContain(`HEALTH_RESOLVE=shop.example.com:80:127.0.0.1`);
  });

  it('an app host without nginx: its gateway on the private address the web hosts use', () => {
    const c = check(WEB2)!;
    expect(c.via).toEqual({ address: '10.0.0.12', port: GATEWAY_PORT });
    const config = healthConfig(c);
    expect(config).toContain(`HEALTH_URL=http://shop.example.com:${GATEWAY_PORT}/health`);
    expect(config).toContain(`HEALTH_RESOLVE=shop.example.com:${GATEWAY_PORT}:10.0.0.12`);
    expect(config).not.toContain('STATIC_URL');
  });

  it('a worker or db host: none (nothing there answers HTTP)', () => {
    expect(check(WRK)).toBeNull();
    expect(check(DB)).toBeNull();
  });

  it('curl, which the check runs, is installed on the app host without nginx', async () => {
    const states = await render(inventory({}, hosts));
    expect(states.get(WEB2)!.packages).toContain('curl');
    expect(states.get(WRK)!.packages).not.toContain('curl');
  });
});

describe('hosts others reach by address', () => {
  const problems = (hosts: object[], extra: object = { processes: null, schedule: null }) => problemsOf(extra, hosts);

  it('a host name goes into no pg_hba line, socket or firewall rule: each such host is named, at its own line', () => {
    const message = problems([
      { address: 'web1.example.com', roles: ['web', 'app', 'worker'] },
      { address: 'db.example.com', roles: ['db'] },
    ]);
    // The db host (reached by the app) and the app host (let in by pg_hba and the firewall).
    expect(message).toMatch(/db\.example\.com is a host name/);
    expect(message).toMatch(/web1\.example\.com is a host name/);
    const lines = [...message.matchAll(/inventory\.yml:(\d+):\d+: (\S+):/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(lines).toHaveLength(2);
    // Each at its own host's line (not the top of the file), on the key to add.
    expect(lines.map((l) => l.split(' ')[1])).toEqual(['environments.prod.hosts[0].private_address', 'environments.prod.hosts[1].private_address']);
    expect(new Set(lines.map((l) => l.split(' ')[0])).size).toBe(2);
    expect(lines.every((l) => Number(l.split(' ')[0]) > 1)).toBe(true);
  });

  it('an IP private_address is enough; so is a host that nobody reaches (one host, or no roles)', () => {
    expect(
      problems([
        { address: 'web1.example.com', private_address: '10.0.0.11', roles: ['web', 'app', 'worker'] },
        { address: 'db.example.com', private_address: 'fd00::14', roles: ['db'] },
      ]),
    ).toBe('');
    expect(problems([{ address: 'one.example.com', roles: ['web', 'app', 'worker', 'db'] }])).toBe('');
    expect(problems([{ address: 'a.example.com' }, { address: 'b.example.com' }])).toBe('');
    // A worker host that reaches no database (none) is let in by nobody.
    expect(
      problems(
        [
          { address: WEB1, roles: ['web', 'app'] },
          { address: 'wrk.example.com', roles: ['worker'] },
        ],
        { database: null },
      ),
    ).toBe('');
  });
});

/** nft checks the rules (`nft -c`) where it can: as root, with nftables installed. */
const nftChecks = spawnSync('nft', ['-c', '-f', '-'], { input: 'table inet stack_probe\n', encoding: 'utf8' }).status === 0;

describe('the firewall', () => {
  const APP_ONLY = '10.0.0.12';
  const hosts = [
    { address: WEB1, roles: ['web'] },
    { address: WEB2, private_address: APP_ONLY, roles: ['app'] },
    { address: WRK, roles: ['worker'] },
    { address: DB, private_address: DB_PRIVATE, roles: ['db'] },
  ];

  it("lets an app host without nginx reach its own gateway (its health check), and leaves other addresses' port alone", async () => {
    const app = (await render(inventory({}, hosts))).get(WEB2)!;
    const env = inventory({}, hosts).environments.prod!;
    const check = hostHealthCheck(env, false, layoutFor(env.app, env.gateway), topologyOf(env, env.hosts[1]!))!;
    // The health check connects from this host to its own private address: let in, like loopback.
    expect(check.via).toEqual({ address: APP_ONLY, port: GATEWAY_PORT });
    const rules = text(app, '/etc/stack/shop-firewall.nft');
    expect(rules).toContain('        iif lo accept\n');
    expect(rules).toContain(`        ip daddr ${APP_ONLY} tcp dport 8000 ip saddr { ${APP_ONLY}, ${WEB1} } accept\n`);
    expect(rules).toContain(`        ip daddr ${APP_ONLY} tcp dport 8000 drop\n`);
    // Every drop names the address it guards: 127.0.0.1:8000 (or any other) is not this table's.
    for (const line of rules.split('\n').filter((l) => l.includes('drop'))) expect(line).toMatch(/^ +ip6? daddr \S+ tcp dport \d+ drop$/);
  });

  it('PostgreSQL on the db host: only the app and worker hosts (and itself) reach 5432 on its private address', async () => {
    const db = (await render(inventory({}, hosts))).get(DB)!;
    const rules = text(db, '/etc/stack/shop-firewall.nft');
    expect(rules).toContain(`        ip daddr ${DB_PRIVATE} tcp dport 5432 ip saddr { ${DB_PRIVATE}, ${APP_ONLY}, ${WRK} } accept\n`);
    expect(rules).toContain(`        ip daddr ${DB_PRIVATE} tcp dport 5432 drop\n`);
    expect(rules).not.toContain('8000');
    expect(db.packages).toContain('nftables');
    const handlers = db.handlers.map((h) => h.name);
    expect(handlers.slice(0, 2)).toEqual(['daemon-reload', 'restart-firewall']);
    expect(handlers).toContain('restart-backup-timer');
    // Web-only and worker hosts guard nothing.
    const states = await render(inventory({}, hosts));
    for (const a of [WEB1, WRK]) expect(states.get(a)!.files.some((f) => f.path.includes('firewall'))).toBe(false);
  });

  it('one table for a host that is both reached as the gateway and as the database, IPv6 as ip6', async () => {
    const states = await render(
      inventory({ processes: null, schedule: null }, [
        { address: WEB1, private_address: 'fd00::11', roles: ['web'] },
        { address: WEB2, private_address: 'fd00::12', roles: ['app', 'worker', 'db'] },
        { address: WRK, private_address: 'fd00::13', roles: ['app'] },
      ]),
    );
    const rules = text(states.get(WEB2)!, '/etc/stack/shop-firewall.nft');
    expect(rules.match(/^table inet stack_shop \{$/gm)).toHaveLength(1);
    expect(rules).toContain('        ip6 daddr fd00::12 tcp dport 8000 ip6 saddr { fd00::12, fd00::11 } accept\n');
    expect(rules).toContain('        ip6 daddr fd00::12 tcp dport 5432 ip6 saddr { fd00::12, fd00::13 } accept\n');
    if (nftChecks) {
      const r = spawnSync('nft', ['-c', '-f', '-'], { input: rules, encoding: 'utf8' });
      expect(r.stderr).toBe('');
    }
  });

  it.skipIf(!nftChecks)('nft reads the rules of every host (nft -c)', async () => {
    for (const state of (await render(inventory({}, hosts))).values()) {
      const f = state.files.find((x) => x.path.endsWith('-firewall.nft'));
      if (!f) continue;
      const r = spawnSync('nft', ['-c', '-f', '-'], { input: displayContent(f.content), encoding: 'utf8' });
      expect(r.stderr, state.host.address).toBe('');
      expect(r.status).toBe(0);
    }
  });

  it('fails closed: the socket requires the firewall, which follows nftables.service (boot, restart, reload, stop)', async () => {
    const app = (await render(inventory({}, hosts))).get(WEB2)!;
    const socket = text(app, '/etc/systemd/system/shop.socket');
    expect(socket).toContain('Requires=shop-firewall.service\nAfter=shop-firewall.service\n');
    expect(socket).not.toContain('Wants=shop-firewall');
    const unit = text(app, '/etc/systemd/system/shop-firewall.service');
    expect(unit).toMatch(/^After=.*nftables\.service/m);
    expect(unit).toContain('PartOf=nftables.service\n');
    expect(unit).toContain('ReloadPropagatedFrom=nftables.service\n');
    expect(unit).toContain('ExecReload=/usr/sbin/nft -f /etc/stack/shop-firewall.nft\n');
    expect(unit).toMatch(/^WantedBy=sockets\.target nftables\.service$/m);
    // A changed rule set is loaded by a reload, which unlike a restart does not go on to the socket
    // (Requires= passes restarts on): the gateway keeps listening through it.
    const handler = app.handlers.find((h) => h.name === 'restart-firewall')!;
    expect(handler.command).toBe('systemctl reload-or-restart shop-firewall.service');
    const r = await checkSystemdUnits(configFilesFor(app, 'systemd'));
    expect(r.output).toBe('');
  });

  it('setup writes and loads the rules: the socket it restarts requires them, PostgreSQL listens from then on', async () => {
    const states = await render(inventory({}, hosts));
    for (const address of [WEB2, DB]) {
      const plan = planDeploy({ desired: states.get(address)!, facts: parseFacts('nginx\t\n'), scope: 'setup' });
      expect(
        plan.files.map((f) => f.file.path),
        address,
      ).toContain('/etc/stack/shop-firewall.nft');
      const handlers = plan.handlers.map((h) => h.name);
      expect(handlers, address).toContain('restart-firewall');
      if (handlers.includes('restart-socket')) expect(handlers.indexOf('restart-firewall')).toBeLessThan(handlers.indexOf('restart-socket'));
    }
  });

  it('a single server renders no firewall and the socket as before', async () => {
    const one = (await render(inventory({}, [{ address: WEB1 }]))).get(WEB1)!;
    expect(one.files.some((f) => f.path.includes('firewall'))).toBe(false);
    expect(text(one, '/etc/systemd/system/shop.socket')).not.toMatch(/Requires|Wants|firewall/);
  });
});

/** A function of src/remote/sh/db.sh run under dash, with stand-ins (name -> body) first on PATH that record their calls. */
function dbSh(body: string, stubs: Record<string, string>): { code: number | null; stdout: string; stderr: string; calls: string[]; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-db-sh-'));
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  const log = path.join(dir, 'calls');
  writeFileSync(log, '');
  for (const [name, code] of Object.entries(stubs)) {
    writeFileSync(path.join(bin, name), `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> "$STUB_LOG"\n${code}\n`, { mode: 0o755 });
  }
  const r = spawnSync('dash', ['-c', `. '${path.join(ROOT, 'src/remote/sh/db.sh')}'\n${body}`], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, STUB_LOG: log, STUB_DIR: dir },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, calls: readFileSync(log, 'utf8').split('\n').filter(Boolean), dir };
}

describe('the database password on the db host (db.sh, under dash)', () => {
  const PASSWORD = 'c'.repeat(64);

  it('a dry run (read) changes nothing: no owner, no mode set on the file it reads', () => {
    const stubs = { chown: 'exit 0', chmod: 'exit 0', runuser: 'exit 0', psql: 'exit 0' };
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-db-pw-'));
    const pw = path.join(dir, 'shop-db-password');
    writeFileSync(pw, PASSWORD, { mode: 0o644 });
    const r = dbSh(`db_cluster_password '${pw}' shop read`, stubs);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`@@dbpassword ${PASSWORD}\n`);
    expect(r.calls).toEqual([]);
    expect(statSync(pw).mode & 0o777).toBe(0o644);
    // Without read (a deploy), the file is made root's alone.
    const w = dbSh(`db_cluster_password '${pw}' shop`, stubs);
    expect(w.code).toBe(0);
    expect(w.calls).toEqual([`chown root:root ${pw}`, `chmod 0600 ${pw}`]);
  });

  it('sets the password with statement logging off for that session, the password on stdin only', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-db-pw-'));
    const pw = path.join(dir, 'shop-db-password');
    writeFileSync(pw, PASSWORD, { mode: 0o600 });
    const r = dbSh(`db_password shop '${pw}'`, { runuser: 'cat > "$STUB_DIR/psql-stdin"' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Not on a command line.
    expect(r.calls.join('\n')).not.toContain(PASSWORD);
    expect(r.calls[0]).toMatch(/^runuser -u postgres -- psql /);
    const sql = readFileSync(path.join(r.dir, 'psql-stdin'), 'utf8').split('\n').filter(Boolean);
    // Neither log_statement (ddl, all) nor an error's STATEMENT line, nor a slow statement's log, may write it to the server log.
    const alter = sql.findIndex((l) => l.startsWith('ALTER ROLE'));
    expect(alter).toBeGreaterThan(0);
    expect(sql[alter]).toBe(`ALTER ROLE "shop" PASSWORD '${PASSWORD}';`);
    const before = sql.slice(0, alter);
    expect(before).toContain("SET log_statement = 'none';");
    expect(before).toContain("SET log_min_error_statement = 'panic';");
    expect(before).toContain('SET log_min_duration_statement = -1;');
  });
});
