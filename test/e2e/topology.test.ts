/**
 * One environment on four servers, each with its roles: two web+app hosts, a worker host and a db
 * host (topo-web1, topo-web2, topo-wrk, topo-db). After `stack setup` and `stack deploy`: each
 * web host's nginx balances over both app hosts; the app reaches PostgreSQL on the db host over
 * TCP as its own role with the generated password; only the web hosts reach the gateway's port,
 * only the app and worker hosts PostgreSQL's, and without its firewall the gateway does not
 * listen; the process runs on the worker host alone; and a stopped app host costs no request.
 */
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runProgram, sandboxUp } from '../../src/sandbox/sandbox.js';
import { stack, type CliResult } from '../helpers/cli.js';
import { startLoad } from '../helpers/load.js';
import { rootExec, type SandboxInfo, sshExec, stopSandbox, trackSandbox } from '../helpers/sandbox.js';
import { stepTimer } from '../helpers/timing.js';

const APP = 'topo';
const DOMAIN = 'topo.test';
const NAMES = ['topo-web1', 'topo-web2', 'topo-wrk', 'topo-db'] as const;

const servers: Record<string, SandboxInfo> = {};
let dir: string;
const { timed, report } = stepTimer('topology');

function run(args: string[]): CliResult {
  const r = stack(args, { cwd: dir });
  process.stderr.write(`[topology] stack ${args.join(' ')}: exit ${r.code}\n`);
  return r;
}

/** A TCP connect from this machine: "open", "refused", or "timeout" (a firewall dropped the SYN). */
function connectFromHere(address: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port, timeout: 3000 });
    const done = (result: string) => {
      socket.destroy();
      resolve(result);
    };
    socket.once('connect', () => done('open'));
    socket.once('timeout', () => done('timeout'));
    socket.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : String(e.code)));
  });
}

/** GET through one web host's nginx: status and body. */
async function get(server: SandboxInfo, pathname: string): Promise<{ status: number; body: string }> {
  const r = await runProgram(
    'curl',
    ['-s', '--max-time', '10', '-w', '\n%{http_code}', '--resolve', `${DOMAIN}:80:${server.address}`, `http://${DOMAIN}${pathname}`],
    15_000,
  );
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}

const WSGI = `import json, os, socket


def application(environ, start_response):
    if environ.get('PATH_INFO') == '/db':
        import psycopg2
        with psycopg2.connect(os.environ['DATABASE_URL']) as c, c.cursor() as cur:
            cur.execute('SELECT current_user, host(inet_server_addr())')
            body = list(cur.fetchone())
    else:
        # Which server answered: its own sandbox address (every sandbox has the same host name).
        # A UDP socket's connect sends nothing; it only picks the address a packet would leave from.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(('169.254.0.1', 9))
            body = {'host': s.getsockname()[0]}
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [json.dumps(body).encode()]
`;

describe('one environment on four servers by roles', () => {
  beforeAll(async () => {
    const infos = await timed('boot four sandboxes', () =>
      Promise.all(
        NAMES.map((name) => {
          trackSandbox(name);
          return sandboxUp({ name, release: 'bookworm' });
        }),
      ),
    );
    for (const [i, n] of NAMES.entries()) servers[n] = infos[i]!;
    dir = mkdtempSync(path.join(tmpdir(), 'stack-topo-'));
    mkdirSync(path.join(dir, 'app'));
    writeFileSync(path.join(dir, 'app/web.py'), WSGI);
    const host = (name: string, roles: string[]) => {
      const s = servers[name]!;
      return { address: s.address, user: 'deploy', host_key: s.hostKey, identity_file: s.identityFile, roles };
    };
    writeFileSync(
      path.join(dir, 'inventory.yml'),
      stringify({
        app: { name: APP, source: 'app', wsgi: 'web:application', health: '/health', packages: ['python3-psycopg2'] },
        gateway: { server: 'gunicorn', workers: 2 },
        database: { engine: 'postgresql' },
        processes: { ticker: { command: 'sleep 100000' } },
        schedule: { noop: { command: 'true', on: 'hourly' } },
        environments: {
          sbx: {
            domains: [DOMAIN],
            ssl: 'none',
            hosts: [host('topo-db', ['db']), host('topo-web1', ['web', 'app']), host('topo-web2', ['web', 'app']), host('topo-wrk', ['worker'])],
          },
        },
      }),
    );
  }, 600_000);

  afterAll(async () => {
    report();
    await Promise.all(NAMES.map((n) => stopSandbox(n).catch(() => {})));
  });

  it('sets up and deploys every host', async () => {
    const setup = await timed('stack setup', () => run(['setup', 'sbx']));
    expect(setup.code, setup.stderr).toBe(0);
    const deploy = await timed('stack deploy', () => run(['deploy', 'sbx']));
    expect(deploy.code, deploy.stderr).toBe(0);
    // The password never shows, not even in the verbose output.
    const password = await rootExec(servers['topo-db']!, `cat /etc/stack/${APP}-db-password`);
    expect(password).toMatch(/^[0-9a-f]{64}$/);
    expect(setup.stdout + setup.stderr + deploy.stdout + deploy.stderr).not.toContain(password);
    expect(await rootExec(servers['topo-db']!, `stat -c '%a %U' /etc/stack/${APP}-db-password`)).toBe('600 root');
  }, 900_000);

  it('answers through each web host from both app hosts', async () => {
    for (const web of ['topo-web1', 'topo-web2']) {
      const seen = new Set<string>();
      for (let i = 0; i < 40 && seen.size < 2; i++) {
        const r = await get(servers[web]!, '/');
        expect(r.status).toBe(200);
        seen.add(JSON.parse(r.body).host);
      }
      expect([...seen].sort(), web).toEqual([servers['topo-web1']!.address, servers['topo-web2']!.address].sort());
    }
  });

  it('reaches PostgreSQL on the db host over TCP as its own role', async () => {
    for (const web of ['topo-web1', 'topo-web2']) {
      const r = await get(servers[web]!, '/db');
      expect(r.status, r.body).toBe(200);
      expect(JSON.parse(r.body)).toEqual([APP, servers['topo-db']!.address]);
    }
    // Nobody but the app and worker hosts gets in with the role (the db host's own pg_hba).
    const hba = await rootExec(servers['topo-db']!, `grep -E '^host +${APP} +${APP} ' "$(runuser -u postgres -- psql -XAtc 'SHOW hba_file')"`);
    const clients = hba.split('\n').map((l) => l.split(/\s+/)[3]);
    expect(clients.sort()).toEqual(['topo-web1', 'topo-web2', 'topo-wrk'].map((n) => `${servers[n]!.address}/32`).sort());
  });

  it('runs the hooks once, on the first app host, after a backup on the db host', async () => {
    const file = path.join(dir, 'inventory.yml');
    const doc = parse(readFileSync(file, 'utf8'));
    // A "migration" that records which host ran it (the client address PostgreSQL sees).
    const sql = 'CREATE TABLE IF NOT EXISTS runs (host text); INSERT INTO runs SELECT host(inet_client_addr())';
    doc.hooks = {
      before_activate: [
        `python3 -c "import os, psycopg2; c = psycopg2.connect(os.environ['DATABASE_URL']); c.autocommit = True; c.cursor().execute('${sql}')"`,
      ],
    };
    writeFileSync(file, stringify(doc));
    writeFileSync(path.join(dir, 'app/version.txt'), '2\n');
    const r = await timed('deploy with a hook (backup on the db host first)', () => run(['deploy', 'sbx']));
    expect(r.code, r.stderr).toBe(0);
    const ran = await rootExec(servers['topo-db']!, `runuser -u postgres -- psql -XAt -d ${APP} -c 'SELECT host FROM runs'`);
    expect(ran.split('\n')).toEqual([servers['topo-web1']!.address]);
    const backups = await rootExec(servers['topo-db']!, `ls /var/backups/stack/${APP}/`);
    const taken = /(\S+-deploy)\.dump/.exec(backups)?.[1];
    expect(taken, backups).toBeDefined();
    // The release that ran the hooks names it, for a rollback past it (stack db restore there).
    const manifest = JSON.parse(await rootExec(servers['topo-web1']!, `cat /srv/${APP}/current/.stack-release.json`));
    expect(manifest).toMatchObject({ db_backup: taken });
    expect(r.stderr).toMatch(new RegExp(`${servers['topo-web1']!.address.replace(/\./g, '\\.')}: \\d+ changes?, release \\S+, database backup \\S+-deploy`));
  });

  it('lets only the web hosts reach the gateway port, and only the app and worker hosts PostgreSQL', async () => {
    const web1 = servers['topo-web1']!.address;
    const db = servers['topo-db']!.address;
    // A TCP connect from each host (curl is on web hosts only); the firewall drops the others' SYNs.
    const probe = async (from: string, address: string, port: number) => {
      const r = await sshExec(servers[from]!, `timeout 3 bash -c 'exec 3<>/dev/tcp/${address}/${port}' && echo open || echo closed`, 'root');
      return r.stdout.trim() || `nothing (exit ${r.code}: ${r.stderr.trim()})`;
    };
    expect(await probe('topo-web2', web1, 8000)).toBe('open');
    expect(await probe('topo-wrk', web1, 8000)).toBe('closed');
    expect(await probe('topo-db', web1, 8000)).toBe('closed');
    // The host itself reaches its gateway on its own address (an app host's health check does).
    expect(await probe('topo-web1', web1, 8000)).toBe('open');
    // And from this machine, which is no host of the environment: dropped.
    expect(await connectFromHere(web1, 8000)).toBe('timeout');
    // The same connect reaches sshd on that host from the worker: only the gateway's port is closed to it.
    expect(await probe('topo-wrk', web1, 22)).toBe('open');
    // PostgreSQL on the db host's private address: the app and worker hosts, and nobody else.
    for (const from of ['topo-web1', 'topo-web2', 'topo-wrk', 'topo-db']) expect(await probe(from, db, 5432), from).toBe('open');
    expect(await connectFromHere(db, 5432)).toBe('timeout');
  });

  it('fails closed: the gateway does not listen without its firewall, which nftables.service does not wipe', async () => {
    const web2 = servers['topo-web2']!;
    const table = `nft list table inet stack_${APP}`;
    // Debian's nftables.service starts with `flush ruleset`: restarted or reloaded, the table is loaded again.
    await rootExec(web2, 'systemctl restart nftables.service');
    expect(await rootExec(web2, table)).toContain('tcp dport 8000');
    await rootExec(web2, 'systemctl reload nftables.service');
    expect(await rootExec(web2, table)).toContain('tcp dport 8000');
    expect(await rootExec(web2, `systemctl is-active ${APP}.socket ${APP}-firewall.service`)).toBe('active\nactive');
    // Without the table, no socket: the port is closed to everyone rather than open to all.
    await rootExec(web2, `systemctl stop ${APP}-firewall.service`);
    expect(await rootExec(web2, `systemctl is-active ${APP}.socket || true`)).not.toBe('active');
    const r = await sshExec(servers['topo-web1']!, `timeout 3 bash -c 'exec 3<>/dev/tcp/${web2.address}/8000' && echo open || echo closed`, 'root');
    expect(r.stdout.trim()).toBe('closed');
    // Starting the gateway loads the firewall first.
    await rootExec(web2, `systemctl start ${APP}.socket ${APP}.service`);
    expect(await rootExec(web2, `systemctl is-active ${APP}-firewall.service ${APP}.socket ${APP}.service`)).toBe('active\nactive\nactive');
    expect(await rootExec(web2, table)).toContain('tcp dport 8000');
    // The db host's table comes back with nftables.service too.
    await rootExec(servers['topo-db']!, 'systemctl restart nftables.service');
    expect(await rootExec(servers['topo-db']!, table)).toContain('tcp dport 5432');
    expect((await get(servers['topo-web1']!, '/db')).status).toBe(200);
  });

  it('runs the process and the job timer on the worker host only', async () => {
    expect(await rootExec(servers['topo-wrk']!, `systemctl is-active ${APP}.ticker@1.service`)).toBe('active');
    expect(await rootExec(servers['topo-wrk']!, `systemctl is-active ${APP}.job.noop.timer`)).toBe('active');
    for (const other of ['topo-web1', 'topo-web2', 'topo-db'])
      expect(await rootExec(servers[other]!, `systemctl is-active ${APP}.ticker@1.service || true`), other).not.toBe('active');
    // And no gateway, no nginx there.
    const states = (await rootExec(servers['topo-wrk']!, `systemctl is-active ${APP}.service nginx.service || true`)).split('\n');
    expect(states).not.toContain('active');
  });

  it('the balancer skips a stopped app host with no failed request', async () => {
    const loads = ['topo-web1', 'topo-web2'].map((w) => startLoad(`http://${servers[w]!.address}/`, { concurrency: 4, maxRequests: 4000, maxMs: 12_000 }));
    await new Promise((r) => setTimeout(r, 1500));
    // The whole gateway: the socket too, or a request would start it again.
    await rootExec(servers['topo-web2']!, `systemctl stop ${APP}.socket ${APP}.service`);
    await new Promise((r) => setTimeout(r, 5000));
    const results = await Promise.all(loads.map((l) => l.stop()));
    await rootExec(servers['topo-web2']!, `systemctl start ${APP}.socket ${APP}.service`);
    for (const r of results) {
      process.stderr.write(`[topology] load: ${JSON.stringify(r)}\n`);
      expect(r.total).toBeGreaterThan(50);
      expect(r.failures).toEqual({});
    }
  }, 60_000);
});
