/**
 * Several hosts at once: the pool, the batches of a rolling deploy, --limit, the order a deploy
 * takes (db host, primary, batches), the error naming each failed host, progress of parallel
 * hosts on one terminal, and a dry run's identical plans folded together.
 */
import { describe, expect, it } from 'vitest';
import { batches, eachHost, HostsError, settle } from '../../src/apply/fleet.js';
import { deployOrder } from '../../src/commands/deploy.js';
import { parallelHosts, targetHosts } from '../../src/commands/environment.js';
import type { GlobalOptions } from '../../src/commands/options.js';
import { InventoryError, StackError, UsageError } from '../../src/errors.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Environment } from '../../src/inventory/resolve.js';
import type { Host } from '../../src/inventory/schema.js';
import { createProgress } from '../../src/ui/progress.js';
import type { HostRunResult } from '../../src/ui/results.js';
import { foldedDeployLines } from '../../src/ui/text.js';

const FILE = 'inventory.yml';

/** An environment `prod` with these host lines (each `- { ... }`) and extra top-level lines. */
function envWith(hosts: string[], top: string[] = [], own: string[] = []): Environment {
  const text = [
    'app:',
    '  name: blog',
    '  wsgi: blog.wsgi:application',
    ...top,
    'environments:',
    '  prod:',
    '    domains: [blog.example.com]',
    '    hosts:',
    ...hosts.map((h) => `      - ${h}`),
    ...own,
    '',
  ].join('\n');
  return parseInventory(text, FILE).environments.prod!;
}

function problems(hosts: string[], top: string[] = [], own: string[] = []): string[] {
  try {
    envWith(hosts, top, own);
    return [];
  } catch (err) {
    if (!(err instanceof InventoryError)) throw err;
    return err.problems.map((p) => `${p.line}:${p.field}: ${p.message}`);
  }
}

const FOUR = [
  '{ address: 10.0.0.1, roles: [web, app] }',
  '{ address: 10.0.0.2, roles: [web, app] }',
  '{ address: 10.0.0.3, roles: [worker] }',
  '{ address: 10.0.0.4, roles: [db] }',
];
const DATABASE = ['database: { engine: postgresql }'];
const addresses = (hosts: readonly Host[]) => hosts.map((h) => h.address);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('eachHost: a bounded pool', () => {
  const hosts = ['a', 'b', 'c', 'd', 'e'].map((address) => ({ address }) as Host);

  it('never runs more than `parallel` at once, and returns outcomes in the hosts’ order', async () => {
    let running = 0;
    let most = 0;
    const finished: string[] = [];
    // Later hosts finish first: the result must still follow the inventory.
    const outcomes = await eachHost(hosts, 2, async (h, i) => {
      running++;
      most = Math.max(most, running);
      await sleep(30 - i * 5);
      running--;
      finished.push(h.address);
      return h.address.toUpperCase();
    });
    expect(most).toBe(2);
    expect(outcomes.map((o) => (o.ok ? o.value : null))).toEqual(['A', 'B', 'C', 'D', 'E']);
    expect(finished).not.toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('all at once when parallel is the number of hosts', async () => {
    let running = 0;
    let most = 0;
    await eachHost(hosts, hosts.length, async () => {
      running++;
      most = Math.max(most, running);
      await sleep(10);
      running--;
    });
    expect(most).toBe(5);
  });

  it('a failing host does not stop the others', async () => {
    const outcomes = await eachHost(hosts, 2, async (h) => {
      if (h.address === 'b') throw new StackError('b broke');
      await sleep(5);
      return h.address;
    });
    expect(outcomes.map((o) => o.ok)).toEqual([true, false, true, true, true]);
  });
});

describe('settle: values, or the failure', () => {
  const a = { address: '10.0.0.1' } as Host;
  const b = { address: '10.0.0.2' } as Host;

  it('one host: its own error, untouched (exit code, hint)', () => {
    const own = new UsageError('bad', { hint: 'fix it' });
    expect(() => settle([{ host: a, ok: false, error: own }], 'deploy')).toThrow(own);
  });

  it('several: one error naming each failed host with its message and hint', () => {
    let caught: unknown;
    try {
      settle(
        [
          { host: a, ok: true, value: 1 },
          { host: b, ok: false, error: new StackError('health check failed\nGET /health -> 502', { hint: 'see the journal' }) },
        ],
        'deploy',
      );
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(HostsError);
    const e = caught as HostsError;
    expect(e.message).toBe('deploy failed on 1 of 2 hosts:\n  10.0.0.2: health check failed\n    GET /health -> 502\n    hint: see the journal');
    expect(e.exitCode).toBe(1);
  });

  it('the exit code is the failures’ own when they agree, else 1', () => {
    const usage = (h: Host) => ({ host: h, ok: false as const, error: new UsageError('x') });
    expect(() => settle([usage(a), usage(b)], 'x')).toThrow(expect.objectContaining({ exitCode: 2 }));
    expect(() => settle([usage(a), { host: b, ok: false, error: new StackError('y') }], 'x')).toThrow(expect.objectContaining({ exitCode: 1 }));
  });
});

describe('batches of a rolling deploy', () => {
  const eight = [1, 2, 3, 4, 5, 6, 7, 8];
  it.each([
    [null, [[1, 2, 3, 4, 5, 6, 7, 8]]],
    [1, [[1], [2], [3], [4], [5], [6], [7], [8]]],
    [
      3,
      [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8],
      ],
    ],
    [
      '25%',
      [
        [1, 2],
        [3, 4],
        [5, 6],
        [7, 8],
      ],
    ],
    [
      '30%',
      [
        [1, 2, 3],
        [4, 5, 6],
        [7, 8],
      ],
    ],
    ['1%', [[1], [2], [3], [4], [5], [6], [7], [8]]],
    ['100%', [[1, 2, 3, 4, 5, 6, 7, 8]]],
    [20, [[1, 2, 3, 4, 5, 6, 7, 8]]],
  ])('batch %s', (batch, expected) => {
    expect(batches(eight, batch as number | string | null)).toEqual(expected);
  });
  it('no hosts, no batches', () => expect(batches([], 2)).toEqual([]));
});

describe('roles, rolling and singletons in the inventory', () => {
  it('hosts without roles run everything; roles and private_address are kept', () => {
    const env = envWith(['{ address: 10.0.0.1 }', '{ address: 10.0.0.2, roles: [web, app], private_address: 192.168.1.2 }']);
    expect(env.hosts[0]!.roles).toBeUndefined();
    expect(env.hosts[1]).toMatchObject({ roles: ['web', 'app'], private_address: '192.168.1.2' });
    expect(env.rolling).toBeNull();
  });

  it('rolling: { batch } as a number or a share', () => {
    expect(envWith(['{ address: 10.0.0.1 }'], [], ['    rolling: { batch: 2 }']).rolling).toEqual({ batch: 2 });
    expect(envWith(['{ address: 10.0.0.1 }'], [], ['    rolling: { batch: "25%" }']).rolling).toEqual({ batch: '25%' });
  });

  it.each([
    [['{ address: 10.0.0.1, roles: [web, cache] }'], [], [], /roles\[1\]: must be a list of web, app, worker, db/],
    [['{ address: 10.0.0.1, roles: [] }'], [], [], /needs at least one of web, app, worker, db/],
    [['{ address: 10.0.0.1, roles: [web, web, app] }'], [], [], /lists a role twice/],
    [['{ address: 10.0.0.1, private_address: db1.internal }'], [], [], /private_address: "db1.internal" is not an IPv4 or IPv6 address/],
    [['{ address: 10.0.0.1 }'], [], ['    rolling: { batch: 0 }'], /rolling.batch/],
    [['{ address: 10.0.0.1 }'], [], ['    rolling: { batch: "150%" }'], /rolling.batch/],
    [['{ address: 10.0.0.1, roles: [app] }'], [], [], /no host has the role web, so nothing would run nginx/],
    [['{ address: 10.0.0.1, roles: [web] }'], [], [], /no host has the role app, so nothing would run the gateway/],
    [['{ address: 10.0.0.1, roles: [web, app] }'], DATABASE, [], /no host has the role db, so nothing would run the database/],
    [
      ['{ address: 10.0.0.1, roles: [web, app] }'],
      ['processes:', '  worker: { command: "celery worker" }'],
      [],
      /no host has the role worker, so nothing would run the processes/,
    ],
    [['{ address: 10.0.0.1 }', '{ address: 10.0.0.2, roles: [db] }'], DATABASE, [], /several hosts have the role db/],
    [['{ address: 10.0.0.1 }'], ['processes:', '  beat: { command: "celery beat", singleton: true, scale: 2 }'], [], /beat is a singleton/],
  ])('refused: %j %j %j', (hosts, top, own, message) => {
    const found = problems(hosts, top, own);
    expect(found.join('\n')).toMatch(message);
    // Located: a line of the file and the field.
    expect(found[0]).toMatch(/^\d+:environments\.prod\.|^\d+:processes\./);
  });
});

describe('--limit and --parallel', () => {
  const env = envWith([...FOUR.slice(0, 3), '{ address: 10.0.0.4, port: 2222, roles: [db] }'], DATABASE);

  it('all hosts without it; by address, address:port or role, in the inventory’s order', () => {
    expect(addresses(targetHosts(env, undefined))).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']);
    expect(addresses(targetHosts(env, '10.0.0.2'))).toEqual(['10.0.0.2']);
    expect(addresses(targetHosts(env, 'db,10.0.0.1'))).toEqual(['10.0.0.1', '10.0.0.4']);
    expect(addresses(targetHosts(env, '10.0.0.4:2222'))).toEqual(['10.0.0.4']);
    expect(addresses(targetHosts(env, 'web'))).toEqual(['10.0.0.1', '10.0.0.2']);
    expect(addresses(targetHosts(env, ' app , web '))).toEqual(['10.0.0.1', '10.0.0.2']);
  });

  it('refuses what names no host, with a guess and the hosts', () => {
    expect(() => targetHosts(env, '10.0.0.9')).toThrow(/--limit: environment prod has no host 10.0.0.9; did you mean "10.0.0.1"\?/);
    expect(() => targetHosts(env, 'wrk')).toThrow(UsageError);
    expect(() => targetHosts(env, ',')).toThrow(/name at least one host address or role/);
    const single = envWith(['{ address: 10.0.0.1, roles: [web, app] }']);
    expect(() => targetHosts(single, 'worker')).toThrow(/no host of environment prod has the role worker/);
    try {
      targetHosts(env, 'nope');
    } catch (err) {
      expect((err as UsageError).hint).toBe('hosts: 10.0.0.1 (web, app); 10.0.0.2 (web, app); 10.0.0.3 (worker); 10.0.0.4 (db)');
    }
  });

  it('--parallel: all by default, a whole number otherwise', () => {
    const g = (parallel?: string) => ({ parallel }) as GlobalOptions;
    expect(parallelHosts(g(), 4)).toBe(4);
    expect(parallelHosts(g('2'), 4)).toBe(2);
    expect(() => parallelHosts(g('0'), 4)).toThrow(/--parallel: "0" is not a whole number/);
    expect(() => parallelHosts(g('1.5'), 4)).toThrow(UsageError);
  });
});

describe('the order of a deploy', () => {
  it('one host, or hosts with every role: one batch, each host its own hooks', () => {
    const env = envWith(['{ address: 10.0.0.1 }', '{ address: 10.0.0.2 }'], DATABASE);
    const order = deployOrder(env, env.hosts, false);
    expect(order.phases.map(addresses)).toEqual([['10.0.0.1', '10.0.0.2']]);
    expect(order.primary).toBeNull();
  });

  it('a db host of its own first; the first app host runs the hooks; then rolling batches', () => {
    const env = envWith(FOUR, DATABASE, ['    rolling: { batch: 2 }']);
    const order = deployOrder(env, env.hosts, false);
    expect(order.phases.map(addresses)).toEqual([['10.0.0.4'], ['10.0.0.1', '10.0.0.2'], ['10.0.0.3']]);
    expect(order.primary?.address).toBe('10.0.0.1');
  });

  it('--limit without the first app host: the first one picked is the primary', () => {
    const env = envWith(FOUR, DATABASE);
    const order = deployOrder(env, targetHosts(env, '10.0.0.2,worker'), false);
    expect(order.phases.map(addresses)).toEqual([['10.0.0.2', '10.0.0.3']]);
    expect(order.primary?.address).toBe('10.0.0.2');
  });

  it('no database: no primary, batches of a share', () => {
    const env = envWith(FOUR.slice(0, 3), [], ['    rolling: { batch: "50%" }']);
    const order = deployOrder(env, env.hosts, false);
    expect(order.phases.map(addresses)).toEqual([['10.0.0.1', '10.0.0.2'], ['10.0.0.3']]);
    expect(order.primary).toBeNull();
  });

  it('one migration per deploy, whatever the layout', () => {
    const layouts: [string[], string | null][] = [
      // The db host also runs workers, but another host is first: the hooks run there only.
      [['{ address: 10.0.0.1, roles: [web, app] }', '{ address: 10.0.0.2, roles: [db, worker] }'], '10.0.0.1'],
      // The database on the app's host, workers elsewhere: still one database, one primary.
      [['{ address: 10.0.0.1, roles: [web, app, db] }', '{ address: 10.0.0.2, roles: [worker] }', '{ address: 10.0.0.3, roles: [worker] }'], '10.0.0.1'],
      // Two app hosts, the database on the second: the first app host runs them.
      [['{ address: 10.0.0.1, roles: [web, app] }', '{ address: 10.0.0.2, roles: [web, app, db] }'], '10.0.0.1'],
      // Identical servers, each its own database: each its own migration.
      [['{ address: 10.0.0.1 }', '{ address: 10.0.0.2 }'], null],
    ];
    for (const [hosts, primary] of layouts) {
      const env = envWith(hosts, DATABASE);
      expect(deployOrder(env, env.hosts, false).primary?.address ?? null, hosts.join(' ')).toBe(primary);
    }
    // --limit worker with a shared database: the first worker picked is the primary.
    const env = envWith(FOUR, DATABASE);
    expect(deployOrder(env, targetHosts(env, 'worker'), false).primary?.address).toBe('10.0.0.3');
  });

  it('hosts that only run nginx go last, after the gateways they check through', () => {
    const env = envWith(
      [
        '{ address: 10.0.0.1, roles: [web] }',
        '{ address: 10.0.0.2, roles: [app] }',
        '{ address: 10.0.0.3, roles: [app] }',
        '{ address: 10.0.0.4, roles: [db] }',
      ],
      DATABASE,
      ['    rolling: { batch: 1 }'],
    );
    expect(deployOrder(env, env.hosts, false).phases.map(addresses)).toEqual([['10.0.0.4'], ['10.0.0.2'], ['10.0.0.3'], ['10.0.0.1']]);
  });

  it('a dry run asks every host at once, whatever the batches', () => {
    const env = envWith(FOUR, DATABASE, ['    rolling: { batch: 1 }']);
    expect(deployOrder(env, env.hosts, true).phases.map(addresses)).toEqual([['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4']]);
  });
});

describe('progress of hosts running at once', () => {
  /** A terminal that keeps what is on screen, honouring "cursor up + erase line". */
  function terminal() {
    const screen: string[] = [];
    return {
      stream: {
        isTTY: true,
        write(text: string) {
          for (const line of text.replace(/\x1b\[\d+m/g, '').split(/(?<=\n)/)) {
            if (line.startsWith('\x1b[1A\x1b[2K')) screen[screen.length - 1] = line.slice(8);
            else screen.push(line);
          }
        },
      },
      screen,
    };
  }

  it('a step rewritten in place only while its line is the last one', () => {
    const t = terminal();
    const root = createProgress(t.stream, 'normal');
    const a = root.scope();
    const b = root.scope();
    a.step('a', 'gather facts');
    a.step('a', 'activate'); // a's facts line is last: rewritten
    b.step('b', 'gather facts'); // now b's line is below a's
    a.end(true); // cannot rewrite a's line any more: a line of its own
    b.end(false); // b's own line is no longer last either
    const shown = t.screen.join('').replace(/\d+\.\ds/g, 'T');
    expect(shown).toBe(['✓ a: gather facts T', '… a: activate', '… b: gather facts', '✓ a: activate T', '✗ b: gather facts T', ''].join('\n'));
  });

  it('each scope ends only its own step', () => {
    let text = '';
    const root = createProgress({ write: (t: string) => (text += t) }, 'verbose');
    const a = root.scope();
    const b = root.scope();
    a.step('a', 'one');
    b.step('b', 'two');
    b.end(true);
    a.end(false);
    // Colours on or off (CI turns them on): only the text matters here.
    expect(text.replace(/\x1b\[\d+m/g, '').replace(/\d+\.\ds/g, 'T')).toBe('a: one\nb: two\n✓ b: two T\n✗ a: one T\n');
  });
});

describe('a dry run of several hosts, folded', () => {
  const plan = (files: { path: string; diff: string }[]) =>
    ({
      host: 'x',
      packages: [],
      users: [],
      memberships: [],
      leaves: [],
      dirs: [],
      selfSigned: null,
      certificate: null,
      links: [],
      allLinks: [],
      removes: [],
      enable: [],
      start: [],
      upgrade: null,
      database: null,
      parts: null,
      files: files.map((f) => ({
        action: 'change',
        file: { path: f.path, mode: '0644', owner: 'root', group: 'root', content: '' },
        diff: f.diff,
      })),
      release: null,
      handlers: [],
    }) as unknown as HostRunResult['plan'];
  const result = (host: string, files: { path: string; diff: string }[]): HostRunResult => ({
    host,
    label: `deploy@${host}`,
    plan: plan(files),
    steps: [],
    changes: files.length,
    execs: 1,
    ms: 1,
  });
  const nginx = { path: '/etc/nginx/sites-available/blog.conf', diff: '-    client_max_body_size 10m;\n+    client_max_body_size 20m;\n' };
  const gunicorn = { path: '/etc/blog/gunicorn.conf.py', diff: '-workers = 3\n+workers = 5\n' };

  it('identical plans once, under the hosts they are for; a different one on its own', () => {
    const lines = foldedDeployLines([result('10.0.0.1', [nginx]), result('10.0.0.2', [nginx, gunicorn]), result('10.0.0.3', [nginx])], 'prod', 'normal').join(
      '\n',
    );
    const plain = lines.replace(/\x1b\[\d+m/g, '');
    expect(plain).toContain('2 hosts (deploy@10.0.0.1, deploy@10.0.0.3) (prod): 1 change');
    expect(plain).toContain('deploy@10.0.0.2 (prod): 2 changes');
    expect(plain.match(/client_max_body_size 20m/g)).toHaveLength(2);
    expect(plain.match(/workers = 5/g)).toHaveLength(1);
  });

  it('nothing folded when every plan differs; with -q only the counts are compared', () => {
    const shown = (level: 'normal' | 'quiet') =>
      foldedDeployLines([result('10.0.0.1', [nginx]), result('10.0.0.2', [gunicorn])], 'prod', level).map((l) => l.replace(/\x1b\[\d+m/g, '').split('\n')[0]);
    expect(shown('normal')).toEqual(['deploy@10.0.0.1 (prod): 1 change', 'deploy@10.0.0.2 (prod): 1 change']);
    expect(shown('quiet')).toEqual(['2 hosts (deploy@10.0.0.1, deploy@10.0.0.2) (prod): 1 change']);
  });
});
