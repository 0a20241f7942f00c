/** `stack deploy ENV [--dry-run]` and `stack setup ENV`: one pipeline, several exits. */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import type { GlobalOptions } from './options.js';
import { selectEnvironment, connectTimeoutMs } from './environment.js';
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
  const git = await $({ quiet: true, nothrow: true, cwd: sourceDir })`git rev-parse HEAD`;
  const manifest = {
    by,
    gitCommit: git.exitCode === 0 ? git.stdout.trim() : null,
    inventoryHash: createHash('sha256').update(readFileSync(globals.inventory)).digest('hex'),
    created: now.toISOString(),
  };
  const askSudoPassword = process.stdin.isTTY
    ? async () => {
        progress.interrupt();
        return (await import('@inquirer/prompts')).password({ message: 'sudo password on the server' });
      }
    : undefined;
  const hostOptions: Omit<HostRunOptions, 'host'> = {
    env,
    engine,
    secrets,
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
  };
  return { inventory, env, hostOptions, hookEnv: { STACK_ENV: env.name, STACK_APP: env.app.name, STACK_RELEASE: releaseId }, redact };
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
  if (mode === 'deploy' && !options.dryRun) await runLocalHooks('before_deploy', env.hooks.before_deploy, inventory.dir, hookEnv, progress, redact);
  const results: HostRunResult[] = [];
  for (const host of env.hosts) {
    const result = await runHost({ ...hostOptions, host });
    results.push(result);
    // Each host's plan shows before the next host is asked, between their progress lines.
    output.host({ kind: 'deploy', env: env.name, dryRun: options.dryRun ?? false, result });
  }
  if (mode === 'deploy' && !options.dryRun) await runLocalHooks('after_deploy', env.hooks.after_deploy, inventory.dir, hookEnv, progress, redact);
  const pending = options.dryRun && options.exitCode && results.some((r) => r.changes > 0);
  return {
    kind: 'deploy',
    mode,
    dryRun: options.dryRun ?? false,
    env: env.name,
    ms: Date.now() - started,
    hosts: results,
    exitCode: pending ? EXIT.changesPending : EXIT.ok,
  };
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
    const r = await $({ quiet: true, nothrow: true, cwd, env: { ...process.env, ...env } })`sh -c ${hook}`;
    if (r.exitCode !== 0) {
      progress.end(false);
      throw new StackError(`${which} hook failed (exit ${r.exitCode}): ${hook}\n${redact(`${r.stdout}${r.stderr}`).trim().split('\n').slice(-30).join('\n')}`, {
        hint: which === 'before_deploy' ? 'nothing was sent to any server' : 'the deploy itself succeeded',
      });
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
