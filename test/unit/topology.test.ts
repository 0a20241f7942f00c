/**
 * Hosts with roles in one environment, rendered per host (pure): nginx only on web hosts and
 * balancing over the app hosts, the gateway on app hosts (on the private address too when web
 * hosts elsewhere reach it, with a firewall letting only them in), processes and jobs on worker
 * hosts (a singleton on the first one), PostgreSQL and its backups on the db host, which lets the
 * app and worker hosts in with a password. The files pass nginx -t and systemd-analyze verify.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
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
    // Only the other web host may reach the port.
    const rules = text(web1, '/etc/stack/shop-firewall.nft');
    expect(rules).toContain(`tcp dport 8000 ip saddr { ${WEB2} } accept\n        tcp dport 8000 drop`);
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
      '/etc/systemd/system/shop-db-backup-failed.service',
      '/etc/systemd/system/shop-db-backup.service',
      '/etc/systemd/system/shop-db-backup.timer',
      '/usr/local/lib/stack/db-backup',
    ]);
    expect(db.services).toEqual(['shop-db-backup.timer']);
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
    expect(text(states.get(WEB2)!, '/etc/stack/shop-firewall.nft')).toContain(`ip saddr { ${WEB1} } accept`);
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

describe('inventories roles cannot serve', () => {
  const problems = (extra: object, hosts: object[]) => {
    try {
      inventory(extra, hosts);
      return '';
    } catch (e) {
      if (e instanceof InventoryError) return e.message;
      throw e;
    }
  };
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
