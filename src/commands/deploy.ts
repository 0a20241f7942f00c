/** `stack deploy ENV [--dry-run]` and `stack setup ENV`: one pipeline, several exits. */
import { existsSync, readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import type { GlobalOptions } from '../cli/main.js';
import { selectEnvironment } from '../cli/environment.js';
import { createProgress } from '../cli/progress.js';
import { EXIT, UsageError } from '../errors.js';
import { hasRequirements, readSource } from '../release/source.js';
import { loadSecrets } from '../secrets/load.js';
import { TemplateEngine } from '../templates/engine.js';
import { runHost, summaryLine, type HostRunResult } from '../apply/deploy-host.js';

export interface DeployOptions {
  dryRun?: boolean;
  exitCode?: boolean;
}

export async function runDeploy(envName: string | undefined, options: DeployOptions, globals: GlobalOptions, mode: 'deploy' | 'setup' = 'deploy'): Promise<void> {
  const started = Date.now();
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const secrets = loadSecrets(env.app.secrets, inventory.dir, env.name);
  const sourceDir = path.resolve(inventory.dir, env.app.source);
  const source = mode === 'deploy' ? await readSource(sourceDir) : undefined;
  let requirements: string | null = null;
  if (mode === 'deploy' && env.app.requirements) {
    const file = path.join(sourceDir, env.app.requirements);
    if (!existsSync(file)) throw new UsageError(`app.requirements: ${path.relative(process.cwd(), file)} does not exist`, { hint: 'fix the path (it is relative to app.source) or remove the key' });
    if (!source!.files.includes(env.app.requirements)) throw new UsageError(`app.requirements: ${env.app.requirements} is not shipped (is it ignored by git?)`);
    requirements = hasRequirements(readFileSync(file, 'utf8')) ? env.app.requirements : null;
  }
  const engine = new TemplateEngine(path.resolve(inventory.dir, inventory.data.templates), inventory.dir);
  const progress = createProgress();
  const releaseId = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const by = `${userInfo().username}@${hostname()}`;
  const askSudoPassword = process.stdin.isTTY
    ? async () => {
        progress.interrupt();
        return (await import('@inquirer/prompts')).password({ message: 'sudo password on the server' });
      }
    : undefined;

  const timeoutMs = connectTimeoutMs(globals);
  const results: HostRunResult[] = [];
  for (const host of env.hosts) {
    results.push(
      await runHost({ env, host, engine, secrets, baseDir: inventory.dir, progress, mode, dryRun: options.dryRun ?? false, source, requirements, releaseId, by, askSudoPassword, timeoutMs }),
    );
  }
  progress.line(summaryLine(results, options.dryRun ?? false, Date.now() - started, globals.debug));
  if (options.dryRun && options.exitCode && results.some((r) => r.changes > 0)) process.exitCode = EXIT.changesPending;
}

export function connectTimeoutMs(globals: GlobalOptions): number | undefined {
  if (globals.connectTimeout === undefined) return undefined;
  const s = Number(globals.connectTimeout);
  if (!Number.isFinite(s) || s <= 0) throw new UsageError(`--connect-timeout: "${globals.connectTimeout}" is not a number of seconds`);
  return s * 1000;
}
