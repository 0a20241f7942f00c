/**
 * The one output: each result type as text (default, -q, -v) and as JSON, what goes to stdout
 * and what to stderr, and secrets redacted in both. In process, over captured streams.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { HostRunResult } from '../../src/ui/results.js';
import { createProgress } from '../../src/ui/progress.js';
import { buildProgram } from '../../src/main.js';
import type { DomainCertificate } from '../../src/certs/report.js';
import { UsageError } from '../../src/errors.js';
import { parseFacts } from '../../src/facts/host.js';
import { parseInventory } from '../../src/inventory/load.js';
import { changeCount, planDeploy, sha256 } from '../../src/plan/plan.js';
import { planSteps } from '../../src/plan/steps.js';
import { Secret } from '../../src/secrets/secret.js';
import { buildDesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { createOutput, type Level } from '../../src/ui/output.js';
import type { CommandResult } from '../../src/ui/results.js';
import { redactEnvFileText } from '../../src/views/envfile.js';

const plain = (s: string) => s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');

/** An output over two captured streams (not terminals). */
function capture(o: { level?: Level; json?: boolean; debug?: boolean } = {}) {
  let stdout = '';
  let stderr = '';
  const output = createOutput({ ...o, stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } });
  return {
    output,
    stdout: () => plain(stdout),
    stderr: () => plain(stderr),
  };
}

function printed(r: CommandResult, o: { level?: Level; json?: boolean; debug?: boolean } = {}) {
  const c = capture(o);
  c.output.result(r);
  return { stdout: c.stdout(), stderr: c.stderr() };
}

const releases: CommandResult = {
  kind: 'releases',
  env: 'prod',
  hosts: [
    {
      host: '192.0.2.1',
      releases: [
        {
          id: '20261101T100000Z',
          live: false,
          hasConfig: true,
          manifest: { source_hash: 'a'.repeat(64), created: '2026-11-01T10:00:00.123Z', by: 'ann@laptop' },
        },
        {
          id: '20261102T100000Z',
          live: true,
          hasConfig: true,
          manifest: { source_hash: 'b'.repeat(64), created: '2026-11-02T10:00:00.000Z', by: 'bob@ci', git_commit: '0123456789abcdef' },
        },
        { id: '20261103T100000Z', live: false, hasConfig: false, manifest: null },
      ],
    },
    { host: '192.0.2.2', releases: [] },
  ],
};

const RELEASES_TEXT = [
  '192.0.2.1',
  '  20261101T100000Z  2026-11-01 10:00:00Z  ann@laptop  source aaaaaaaaaa',
  '* 20261102T100000Z  2026-11-02 10:00:00Z  bob@ci  git 0123456789  live',
  '  20261103T100000Z  incomplete (never went live)',
  '192.0.2.2',
  '  no releases yet: run `stack deploy`',
  '',
].join('\n');

describe('releases', () => {
  it('prints each host and its releases on stdout, the same at every text level', () => {
    for (const level of ['normal', 'quiet', 'verbose'] as const) {
      const r = printed(releases, { level });
      expect(r.stdout).toBe(RELEASES_TEXT);
      expect(r.stderr).toBe('');
    }
  });

  it('prints a host as soon as it is known, and each host once', () => {
    const c = capture();
    if (releases.kind !== 'releases') throw new Error('fixture');
    c.output.host({ kind: 'releases', ...releases.hosts[0]! });
    expect(c.stdout()).toBe(RELEASES_TEXT.split('192.0.2.2')[0]);
    c.output.result(releases);
    expect(c.stdout()).toBe(RELEASES_TEXT);
  });

  it('is one JSON document with stable names, and nothing else on stdout', () => {
    const c = capture({ json: true });
    if (releases.kind !== 'releases') throw new Error('fixture');
    c.output.host({ kind: 'releases', ...releases.hosts[0]! });
    c.output.result(releases);
    const doc = JSON.parse(c.stdout());
    expect(doc).toEqual({
      command: 'releases',
      env: 'prod',
      hosts: [
        {
          host: '192.0.2.1',
          releases: [
            {
              id: '20261101T100000Z',
              live: false,
              complete: true,
              rollbackTarget: true,
              created: '2026-11-01T10:00:00.123Z',
              by: 'ann@laptop',
              gitCommit: null,
              sourceHash: 'a'.repeat(64),
              codeFrom: null,
            },
            {
              id: '20261102T100000Z',
              live: true,
              complete: true,
              rollbackTarget: true,
              created: '2026-11-02T10:00:00.000Z',
              by: 'bob@ci',
              gitCommit: '0123456789abcdef',
              sourceHash: 'b'.repeat(64),
              codeFrom: null,
            },
            {
              id: '20261103T100000Z',
              live: false,
              complete: false,
              rollbackTarget: false,
              created: null,
              by: null,
              gitCommit: null,
              sourceHash: null,
              codeFrom: null,
            },
          ],
        },
        { host: '192.0.2.2', releases: [] },
      ],
    });
    expect(c.stderr()).toBe('');
  });
});

const info = {
  subject: 'shop.example.com',
  issuer: 'R11',
  names: ['shop.example.com'],
  notBefore: new Date('2026-10-01T00:00:00Z'),
  notAfter: new Date('2026-12-30T00:00:00Z'),
  serial: '01',
  fingerprint: 'AA:BB',
};
const certificates: DomainCertificate[] = [
  { domain: 'shop.example.com', info, days: 29, status: 'ok', note: '' },
  { domain: 'www.shop.example.com', info: null, days: null, status: 'not served', note: 'nginx presents no certificate on 443 for this name' },
];

describe('certs', () => {
  const result: CommandResult = { kind: 'certs', env: 'prod', ssl: 'letsencrypt', hosts: [{ host: '192.0.2.1', certificates }], exitCode: 1 };

  it('prints a table per host, headed by the host and how its certificates come', () => {
    const { stdout, stderr } = printed(result);
    expect(stdout.split('\n')).toEqual([
      '192.0.2.1 (letsencrypt)',
      'DOMAIN                ISSUER  EXPIRES (UTC)     DAYS LEFT  STATUS',
      'shop.example.com      R11     2026-12-30 00:00  29         ok',
      'www.shop.example.com  -       -                 -          not served: nginx presents no certificate on 443 for this name',
      '',
    ]);
    expect(stderr).toBe('');
    expect(printed(result, { level: 'quiet' }).stdout).toBe(stdout);
  });

  it('says "custom certificate" for ssl: { cert, key }, and why there is nothing with ssl: none', () => {
    expect(printed({ ...result, ssl: 'custom' }).stdout).toMatch(/^192\.0\.2\.1 \(custom certificate\)\n/);
    expect(printed({ kind: 'certs', env: 'prod', ssl: 'none', hosts: [] }).stdout).toBe(
      'prod has ssl: none, so there are no certificates; set ssl: letsencrypt, self-signed or { cert, key }\n',
    );
  });

  it('in JSON: each certificate with ISO dates, and ok false when any is not ok', () => {
    const doc = JSON.parse(printed(result, { json: true }).stdout);
    expect(doc).toMatchObject({ command: 'certs', env: 'prod', ssl: 'letsencrypt', ok: false });
    expect(doc.hosts[0].certificates).toEqual([
      {
        domain: 'shop.example.com',
        status: 'ok',
        note: null,
        daysLeft: 29,
        issuer: 'R11',
        subject: 'shop.example.com',
        names: ['shop.example.com'],
        notBefore: '2026-10-01T00:00:00.000Z',
        notAfter: '2026-12-30T00:00:00.000Z',
        fingerprint: 'AA:BB',
      },
      {
        domain: 'www.shop.example.com',
        status: 'not served',
        note: 'nginx presents no certificate on 443 for this name',
        daysLeft: null,
        issuer: null,
        subject: null,
        names: [],
        notBefore: null,
        notAfter: null,
        fingerprint: null,
      },
    ]);
    expect(JSON.parse(printed({ kind: 'certs', env: 'prod', ssl: 'none', hosts: [] }, { json: true }).stdout)).toEqual({
      command: 'certs',
      env: 'prod',
      ssl: 'none',
      ok: true,
      hosts: [],
    });
  });
});

describe('lock and audit', () => {
  const holder = { token: 'tok-123', who: 'alice@laptop', client: 'laptop', pid: 4242, since: '2026-11-30T10:00:00Z', command: 'deploy prod' };
  const lock: CommandResult = {
    kind: 'lock',
    action: 'status',
    env: 'prod',
    hosts: [
      { host: '192.0.2.1', locked: true, holder, stepRunning: false, stale: 'that process no longer runs' },
      { host: '192.0.2.2', locked: true, holder, stepRunning: true, stale: null },
      { host: '192.0.2.3', locked: false, holder: null, stepRunning: false, stale: null },
    ],
  };

  it('lock status: who holds it, and whether it is stale or working', () => {
    expect(printed(lock).stdout.split('\n')).toEqual([
      '192.0.2.1: locked by alice@laptop (deploy prod, pid 4242 on laptop, since 2026-11-30T10:00:00Z) (stale: that process no longer runs; the next deploy clears it)',
      '192.0.2.2: locked by alice@laptop (deploy prod, pid 4242 on laptop, since 2026-11-30T10:00:00Z) (one of its steps is running on the server right now)',
      '192.0.2.3: not locked',
      '',
    ]);
    expect(printed({ ...lock, action: 'release' }).stdout).toMatch(/^192\.0\.2\.1: released the lock held by alice@laptop \(deploy prod/);
  });

  it('lock status in JSON: the holder without the token that releases the lock', () => {
    const r = printed(lock, { json: true });
    const doc = JSON.parse(r.stdout);
    expect(doc.command).toBe('lock status');
    expect(doc.hosts[0]).toEqual({
      host: '192.0.2.1',
      locked: true,
      holder: { who: 'alice@laptop', client: 'laptop', pid: 4242, since: '2026-11-30T10:00:00Z', command: 'deploy prod' },
      stepRunning: false,
      stale: 'that process no longer runs',
    });
    expect(doc.hosts[2]).toEqual({ host: '192.0.2.3', locked: false, holder: null, stepRunning: false, stale: null });
    expect(r.stdout).not.toContain('tok-123');
  });

  const audit: CommandResult = {
    kind: 'audit',
    env: 'prod',
    hosts: [
      {
        host: '192.0.2.1',
        entries: [
          { time: '2026-11-30T10:00:00Z', who: 'alice@laptop', command: 'deploy prod', release: '20261130T100000Z', result: 'ok', step: '' },
          { time: '2026-11-30T11:00:00Z', who: 'bob@ci', command: 'deploy prod', release: null, result: 'failed', step: 'health check' },
          { raw: 'edited by hand' },
        ],
      },
      { host: '192.0.2.2', entries: [] },
    ],
  };

  it('audit: one line per entry, a line that is not one as it is', () => {
    expect(printed(audit).stdout.split('\n')).toEqual([
      '192.0.2.1',
      '  2026-11-30T10:00:00Z  alice@laptop  deploy prod  release 20261130T100000Z  ok',
      '  2026-11-30T11:00:00Z  bob@ci  deploy prod  failed: health check',
      '  edited by hand',
      '192.0.2.2',
      '  nothing recorded yet',
      '',
    ]);
  });

  it('audit in JSON: empty fields are null', () => {
    const doc = JSON.parse(printed(audit, { json: true }).stdout);
    expect(doc).toEqual({
      command: 'audit',
      env: 'prod',
      hosts: [
        {
          host: '192.0.2.1',
          entries: [
            { time: '2026-11-30T10:00:00Z', who: 'alice@laptop', command: 'deploy prod', release: '20261130T100000Z', result: 'ok', step: null },
            { time: '2026-11-30T11:00:00Z', who: 'bob@ci', command: 'deploy prod', release: null, result: 'failed', step: 'health check' },
            { raw: 'edited by hand' },
          ],
        },
        { host: '192.0.2.2', entries: [] },
      ],
    });
  });
});

describe('deploy --dry-run', () => {
  const SECRET = 'sk-live-never-printed-0123';
  const OLD_SECRET = 'sk-old-never-printed-4567';

  /**
   * The plan of a first deploy on a server that has an old env file (old secret value in it),
   * read and redacted the way runHost reads it, or none; and a lock held by someone else.
   */
  async function dryRun(oldEnvFile = true): Promise<{ result: CommandResult; host: HostRunResult }> {
    const env = parseInventory(
      stringify({
        app: { name: 'blog', wsgi: 'blog.wsgi:application', secrets: ['SECRET_KEY'] },
        environments: { prod: { domains: ['blog.example.com'], hosts: [{ address: '192.0.2.1' }] } },
      }),
      'inventory.yml',
    ).environments.prod!;
    const desired = await buildDesiredState(env, env.hosts[0]!, {
      engine: new TemplateEngine('/nonexistent', '/'),
      facts: { nginxVersion: [1, 22, 1] },
      secrets: new Map([['SECRET_KEY', new Secret('SECRET_KEY', SECRET)]]),
    });
    const envFile = desired.layout.env_file;
    const remote = `STACK_APP="blog"\nSECRET_KEY="${OLD_SECRET}"\n`;
    const facts = parseFacts(
      oldEnvFile ? [`file\t${envFile}\t${sha256(remote)}\t600\troot\troot`, `content\t${envFile}\t${Buffer.from(remote).toString('base64')}`].join('\n') : '',
      (path, content) => (path === envFile ? redactEnvFileText(content, env.app.secrets) : content),
    );
    const plan = planDeploy({
      desired,
      facts,
      code: {
        id: '20261201T000000Z',
        sourceHash: 'c'.repeat(64),
        requirements: 'requirements.txt',
        venv: { digest: 'd'.repeat(64), index: 'app.index_url', followsCode: false },
        fileList: ['app.py'],
      },
    });
    const steps = planSteps(plan, { uploads: true, provisions: true, checksHealth: true });
    const host: HostRunResult = {
      host: '192.0.2.1',
      label: 'deploy@192.0.2.1',
      plan,
      steps,
      changes: changeCount(plan),
      execs: 1,
      ms: 800,
      lockHolder: { token: 'tok', who: 'alice@laptop', client: 'laptop', pid: 7, since: '2026-11-30T10:00:00Z', command: 'deploy prod' },
    };
    return { result: { kind: 'deploy', mode: 'deploy', dryRun: true, env: 'prod', ms: 1234, hosts: [host], exitCode: 3 }, host };
  }

  it('text: the plan with its diffs and steps on stderr, then the summary; nothing on stdout', async () => {
    const { result, host } = await dryRun();
    const r = printed(result);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`deploy@192.0.2.1 (prod): ${host.changes} changes`);
    expect(r.stderr).toContain('  install packages: ');
    expect(r.stderr).toMatch(/^ {2}new file \/etc\/nginx\/sites-available\/blog\.conf/m);
    expect(r.stderr).toMatch(/^ {2}changed \/etc\/blog\/env/m);
    expect(r.stderr).toMatch(/^\+STACK_ENV="prod"$/m);
    expect(r.stderr).toContain('  steps: provision, upload and build release 20261201T000000Z, activate (4 SSH round trips with the facts)');
    // Where the index comes from, never its URL.
    expect(r.stderr).toContain(
      '    virtualenv: built (Python is not installed on the server yet), then pip install -r requirements.txt from the index in app.index_url',
    );
    expect(r.stderr).toContain('note: alice@laptop (deploy prod, pid 7 on laptop, since 2026-11-30T10:00:00Z) holds the deploy lock right now');
    expect(r.stderr.trimEnd().split('\n').at(-1)).toBe(`dry run: would change ${host.changes} things on 1 host in 1.2s (192.0.2.1: ${host.changes} changes)`);
  });

  it('-q: each host as its count of changes, the lock note and the summary, without diffs', async () => {
    const { result, host } = await dryRun();
    const r = printed(result, { level: 'quiet' });
    expect(r.stderr.split('\n')).toEqual([
      `deploy@192.0.2.1 (prod): ${host.changes} changes`,
      'note: alice@laptop (deploy prod, pid 7 on laptop, since 2026-11-30T10:00:00Z) holds the deploy lock right now',
      `dry run: would change ${host.changes} things on 1 host in 1.2s (192.0.2.1: ${host.changes} changes)`,
      '',
    ]);
  });

  it('-v (and --debug): each host with its round trips and time', async () => {
    const { result, host } = await dryRun();
    const summary = `(192.0.2.1: ${host.changes} changes, 1 ssh round trips in 0.8s)`;
    expect(printed(result, { level: 'verbose' }).stderr.trimEnd().endsWith(summary)).toBe(true);
    expect(printed(result, { debug: true }).stderr.trimEnd().endsWith(summary)).toBe(true);
    expect(printed(result).stderr).not.toContain('round trips in');
  });

  it('JSON: per host the changes with their diffs, steps, round trips and the lock holder', async () => {
    const { result, host } = await dryRun();
    const r = printed(result, { json: true });
    expect(r.stderr).toBe('');
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ command: 'deploy', env: 'prod', dryRun: true, changes: host.changes, ms: 1234 });
    const h = doc.hosts[0];
    expect(Object.keys(h)).toEqual([
      'host',
      'changes',
      'packages',
      'users',
      'groups',
      'dirs',
      'files',
      'links',
      'removes',
      'certificate',
      'selfSigned',
      'upgrade',
      'enable',
      'start',
      'handlers',
      'steps',
      'roundTrips',
      'lock',
      'release',
    ]);
    expect(h.packages).toContain('nginx');
    expect(h.users).toContainEqual({ name: 'blog', home: '/srv/blog' });
    expect(h.steps).toEqual([
      { kind: 'provision', description: 'provision' },
      { kind: 'upload', description: 'upload and build release 20261201T000000Z' },
      { kind: 'activate', description: 'activate' },
    ]);
    expect(h.roundTrips).toBe(4);
    expect(h.lock).toEqual({ who: 'alice@laptop', client: 'laptop', pid: 7, since: '2026-11-30T10:00:00Z', command: 'deploy prod' });
    expect(h.release).toEqual({
      id: '20261201T000000Z',
      sourceHash: 'c'.repeat(64),
      requirements: 'requirements.txt',
      virtualenv: { reused: false, key: null, index: 'app.index_url' },
      codeFrom: null,
      shipped: null,
    });
    const site = h.files.find((f: { path: string }) => f.path === '/etc/nginx/sites-available/blog.conf');
    expect(site).toMatchObject({ action: 'create', mode: '0644', owner: 'root', group: 'root', attributesBefore: null, secret: false, secretOnly: false });
    expect(site.diff).toMatch(/^--- \/dev\/null\n\+\+\+ \/etc\/nginx\/sites-available\/blog\.conf\n@@ -0,0 \+1,\d+ @@\n/);
    expect(site.diff).toContain('+    server_name blog.example.com;');
  });

  it('never shows a secret value, old or new, in the text or the JSON of a plan with the env file', async () => {
    const { result } = await dryRun();
    const envChange = (doc: { hosts: { files: { path: string; diff: string }[] }[] }) => doc.hosts[0]!.files.find((f) => f.path === '/etc/blog/env')!;
    for (const o of [{}, { level: 'quiet' as const }, { level: 'verbose' as const }, { json: true }]) {
      const r = printed(result, o);
      expect(r.stdout + r.stderr).not.toContain(SECRET);
      expect(r.stdout + r.stderr).not.toContain(OLD_SECRET);
    }
    // The JSON diff is the text's: the value of SECRET_KEY shows as the marker on both sides.
    const diff = envChange(JSON.parse(printed(result, { json: true }).stdout)).diff;
    expect(diff).toContain('\n SECRET_KEY="[REDACTED]"\n');
    expect(printed(result).stderr).toContain(diff.split('\n').find((l) => l.startsWith('+STACK_ENV'))!);

    // A new env file: its whole content is the diff, with the marker for the value.
    const created = (await dryRun(false)).result;
    const json = printed(created, { json: true }).stdout;
    expect(json).not.toContain(SECRET);
    expect(envChange(JSON.parse(json))).toMatchObject({ action: 'create', mode: '0600' });
    expect(envChange(JSON.parse(json)).diff).toContain('\n+SECRET_KEY="[REDACTED]"\n');
    expect(printed(created).stderr).toContain('\n+SECRET_KEY="[REDACTED]"\n');
  });

  it('redacts known secret values that reach it some other way, in text and in JSON', async () => {
    const { result, host } = await dryRun();
    const leaked = host.plan.files.find((c) => c.file.path === '/etc/blog/env')!;
    leaked.diff = `${leaked.diff}+LEAK="${SECRET}"\n`;
    for (const o of [{}, { json: true }]) {
      const c = capture(o);
      c.output.addSecrets([new Secret('SECRET_KEY', SECRET)]);
      c.output.result(result);
      expect(c.stdout() + c.stderr()).not.toContain(SECRET);
      // In JSON the quotes around it are escaped.
      expect(c.stdout() + c.stderr()).toContain(o.json ? '+LEAK=\\"[REDACTED]\\"' : '+LEAK="[REDACTED]"');
    }
  });

  it('a deploy that ran: only its summary by default, the steps of each host with -v', async () => {
    const { host } = await dryRun();
    const ran: CommandResult = {
      kind: 'deploy',
      mode: 'deploy',
      dryRun: false,
      env: 'prod',
      ms: 5000,
      hosts: [{ ...host, lockHolder: undefined, execs: 4, ms: 4200, health: '200', release: '20261201T000000Z' }],
    };
    const done = `done: changed ${host.changes} things on 1 host in 5.0s (192.0.2.1: ${host.changes} changes, release 20261201T000000Z, health 200`;
    const normal = capture();
    normal.output.host({ kind: 'deploy', env: 'prod', dryRun: false, result: ran.hosts[0]! });
    normal.output.result(ran);
    expect(normal.stderr()).toBe(`${done})\n`);
    expect(printed(ran, { level: 'quiet' }).stderr).toBe(`${done})\n`);
    expect(printed(ran, { level: 'verbose' }).stderr).toBe(
      `192.0.2.1: provision, upload and build release 20261201T000000Z, activate (4 SSH round trips in 4.2s)\n${done}, 4 ssh round trips in 4.2s)\n`,
    );
  });
});

describe('levels for everything else', () => {
  it('warnings always, notes unless -q, details only with -v; all on stderr', () => {
    const seen = (level: Level, json = false) => {
      const c = capture({ level, json });
      c.output.warn('disk almost full');
      c.output.note('override: using a template');
      c.output.detail('took 3 round trips');
      return { stdout: c.stdout(), stderr: c.stderr() };
    };
    expect(seen('quiet')).toEqual({ stdout: '', stderr: 'warning: disk almost full\n' });
    expect(seen('normal')).toEqual({ stdout: '', stderr: 'warning: disk almost full\noverride: using a template\n' });
    expect(seen('verbose').stderr).toBe('warning: disk almost full\noverride: using a template\ntook 3 round trips\n');
    expect(seen('normal', true).stdout).toBe('');
  });

  it('progress: -q shows only a step that failed; -v the time of every step, on a pipe too', () => {
    const run = (level: Level) => {
      let text = '';
      const p = createProgress({ write: (t: string) => (text += t) }, level);
      p.step('192.0.2.1', 'gather facts');
      p.step('192.0.2.1', 'activate');
      p.end(false);
      p.line('192.0.2.1: warning: low disk');
      return plain(text).replace(/\d+\.\ds/g, 'T');
    };
    expect(run('normal')).toBe('192.0.2.1: gather facts\n192.0.2.1: activate\n✗ 192.0.2.1: activate T\n192.0.2.1: warning: low disk\n');
    expect(run('quiet')).toBe('✗ 192.0.2.1: activate T\n192.0.2.1: warning: low disk\n');
    expect(run('verbose')).toBe(
      '192.0.2.1: gather facts\n✓ 192.0.2.1: gather facts T\n192.0.2.1: activate\n✗ 192.0.2.1: activate T\n192.0.2.1: warning: low disk\n',
    );
  });

  it('render prints through the output: under --json it would not reach stdout', () => {
    const c = capture({ json: true });
    c.output.print('==> file\n');
    expect(c.stdout()).toBe('');
    expect(c.stderr()).toBe('==> file\n');
  });
});

describe('the flags', () => {
  /** Runs the real program in process up to the point where a command would start. */
  async function parse(args: string[]): Promise<unknown> {
    const program = buildProgram();
    for (const c of [program, ...program.commands]) c.configureOutput({ writeErr: () => {}, writeOut: () => {} });
    try {
      await program.parseAsync(args, { from: 'user' });
      return null;
    } catch (err) {
      return err;
    }
  }

  it('--json with a command that has no JSON form is a usage error naming those that do', async () => {
    for (const args of [
      ['render', '--json'],
      ['deploy', '--json'],
      ['lock', 'release', '--json'],
      ['--json', 'rollback'],
    ]) {
      const err = await parse(args);
      expect(err, args.join(' ')).toBeInstanceOf(UsageError);
      expect((err as UsageError).message).toMatch(/^--json is not available for `(render|deploy|lock release|rollback)`$/);
      expect((err as UsageError).hint).toBe('--json works with: deploy --dry-run, setup --dry-run, status, releases, certs, lock status, audit, db backups');
    }
  });

  it('-q and -v together are a usage error', async () => {
    const err = await parse(['-q', '-v', 'releases']);
    expect((err as { code?: string }).code).toBe('commander.conflictingOption');
  });

  it('--help says what -q hides and what -v adds', () => {
    const help = buildProgram().helpInformation();
    expect(help).toMatch(/-q, --quiet\s+only results, warnings and errors/);
    expect(help).toMatch(/-v, --verbose\s+more detail/);
    expect(help).toMatch(/--json\s+print the result as one JSON document/);
  });
});
