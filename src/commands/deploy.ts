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
import { loadSecrets } from '../secrets/load.js';
import { loadCustomCertificate } from '../certs/custom.js';
import { checkWsgiModule } from '../release/wsgi.js';
import { redactValues } from '../secrets/redact.js';
import { TemplateEngine } from '../templates/engine.js';
import { runHost } from '../apply/deploy-host.js';
import type { HostRunResult } from '../ui/results.js';
import type { DeployResult } from '../ui/results.js';

export interface DeployOptions {
  dryRun?: boolean;
  exitCode?: boolean;
  wait?: boolean;
}

export async function runDeploy(
  envName: string | undefined,
  options: DeployOptions,
  globals: GlobalOptions,
  mode: 'deploy' | 'setup' = 'deploy',
): Promise<DeployResult> {
  const started = Date.now();
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
  const hookEnv = { STACK_ENV: env.name, STACK_APP: env.app.name, STACK_RELEASE: releaseId };

  if (mode === 'deploy' && !options.dryRun) await runLocalHooks('before_deploy', env.hooks.before_deploy, inventory.dir, hookEnv, progress, redact);
  const timeoutMs = connectTimeoutMs(globals);
  const results: HostRunResult[] = [];
  for (const host of env.hosts) {
    const result = await runHost({
      env,
      host,
      engine,
      secrets,
      baseDir: inventory.dir,
      progress,
      mode,
      dryRun: options.dryRun ?? false,
      source,
      requirements,
      releaseId,
      manifest,
      wait: options.wait,
      askSudoPassword,
      timeoutMs,
      certificate,
    });
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
