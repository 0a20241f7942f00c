/**
 * The order of a host's server steps, decided by the plan and carried out by the one executor,
 * tested without a server: `planSteps` on fixture plans, and `runHost` over a recording shell
 * that answers the facts script like a server would and records every round trip.
 */
import type { Readable } from 'node:stream';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runHost } from '../../src/apply/deploy-host.js';
import { RemoteCommandError } from '../../src/errors.js';
import { parseFacts } from '../../src/facts/host.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Environment } from '../../src/inventory/resolve.js';
import { planDeploy } from '../../src/plan/plan.js';
import { migratedSince, planRollback } from '../../src/plan/rollback.js';
import { provisions } from '../../src/plan/host.js';
import { provisionLines } from '../../src/apply/scripts.js';
import { planSteps, type Step } from '../../src/plan/steps.js';
import { applySteps, type StepScripts } from '../../src/apply/apply.js';
import { parseReleases } from '../../src/facts/releases.js';
import { UsageError } from '../../src/errors.js';
import { readSource } from '../../src/release/source.js';
import { Secret } from '../../src/secrets/secret.js';
import type { ExecResult, RemoteShell } from '../../src/ssh/connect.js';
import { buildDesiredState, type DesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { ROOT } from '../helpers/cli.js';
import { convergedFacts, SYSTEM_VENV } from '../helpers/plans.js';

function environment(ssl: 'none' | 'letsencrypt' = 'none'): Environment {
  return parseInventory(
    stringify({
      app: { name: 'blog', wsgi: 'hello.wsgi:application', secrets: ['SECRET_KEY'], static: { url: '/static/', path: 'static' } },
      environments: {
        prod: {
          domains: ['blog.example.com'],
          ssl,
          ...(ssl === 'letsencrypt' ? { email: 'ops@example.com' } : {}),
          hosts: [{ address: '192.0.2.1' }],
        },
      },
    }),
    'inventory.yml',
  ).environments.prod!;
}
const engine = new TemplateEngine('/nonexistent', '/');
const secrets = new Map([['SECRET_KEY', new Secret('SECRET_KEY', 'sk-test')]]);

async function desiredOf(env: Environment): Promise<DesiredState> {
  return buildDesiredState(env, env.hosts[0]!, { engine, facts: { nginxVersion: [1, 22, 1], cpus: 2 }, secrets });
}

const converged = convergedFacts;

/** A server as a list of answers: the facts script gets `facts`, every other round trip `answer`. */
class RecordingShell implements RemoteShell {
  readonly label = 'deploy@192.0.2.1';
  execCount = 0;
  readonly trips: { kind: string; text: string }[] = [];
  constructor(
    private readonly facts: string,
    private readonly answer: (kind: string) => ExecResult = () => ({ code: 0, stdout: '@@health 200\n', stderr: '' }),
  ) {}
  async exec(): Promise<ExecResult> {
    throw new Error('not used');
  }
  async sudoScript(script: string, options: { onStdout?: (chunk: string) => void } = {}): Promise<ExecResult> {
    this.execCount++;
    if (script.includes('\nlock_take ')) {
      this.trips.push({ kind: 'facts', text: script });
      return { code: 0, stdout: `lock\tacquired\n${this.facts}\n`, stderr: '' };
    }
    const kind = classify(script);
    this.trips.push({ kind, text: script });
    const r = this.answer(kind);
    options.onStdout?.(r.stdout);
    return r;
  }
  async sudo(command: string, stdin: string | Readable, options: { onStdout?: (chunk: string) => void } = {}): Promise<ExecResult> {
    this.execCount++;
    // The upload: the tarball is read to its end, as the server would.
    if (typeof stdin !== 'string') for await (const _ of stdin);
    this.trips.push({ kind: 'upload', text: command });
    options.onStdout?.('');
    return { code: 0, stdout: '', stderr: '' };
  }
  async close(): Promise<void> {}
}

/** Which kind of script this is, by the steps its own lines (after the library) announce. */
function classify(whole: string): string {
  if (!whole.includes('trap on_exit EXIT')) return whole.includes('.lock/token') ? 'unlock' : 'other';
  const script = whole.slice(whole.indexOf('trap on_exit EXIT'));
  if (script.includes('certbot')) return 'certificate';
  if (script.includes('undo_init')) return script.includes('install packages') ? 'provision+activate' : 'activate';
  if (script.includes('health_ok')) return 'health';
  if (script.includes('install packages') || script.includes('create system user')) return 'provision';
  return 'other';
}

const silent = { step() {}, end() {}, line() {}, interrupt() {} };

async function deploy(env: Environment, shell: RecordingShell, mode: 'deploy' | 'setup' = 'deploy') {
  const source = await readSource(path.join(ROOT, 'example'));
  return runHost({
    env,
    host: env.hosts[0]!,
    engine,
    secrets,
    baseDir: ROOT,
    progress: silent,
    mode,
    dryRun: false,
    source,
    requirements: null,
    venv: SYSTEM_VENV,
    releaseId: '20261201T000000Z',
    manifest: { by: 'test', gitCommit: null, inventoryHash: 'x', created: '2026-12-01T00:00:00Z' },
    connect: async () => shell,
  });
}

describe('steps planned from the plan', () => {
  const kinds = (steps: Step[]) => steps.map((s) => s.kind + ('withProvision' in s && s.withProvision ? '+provision' : ''));

  it.each([
    ['first deploy: provision, upload, activate', { uploads: true, provisions: true }, null, ['provision', 'upload', 'activate']],
    ['new code on a provisioned server: upload, activate', { uploads: true, provisions: false }, null, ['upload', 'activate']],
    ['configuration only: one activation with provisioning folded in', { uploads: false, provisions: true }, 'config', ['activate+provision']],
    ['nothing to change: the health check alone', { uploads: false, provisions: false }, 'none', ['health']],
  ] as const)('%s', async (_, o, change, expected) => {
    const env = environment();
    const d = await desiredOf(env);
    const facts = parseFacts(
      o.provisions ? 'nginx\t1.22.1' : converged(d, { release: 'r0', sourceHash: 'old' }, change === 'config' ? d.files[0]!.path : undefined),
    );
    const plan = planDeploy({ desired: d, facts, code: change ? null : { id: 'r1', sourceHash: 'new', requirements: null, venv: SYSTEM_VENV } });
    expect(kinds(planSteps(plan, { ...o, checksHealth: true }))).toEqual(expected);
  });

  it('obtains a certificate after provisioning and before anything goes live', async () => {
    const env = environment('letsencrypt');
    const d = await desiredOf(env);
    const plan = planDeploy({
      desired: d,
      facts: parseFacts('nginx\t1.22.1'),
      code: { id: 'r1', sourceHash: 'new', requirements: null, venv: SYSTEM_VENV },
      certificate: {
        domains: ['blog.example.com'],
        email: 'ops@example.com',
        server: 'https://acme.test/dir',
        webroot: '/var/www/_letsencrypt',
        reason: 'no certificate yet',
      },
    });
    expect(kinds(planSteps(plan, { uploads: true, provisions: true, checksHealth: true }))).toEqual(['provision', 'certificate', 'upload', 'activate']);
  });

  it('knows whether provisioning has work exactly when its script has lines', async () => {
    const env = environment('letsencrypt');
    const d = await desiredOf(env);
    const cases = [
      parseFacts('nginx\t1.22.1'),
      parseFacts(converged(d, { release: 'r0', sourceHash: 'old' })),
      parseFacts(converged(d, { release: 'r0', sourceHash: 'old' }).replace(/\npkg\t[^\n]*/, '')),
      parseFacts(converged(d, null).replace('user\tblog\tblog', 'user\tblog\t-')),
    ];
    for (const facts of cases) {
      const plan = planDeploy({ desired: d, facts });
      for (const sshPort of [undefined, 22]) {
        const p = { layout: d.layout, staticPath: 'static', sshPort };
        expect(provisions(plan, p)).toBe(provisionLines(plan, p).length > 0);
      }
    }
  });

  it('gives the lock back when setup has nothing to do', async () => {
    const env = environment();
    const d = await desiredOf(env);
    const plan = planDeploy({ desired: d, facts: parseFacts(converged(d, null)), scope: 'setup' });
    expect(kinds(planSteps(plan, { uploads: false, provisions: false, checksHealth: false }))).toEqual(['unlock']);
  });
});

describe('runHost over a recording shell', () => {
  it('first deploy: facts, provision, upload, activate; four round trips', async () => {
    const shell = new RecordingShell('nginx\t1.22.1\nfree\t10000000');
    const r = await deploy(environment(), shell);
    expect(shell.trips.map((t) => t.kind)).toEqual(['facts', 'provision', 'upload', 'activate']);
    expect(r.execs).toBe(4);
    expect(r.health).toBe('200');
    expect(r.release).toBe('20261201T000000Z');
    // The release is built under the script given as the command line; it carries no secret.
    expect(shell.trips[2]!.text).toMatch(/^sh -c /);
    expect(shell.trips[2]!.text).not.toContain('sk-test');
  });

  it('nothing to change: facts and the health check; two round trips', async () => {
    const env = environment();
    const d = await desiredOf(env);
    const source = await readSource(path.join(ROOT, 'example'));
    const shell = new RecordingShell(converged(d, { release: 'r0', sourceHash: source.hash }));
    const r = await deploy(env, shell);
    expect(shell.trips.map((t) => t.kind)).toEqual(['facts', 'health']);
    expect(r.changes).toBe(0);
  });

  it('a failed health check ends the deploy with the step named and the rollback reported', async () => {
    const env = environment();
    const d = await desiredOf(env);
    const shell = new RecordingShell(converged(d, { release: 'r0', sourceHash: 'old' }), (kind) =>
      kind === 'activate'
        ? { code: 1, stdout: '@@fail health check\n@@rolledback 200\n', stderr: 'GET /health through nginx answered 500, not 200\n' }
        : { code: 0, stdout: '', stderr: '' },
    );
    const error = await deploy(env, shell).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteCommandError);
    expect(String((error as Error).message)).toMatch(/health check/);
    // The client gives the lock back too (nothing left to do when the script already did).
    expect(shell.trips.map((t) => t.kind)).toEqual(['facts', 'upload', 'activate', 'unlock']);
  });
});

describe('rollback planned from the releases a host recorded', () => {
  const manifest = Buffer.from(JSON.stringify({ id: 'x', source_hash: 'h', created: '', by: '' })).toString('base64');
  // r1 complete, r2 without recorded configuration, r3 complete and live, r4 newer but never live.
  const releases = parseReleases(
    ['release\tr1\tM\t1', 'release\tr2\tM\t0', 'release\tr3\tM\t1', 'release\tr4\t-\t0', 'live\tr3'].join('\n').replaceAll('M', manifest),
  );
  const at = { host: '192.0.2.1', env: 'prod' };

  it('goes to the newest complete release before the live one, in one restore step', () => {
    expect(planRollback(releases, undefined, at)).toEqual({
      target: 'r1',
      live: 'r3',
      steps: [{ kind: 'restore', release: 'r1', from: 'r3' }],
      migrated: null,
    });
  });

  it('names the first release after the target that ran server hooks, and the backup taken before them', () => {
    const m = (o: object) => Buffer.from(JSON.stringify({ id: 'x', source_hash: 'h', created: '', by: '', ...o })).toString('base64');
    const rows = (r2: object, r3: object) =>
      parseReleases([`release\tr1\t${m({ hooks: ['migrate'] })}\t1`, `release\tr2\t${m(r2)}\t1`, `release\tr3\t${m(r3)}\t1`, 'live\tr3'].join('\n'));
    // r1's own hooks ran before it went live: they are part of what a rollback to r1 gets.
    expect(planRollback(rows({ hooks: [] }, { hooks: [] }), 'r1', at).migrated).toBeNull();
    expect(planRollback(rows({ hooks: ['python manage.py migrate'], db_backup: 'B2' }, { hooks: ['x'], db_backup: 'B3' }), 'r1', at).migrated).toEqual({
      release: 'r2',
      hooks: ['python manage.py migrate'],
      backup: 'B2',
    });
    expect(planRollback(rows({}, { hooks: ['migrate'] }), 'r1', at).migrated).toEqual({ release: 'r3', hooks: ['migrate'], backup: null });
    // Going forward (to a release newer than the live one) undoes no migration.
    expect(migratedSince(rows({ hooks: ['m'] }, {}), 'r3', 'r1')).toBeNull();
  });

  it.each([
    ['r9', /there is no release r9/],
    ['r3', /r3 is already live/],
    ['r2', /release r2 is incomplete or has no recorded configuration/],
    ['r4', /release r4 is incomplete/],
  ])('refuses %s', (wanted, message) => {
    expect(() => planRollback(releases, wanted, at)).toThrow(UsageError);
    expect(() => planRollback(releases, wanted, at)).toThrow(message);
  });

  it('refuses when nothing came before the live release', () => {
    expect(() => planRollback(parseReleases(`release\tr1\t${manifest}\t1\nlive\tr1`), undefined, at)).toThrow(/no earlier release to roll back to/);
  });

  it('is carried out by the same executor as a deploy: the restore step runs its script', async () => {
    const ran: string[] = [];
    const scripts: StepScripts = { restore: (release) => `restore ${release}` };
    const outcome = await applySteps(planRollback(releases, undefined, at).steps, scripts, async (what, stdin) => {
      ran.push(`${what}: ${String(stdin)}`);
      return { health: '200' } as never;
    });
    expect(ran).toEqual(['rollback to r1: restore r1']);
    expect(outcome?.health).toBe('200');
  });
});

describe('the executor', () => {
  it('refuses a planned step it was given no script for, before running anything', async () => {
    const ran: string[] = [];
    const run = async (what: string) => {
      ran.push(what);
      return {} as never;
    };
    await expect(applySteps([{ kind: 'health' }], { restore: () => 'x' }, run)).rejects.toThrow(/health step was planned/);
    expect(ran).toEqual([]);
  });
});
