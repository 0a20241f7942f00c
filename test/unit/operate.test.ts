/**
 * The pure parts of the commands that operate a live app: picking the host, the ssh arguments,
 * the command line of `stack run`, and reading, merging and filtering `stack logs` output.
 * The commands themselves run against sandboxes in test/e2e/operate.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandIndex, expandAlias, inventoryArgument, splitWords } from '../../src/commands/aliases.js';
import { type InventoryError, UsageError } from '../../src/errors.js';
import { BUILTIN_COMMANDS } from '../../src/inventory/schema.js';
import { parseInventory } from '../../src/inventory/load.js';
import { logsScript, mergeLogs, parseLogLine, parseSince, selectSources } from '../../src/commands/logs.js';
import { runCommandLine } from '../../src/commands/run.js';
import { statusOf } from '../../src/commands/status.js';
import { type StatusFacts, statusFact } from '../../src/facts/status.js';
import type { HostRunResult } from '../../src/ui/results.js';
import { pickHost, pinnedKnownHostsLine, sshArguments } from '../../src/commands/ssh.js';
import { layoutFor } from '../../src/views/layout.js';

const inventory = parseInventory(
  `app:
  name: blog
  wsgi: blog.wsgi:application
  media: { url: /media/, path: /srv/blog/media }
environments:
  prod:
    domains: [blog.example.com]
    hosts:
      - address: 203.0.113.10
        user: deploy
        port: 2222
        identity_file: keys/deploy
        host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3NrsUKPeJAezPUNVc+qDB+rkFZJHIBCs5UZZ1sUBXT
      - address: 203.0.113.11
`,
  'inventory.yml',
);
const prod = inventory.environments.prod!;

describe('the host a one-host command acts on', () => {
  it('needs --host when there are several, and names them', () => {
    expect(() => pickHost(prod, undefined)).toThrow(UsageError);
    expect(() => pickHost(prod, undefined)).toThrow(/has 2 hosts; say which one with --host/);
    expect(pickHost(prod, '203.0.113.11').address).toBe('203.0.113.11');
    expect(() => pickHost(prod, '192.0.2.1')).toThrow(/has no host 192.0.2.1/);
  });
});

describe('stack ssh', () => {
  it('connects as stack does, accepting only the pinned key', () => {
    const host = prod.hosts[0]!;
    expect(sshArguments(host, '/project', '/tmp/x/known_hosts')).toEqual([
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'UserKnownHostsFile=/tmp/x/known_hosts',
      '-o',
      'HostKeyAlias=203.0.113.10',
      '-p',
      '2222',
      '-i',
      '/project/keys/deploy',
      '-o',
      'IdentitiesOnly=yes',
      '-l',
      'deploy',
    ]);
    expect(pinnedKnownHostsLine(host)).toBe(`203.0.113.10 ${host.host_key}\n`);
  });

  it("leaves what the inventory does not say to ssh and the user's known_hosts", () => {
    expect(sshArguments(prod.hosts[1]!, '/project', null)).toEqual(['-o', 'StrictHostKeyChecking=yes']);
  });
});

describe('stack run', () => {
  const layout = layoutFor(prod.app, prod.gateway);

  it('puts the command last, as arguments, after the library function that runs it', () => {
    const line = runCommandLine(layout, ['python', 'manage.py', 'shell', '-c', "print('$HOME')"], { pty: false, unit: 'blog-run-1' });
    // Parsed by a real shell: the arguments arrive exactly as given.
    const argv = spawnSync('sh', ['-c', `set -- ${line.replace(/^sh -c /, '')}; shift 2; printf '%s\\n' "$@"`], { encoding: 'utf8' }).stdout.split('\n');
    expect(argv.slice(0, 12)).toEqual([
      'blog-run-1',
      '--pipe',
      '/srv/blog/current',
      'blog',
      '/etc/blog/env',
      '/srv/blog/shared',
      '/srv/blog/media',
      'python',
      'manage.py',
      'shell',
      '-c',
      "print('$HOME')",
    ]);
    expect(line).toContain('run_in_release "$@"');
    expect(runCommandLine(layout, ['true'], { pty: true, unit: 'u' })).toMatch(/ stack-run u --pty /);
  });
});

describe('stack logs', () => {
  it('knows the app and nginx, and refuses other names', () => {
    expect(selectSources(prod, []).map((s) => s.name)).toEqual(['blog.service', 'blog.socket', 'nginx access', 'nginx error']);
    expect(selectSources(prod, ['nginx']).map((s) => s.name)).toEqual(['nginx access', 'nginx error']);
    expect(() => selectSources(prod, ['worker'])).toThrow(/no process "worker".*/);
  });

  it('reads --since as a time ago or a UTC date', () => {
    const now = new Date('2026-12-01T12:00:00Z');
    expect(parseSince('15m', now).toISOString()).toBe('2026-12-01T11:45:00.000Z');
    expect(parseSince('2h', now).toISOString()).toBe('2026-12-01T10:00:00.000Z');
    expect(parseSince('2026-11-30 08:30', now).toISOString()).toBe('2026-11-30T08:30:00.000Z');
    expect(parseSince('2026-11-30T08:30:15+01:00', now).toISOString()).toBe('2026-11-30T07:30:15.000Z');
    expect(() => parseSince('yesterday', now)).toThrow(/--since: "yesterday" is not a time/);
  });

  it('finds the time of journal, access log and error log lines', () => {
    expect(parseLogLine('blog.service', '2026-12-01T05:25:33.123456+00:00 srv python[7]: booted', '+0000')).toEqual({
      time: Date.parse('2026-12-01T05:25:33.123Z'),
      source: 'blog.service',
      text: 'python[7]: booted',
    });
    const access = parseLogLine('nginx access', '10.0.0.1 - - [01/Dec/2026:06:25:33 +0100] "GET / HTTP/1.1" 200 5', '+0000');
    expect(new Date(access.time).toISOString()).toBe('2026-12-01T05:25:33.000Z');
    const error = parseLogLine('nginx error', '2026/12/01 07:25:33 [error] 12#12: *1 connect() failed', '+0200');
    expect(new Date(error.time).toISOString()).toBe('2026-12-01T05:25:33.000Z');
    expect(error.text).toBe('[error] 12#12: *1 connect() failed');
    expect(parseLogLine('x', 'no time here', '+0000').time).toBeNaN();
  });

  it('merges the sources by time, keeps a line without one after the one before it, and cuts at N and --since', () => {
    const output = [
      'tz\t+0000',
      'log\tblog.service\t2026-12-01T05:00:03+00:00 srv python[7]: third',
      'log\tblog.service\t2026-12-01T05:00:01+00:00 srv python[7]: first',
      'log\tnginx access\t10.0.0.1 - - [01/Dec/2026:05:00:02 +0000] "GET / HTTP/1.1" 200 5',
      'log\tnginx error\tcontinued line without a time',
      'log\tnginx error\t2026/12/01 05:00:04 [error] fourth',
      '',
    ].join('\n');
    const all = mergeLogs(output, null, 100).map((l) => l.text.split(' ').pop());
    expect(all).toEqual(['first', '5', 'time', 'third', 'fourth']);
    expect(mergeLogs(output, null, 2).map((l) => l.text)).toEqual(['python[7]: third', '[error] fourth']);
    expect(mergeLogs(output, new Date('2026-12-01T05:00:02.500Z'), 100).map((l) => l.text.split(' ').pop())).toEqual(['time', 'third', 'fourth']);
  });

  it('sends the values as arguments of the library functions, and follows in the background', () => {
    const sources = selectSources(prod, []);
    const script = logsScript(sources, { lines: 20, since: new Date('2026-12-01T00:00:00Z'), grep: 'GET /x', follow: false });
    expect(script).toContain("logs_journal blog.service 20 @1796083200 'GET /x'\n");
    expect(script).toContain("logs_file 'nginx access' /var/log/nginx/blog.access.log 20 'GET /x'\n");
    const follow = logsScript(sources, { lines: 5, since: null, grep: '', follow: true });
    expect(follow).toContain("logs_journal blog.socket 5 '' '' -f &\n");
    expect(follow).toMatch(/logs_follow_until_eof\nexit 0\n$/);
    expect(spawnSync('dash', ['-n', '-c', follow]).status).toBe(0);
  });
});

describe('aliases', () => {
  it('lists exactly the commands stack defines, so no alias can shadow one', async () => {
    const { buildProgram } = await import('../../src/main.js');
    const names = buildProgram().commands.map((c) => c.name());
    expect([...BUILTIN_COMMANDS].filter((c) => c !== 'help').sort()).toEqual([...names].sort());
  });

  it('finds the command word after global options', () => {
    expect(commandIndex(['-i', 'inv.yml', '--debug', 'console', 'prod'])).toBe(3);
    expect(commandIndex(['--connect-timeout', '5', 'deploy'])).toBe(2);
    expect(commandIndex(['--version'])).toBe(-1);
    expect(inventoryArgument(['--inventory=x.yml', 'console'])).toBe('x.yml');
    expect(inventoryArgument(['console', '-i', 'y.yml'])).toBe('y.yml');
    expect(inventoryArgument(['console'])).toBe('inventory.yml');
  });

  it('splits an alias into words as a shell would, quotes included', () => {
    expect(splitWords(`run -t -- python -c "print('a b')" 'x  y' ""`)).toEqual(['run', '-t', '--', 'python', '-c', "print('a b')", 'x  y', '']);
    expect(() => splitWords('run -- echo "open')).toThrow(/quote is not closed/);
  });

  it('expands an alias of the inventory, with what was typed after it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-alias-'));
    try {
      const file = path.join(dir, 'inventory.yml');
      writeFileSync(
        file,
        `app: { name: blog, wsgi: blog.wsgi:application }
aliases:
  console: "run -t -- python manage.py shell"
  manage: "run -- python manage.py"
environments:
  prod: { domains: [blog.example.com], hosts: [{ address: 203.0.113.10 }] }
`,
      );
      expect(await expandAlias(['-i', file, 'console', 'prod'])).toEqual(['-i', file, 'run', 'prod', '-t', '--', 'python', 'manage.py', 'shell']);
      expect(await expandAlias(['-i', file, 'manage', 'prod', '--host', 'h', '--', 'migrate', '--plan'])).toEqual([
        '-i',
        file,
        'run',
        'prod',
        '--host',
        'h',
        '--',
        'python',
        'manage.py',
        'migrate',
        '--plan',
      ]);
      expect(await expandAlias(['-i', file, 'deploy', 'prod'])).toEqual(['-i', file, 'deploy', 'prod']);
      await expect(expandAlias(['-i', file, 'consol', 'prod'])).rejects.toThrow(/unknown command 'consol' \(did you mean console\?\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses an alias named like a command, or not starting with one, at its line', () => {
    const doc = (aliases: string) => `app: { name: blog, wsgi: blog.wsgi:application }
aliases:
${aliases}
environments:
  prod: { domains: [blog.example.com], hosts: [{ address: 203.0.113.10 }] }
`;
    const problem = (aliases: string) => {
      try {
        parseInventory(doc(aliases), 'inventory.yml');
      } catch (err) {
        return (err as InventoryError).problems[0];
      }
      return expect.fail('accepted');
    };
    expect(problem('  deploy: "run -- true"')).toMatchObject({
      line: 3,
      field: 'aliases.deploy',
      message: expect.stringContaining('is a command of stack itself'),
    });
    expect(problem('  shell: "python manage.py shell"')).toMatchObject({
      line: 3,
      message: expect.stringContaining("must start with one of stack's commands"),
    });
  });
});

describe('stack status', () => {
  const facts = (over: Partial<StatusFacts> = {}): StatusFacts => ({
    units: [
      { name: 'blog.socket', active: 'active', sub: 'listening', seconds: 100 },
      { name: 'blog.service', active: 'active', sub: 'running', seconds: 50 },
    ],
    probe: { code: '200', seconds: 0.0123 },
    disk: [{ dir: '/srv/blog', freeKiB: 2048 * 1024, totalKiB: 4096 * 1024 }],
    maintenance: false,
    releases: [
      { id: '20261130T100000.000Z', manifest: null, hasConfig: true, live: false },
      {
        id: '20261201T100000.000Z',
        manifest: { source_hash: 'abc', created: '2026-12-01T10:00:00.000Z', by: 'me@here', git_commit: '0123456789abcdef' },
        hasConfig: true,
        live: true,
      },
    ],
    lastAudit: { time: '2026-12-01T10:00:05Z', who: 'me@here', command: 'deploy prod', release: '20261201T100000.000Z', result: 'ok', step: '' },
    certs: null,
    ...over,
  });
  const run = (status: StatusFacts, changes = 0) =>
    ({ host: '203.0.113.10', changes, execs: 1, ms: 321, lockHolder: null, status }) as unknown as HostRunResult;
  const now = new Date('2026-12-01T12:00:00Z');

  it('says ok when the release is live, every unit active and the health answer right', () => {
    const s = statusOf(prod, run(facts()), now);
    expect(s).toMatchObject({
      ok: true,
      release: { id: '20261201T100000.000Z', ageSeconds: 7200, commit: '0123456789abcdef' },
      health: { code: '200', ms: 12, ok: true },
      disk: [{ dir: '/srv/blog', freeMiB: 2048, usedPercent: 50 }],
      drift: 0,
      roundTrips: 1,
    });
  });

  it('is not ok with a unit down, a wrong health answer or nothing live; drift alone is not unhealthy', () => {
    const down = facts({ units: [{ name: 'blog.service', active: 'failed', sub: 'failed', seconds: 3 }] });
    expect(statusOf(prod, run(down), now).ok).toBe(false);
    expect(statusOf(prod, run(facts({ probe: { code: '502', seconds: 0.01 } })), now).health.ok).toBe(false);
    expect(statusOf(prod, run(facts({ releases: [] })), now)).toMatchObject({ ok: false, release: null });
    expect(statusOf(prod, run(facts(), 3), now)).toMatchObject({ ok: true, drift: 3 });
  });
});

describe('the status fact', () => {
  it('keeps its records apart from the certificate fact asked in the same round trip', () => {
    const layout = layoutFor(prod.app, prod.gateway);
    const fact = statusFact({
      layout,
      units: ['blog.service'],
      probe: { url: 'https://blog.example.com/health', resolve: 'blog.example.com:443:127.0.0.1', timeout: 3 },
      disks: ['/srv/blog'],
      auditFile: '/var/log/stack/blog.log',
      certs: { file: '/etc/ssl/x.pem', domains: ['blog.example.com'] },
    });
    const output = [
      'unit\tblog.service\tactive\trunning\t12',
      'probe\t200\t0.004',
      'space\t/srv/blog\t100\t400',
      'disk\tLS0tLQ==',
      `present\t${layout.maintenance_page}`,
      '',
    ].join('\n');
    const s = fact.parse(output);
    expect(s.disk).toEqual([{ dir: '/srv/blog', freeKiB: 100, totalKiB: 400 }]);
    expect(s.maintenance).toBe(true);
    expect(s.probe).toEqual({ code: '200', seconds: 0.004 });
    expect(s.units).toEqual([{ name: 'blog.service', active: 'active', sub: 'running', seconds: 12 }]);
  });
});
