/** `stack deploy ENV [--dry-run]` and `stack setup ENV`: one pipeline, several exits. */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { runLocal } from '../local.js';
import type { GlobalOptions } from './options.js';
import { selectEnvironment, connectTimeoutMs, parallelHosts, targetHosts } from './environment.js';
import { batches, eachHost, HostsError, type Outcome } from '../apply/fleet.js';
import { connectHost } from '../ssh/connect.js';
import { hostRoles } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { rollbackOnHost } from './rollback.js';
import { separateDbHost } from '../views/topology.js';
import type { Progress } from '../ui/progress.js';
import { EXIT, StackError, UsageError } from '../errors.js';
import { releaseIdAt } from '../release/id.js';
import { hasRequirements, readSource, untrackedWarning } from '../release/source.js';
import { loadOptionalSecret, loadSecrets } from '../secrets/load.js';
import { type PackageIndex, venvVersion } from '../release/venv.js';
import { loadCustomCertificate } from '../certs/custom.js';
import { checkWsgiModule } from '../release/wsgi.js';
import { redactValues } from '../secrets/redact.js';
import { Secret } from '../secrets/secret.js';
import { TemplateEngine } from '../templates/engine.js';
import { loadRoles } from '../roles/load.js';
import { type HostRunOptions, runHost } from '../apply/deploy-host.js';
import type { Inventory } from '../inventory/load.js';
import type { Environment } from '../inventory/resolve.js';
import type { HostRunResult } from '../ui/results.js';
import type { DeployResult } from '../ui/results.js';

export interface DeployOptions {
  dryRun?: boolean;
  exitCode?: boolean;
  wait?: boolean;
}

/** Everything a deploy, setup or status needs before the first host is contacted. */
export interface PreparedRun {
  inventory: Inventory;
  env: Environment;
  /** runHost's options but the host. */
  hostOptions: Omit<HostRunOptions, 'host'>;
  /** What local hooks get in their environment. */
  hookEnv: Record<string, string>;
  redact: (text: string) => string;
}

export async function prepareRun(envName: string | undefined, mode: 'deploy' | 'setup', options: DeployOptions, globals: GlobalOptions): Promise<PreparedRun> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const secrets = loadSecrets(env.app.secrets, inventory.dir, env.name);
  // A custom certificate that cannot go live stops everything before a server is contacted.
  const certificate = loadCustomCertificate(inventory, env);
  const redact = redactValues([...secrets.values()]);
  const output = globals.output;
  output.addSecrets(secrets.values());
  const sourceDir = path.resolve(inventory.dir, env.app.source);
  const source = mode === 'deploy' ? await readSource(sourceDir, { exclude: env.app.exclude, inventoryFile: path.resolve(globals.inventory) }) : undefined;
  checkWsgiModule(inventory, env, source?.fileList);
  const untracked = source ? untrackedWarning(source.untracked) : null;
  if (untracked) output.warn(untracked);
  let requirements: string | null = null;
  if (mode === 'deploy' && env.app.requirements) {
    const file = path.join(sourceDir, env.app.requirements);
    if (!existsSync(file))
      throw new UsageError(`app.requirements: ${path.relative(process.cwd(), file)} does not exist`, {
        hint: 'fix the path (it is relative to app.source) or remove the key',
      });
    if (!source!.fileList.includes(env.app.requirements))
      throw new UsageError(`app.requirements: ${env.app.requirements} is not shipped (untracked, ignored by .gitignore, or in app.exclude?)`);
    requirements = hasRequirements(readFileSync(file, 'utf8')) ? env.app.requirements : null;
  }
  const index = mode === 'deploy' ? packageIndex(env.app.index_url, inventory.dir, env.name) : null;
  // Whatever carries it, the URL may hold a token: redacted like the app's secrets.
  if (index) output.addSecrets([index.url]);
  const venv = source ? venvVersion(sourceDir, source, requirements, index) : undefined;
  const engine = new TemplateEngine(path.resolve(inventory.dir, inventory.data.templates), inventory.dir);
  const progress = output.progress;
  const now = new Date();
  const releaseId = releaseIdAt(now);
  const by = `${userInfo().username}@${hostname()}`;
  const git = await runLocal('git', ['rev-parse', 'HEAD'], { cwd: sourceDir });
  const manifest = {
    by,
    gitCommit: git.code === 0 ? git.stdout.trim() : null,
    inventoryHash: createHash('sha256').update(readFileSync(globals.inventory)).digest('hex'),
    created: now.toISOString(),
  };
  // Asked once for every host (hosts run at once: one prompt, not one per host), on a terminal only.
  let sudoPassword: Promise<string> | undefined;
  const askSudoPassword = process.stdin.isTTY
    ? () =>
        (sudoPassword ??= (async () => {
          progress.interrupt();
          return (await import('@inquirer/prompts')).password({ message: 'sudo password on the servers' });
        })())
    : undefined;
  // With the database on a db host of its own, the app and worker hosts' env files hold the
  // role's password, made and kept there (src/apply/cluster.ts): read once into memory, redacted
  // like the app's secrets. Nothing to ask otherwise: no connection is made.
  const { clusterSecrets } = await import('../apply/cluster.js');
  const shared = await clusterSecrets(env, { baseDir: inventory.dir, askSudoPassword, timeoutMs: connectTimeoutMs(globals), dryRun: options.dryRun });
  output.addSecrets(shared.values());
  const hostSecrets = shared.size > 0 ? new Map([...secrets, ...shared]) : secrets;
  const hostOptions: Omit<HostRunOptions, 'host'> = {
    env,
    engine,
    secrets: hostSecrets,
    baseDir: inventory.dir,
    progress,
    mode,
    dryRun: options.dryRun ?? false,
    source,
    requirements,
    venv,
    index: index?.url ?? null,
    releaseId,
    manifest,
    wait: options.wait,
    askSudoPassword,
    timeoutMs: connectTimeoutMs(globals),
    certificate,
    roles: loadRoles(),
  };
  return {
    inventory,
    env,
    hostOptions,
    hookEnv: { STACK_ENV: env.name, STACK_APP: env.app.name, STACK_RELEASE: releaseId },
    redact: shared.size > 0 ? redactValues([...hostSecrets.values()]) : redact,
  };
}

export async function runDeploy(
  envName: string | undefined,
  options: DeployOptions,
  globals: GlobalOptions,
  mode: 'deploy' | 'setup' = 'deploy',
): Promise<DeployResult> {
  const started = Date.now();
  const { inventory, env, hostOptions, hookEnv, redact } = await prepareRun(envName, mode, options, globals);
  const { output } = globals;
  const { progress } = hostOptions;
  const hosts = targetHosts(env, globals.limit);
  const parallel = parallelHosts(globals, hosts.length);
  const dryRun = options.dryRun ?? false;
  if (mode === 'deploy' && !dryRun) await runLocalHooks('before_deploy', env.hooks.before_deploy, inventory.dir, hookEnv, progress, redact);
  const order = deployOrder(env, hosts, dryRun);
  const dbHost = env.database ? env.hosts.find((h) => hostRoles(h).includes('db')) : undefined;
  const run = (host: Host) => {
    const scoped = hosts.length > 1 ? progress.scope() : progress;
    const primary = order.primary === null || order.primary === host;
    // The primary's hooks change the database on the db host: its backup is taken there first.
    const backupElsewhere =
      primary && order.primary && dbHost && dbHost !== host
        ? async () => (await import('./db.js')).backupBeforeHooks(inventory.dir, env, dbHost, globals, scoped, hostOptions.askSudoPassword)
        : undefined;
    return runHost({ ...hostOptions, host, primary, progress: scoped, backupElsewhere });
  };
  const results = new Map<Host, HostRunResult>();
  for (const [n, phase] of order.phases.entries()) {
    // The primary host (server hooks on a shared database) goes alone before the rest of its batch.
    const first = !dryRun && order.primary && phase.includes(order.primary) ? [[order.primary], phase.filter((h) => h !== order.primary)] : [phase];
    const outcomes: Outcome<HostRunResult>[] = [];
    for (const group of first) {
      if (group.length === 0) continue;
      outcomes.push(...(await eachHost(group, parallel, run)));
      if (outcomes.some((o) => !o.ok)) break;
    }
    for (const o of outcomes) if (o.ok) results.set(o.host, o.value);
    // One host: its plan shows as soon as it is known, between the progress lines, as always.
    if (hosts.length === 1 && outcomes[0]?.ok) output.host({ kind: 'deploy', env: env.name, dryRun, result: outcomes[0].value });
    const failed = outcomes.filter((o) => !o.ok);
    if (failed.length === 0) continue;
    if (hosts.length === 1) throw (failed[0] as { error: unknown }).error;
    // A dry run still shows what the hosts that answered would change.
    if (dryRun) for (const r of results.values()) output.host({ kind: 'deploy', env: env.name, dryRun, result: r });
    // A batch that failed goes back as a whole: its hosts that went live return to their release.
    const undone = dryRun || mode === 'setup' ? [] : await undoBatch(outcomes, inventory.dir, env, globals, progress, hostOptions.askSudoPassword);
    const later = order.phases.slice(n + 1).flat();
    const phaseHosts = new Set(phase);
    throw new HostsError(
      `${mode}${order.phases.length > 1 ? ` (batch ${n + 1} of ${order.phases.length})` : ''}`,
      hosts.length,
      failed.map((o) => ({ host: o.host, error: (o as { error: unknown }).error })),
      whereReleasesAre(
        hosts.filter((h) => !phaseHosts.has(h) && results.has(h)).map((h) => results.get(h)!),
        undone,
        later,
        mode,
      ),
    );
  }
  if (mode === 'deploy' && !dryRun) await runLocalHooks('after_deploy', env.hooks.after_deploy, inventory.dir, hookEnv, progress, redact);
  const all = hosts.map((h) => results.get(h)!);
  const pending = dryRun && options.exitCode && all.some((r) => r.changes > 0);
  return {
    kind: 'deploy',
    mode,
    dryRun,
    env: env.name,
    ms: Date.now() - started,
    hosts: all,
    exitCode: pending ? EXIT.changesPending : EXIT.ok,
  };
}

/**
 * In which order hosts go: a host that only keeps the database goes first (the others' hooks and
 * gateways need it ready), then the hosts that run the code in the batches of `rolling:` (one
 * batch without it), then the hosts that only run nginx, whose health check needs gateways up.
 * When hosts share one database on another host, the server hooks (a migration) run on one
 * host only, the primary: the first app host picked (else the first worker host), which goes
 * before the others of its batch. Otherwise each host runs them on its own database. A dry run
 * changes nothing, so every host is asked at once.
 */
export function deployOrder(env: Environment, hosts: readonly Host[], dryRun: boolean): { phases: Host[][]; primary: Host | null } {
  const runsCode = (h: Host) => hostRoles(h).some((r) => r === 'app' || r === 'worker');
  const dbOnly = hosts.filter((h) => hostRoles(h).every((r) => r === 'db'));
  const code = hosts.filter(runsCode);
  const webOnly = hosts.filter((h) => !runsCode(h) && !dbOnly.includes(h));
  const primary = separateDbHost(env) ? (code.find((h) => hostRoles(h).includes('app')) ?? code[0] ?? null) : null;
  if (dryRun) return { phases: [[...hosts]], primary };
  const phases = [dbOnly, ...batches(code, env.rolling?.batch ?? null), webOnly].filter((p) => p.length > 0);
  return { phases, primary };
}

/**
 * The hosts of a failed batch that went live go back to the release they ran before (code and
 * configuration; the database stays as it is: the batches before still run the new code on it).
 * Returns, per host, the release it runs now.
 */
async function undoBatch(
  outcomes: readonly Outcome<HostRunResult>[],
  baseDir: string,
  env: Environment,
  globals: GlobalOptions,
  progress: Progress,
  askSudoPassword: (() => Promise<string>) | undefined,
): Promise<{ host: string; release: string | null; note: string }[]> {
  const live = outcomes.filter((o): o is Outcome<HostRunResult> & { ok: true } => o.ok && o.value.release !== undefined);
  const undone = await eachHost(
    live.map((o) => o.host),
    parallelHosts(globals, live.length),
    async (host) => {
      const r = live.find((o) => o.host === host)!.value;
      if (!r.previous) return { host: host.address, release: r.release ?? null, note: 'had no release before, so it keeps the new one' };
      const shell = await connectHost(host, { baseDir, timeoutMs: connectTimeoutMs(globals), askSudoPassword });
      try {
        await rollbackOnHost(shell, host, r.previous, { keepDb: true }, { env, progress: live.length > 1 ? progress.scope() : progress });
        return { host: host.address, release: r.previous, note: 'rolled back with its batch' };
      } finally {
        await shell.close();
      }
    },
  );
  return undone.map((o, i) =>
    o.ok
      ? o.value
      : {
          host: o.host.address,
          release: live[i]!.value.release ?? null,
          note: `could not be rolled back (${(o.error as Error)?.message ?? o.error}); run stack rollback ${env.name} --limit ${o.host.address}`,
        },
  );
}

/** The hint of a failed rollout: which host runs which release now. */
function whereReleasesAre(
  earlier: readonly HostRunResult[],
  undone: readonly { host: string; release: string | null; note: string }[],
  later: readonly Host[],
  mode: string,
): string {
  const parts: string[] = [];
  const byRelease = new Map<string, string[]>();
  for (const r of earlier) {
    const key = r.release ?? (r.previous ? `${r.previous} (configuration updated)` : 'no release');
    byRelease.set(key, [...(byRelease.get(key) ?? []), r.host]);
  }
  for (const [release, names] of byRelease) parts.push(`${names.join(', ')} ${mode === 'setup' ? 'set up' : `run ${release}`}`);
  for (const u of undone) parts.push(`${u.host} runs ${u.release ?? 'no release'} (${u.note})`);
  if (later.length > 0) parts.push(`${later.map((h) => h.address).join(', ')} not started (what they served before)`);
  parts.push('the hosts that failed serve what they served before');
  return parts.join('; ');
}

/** Local hooks run in the inventory's folder; a failing one stops the deploy, output shown redacted. */
async function runLocalHooks(
  which: string,
  hooks: string[],
  cwd: string,
  env: Record<string, string>,
  progress: Progress,
  redact: (t: string) => string,
): Promise<void> {
  for (const hook of hooks) {
    progress.step('local', `${which} hook: ${hook}`);
    const r = await runLocal('sh', ['-c', hook], { cwd, env: { ...process.env, ...env } });
    if (r.code !== 0) {
      progress.end(false);
      throw new StackError(
        `${which} hook failed (${r.code === null ? 'did not run' : `exit ${r.code}`}): ${hook}\n${redact(`${r.stdout}${r.stderr}`).trim().split('\n').slice(-30).join('\n')}`,
        {
          hint: which === 'before_deploy' ? 'nothing was sent to any server' : 'the deploy itself succeeded',
        },
      );
    }
    progress.end(true);
  }
}

/**
 * The package index pip installs from: the secret STACK_INDEX_URL (for a URL with credentials;
 * from the environment or .stack/secrets.<env>, like the app's secrets) or else app.index_url.
 */
function packageIndex(inventoryUrl: string | undefined, inventoryDir: string, envName: string): PackageIndex | null {
  const secret = loadOptionalSecret('STACK_INDEX_URL', inventoryDir, envName);
  if (secret) {
    // The message must not show the value.
    if (!/^https?:\/\/\S+$/.test(secret.reveal()))
      throw new UsageError('the secret STACK_INDEX_URL is not an http or https URL', {
        hint: 'give the whole index URL, e.g. https://user:token@pypi.example.com/simple/',
      });
    return { url: secret, from: 'secret STACK_INDEX_URL' };
  }
  return inventoryUrl ? { url: new Secret('app.index_url', inventoryUrl), from: 'app.index_url' } : null;
}
