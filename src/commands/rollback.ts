/**
 * `stack rollback ENV [RELEASE]`: back to a recorded release (the previous one by default),
 * code and configuration together, validated, reloaded and health-checked like a deploy.
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import pc from 'picocolors';
import type { GlobalOptions } from '../cli/main.js';
import { selectEnvironment } from '../cli/environment.js';
import { forEachHost } from '../cli/hosts.js';
import { createProgress } from '../cli/progress.js';
import { StackError, UsageError } from '../errors.js';
import { colorDiff } from '../plan/print.js';
import { formatRestore, parseRestore, restoreFactsScript } from '../release/restore.js';
import { redactEnvFileText } from '../views/envfile.js';
import { sslMode } from '../inventory/resolve.js';
import { listReleasesScript, parseReleases, previousRelease } from '../release/list.js';
import { layoutFor } from '../views/layout.js';
import { healthCheckFor } from '../apply/deploy-host.js';
import { describeHolder, releaseLockScript, runWithLock } from '../apply/lock.js';
import { runScript } from '../apply/run-script.js';
import { auditFile, lockDir, rollbackScript } from '../apply/scripts.js';

export async function runRollback(
  envName: string | undefined,
  target: string | undefined,
  options: { wait?: boolean; dryRun?: boolean },
  globals: GlobalOptions,
): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const layout = layoutFor(env.app, env.gateway);
  const progress = createProgress();
  const by = `${userInfo().username}@${hostname()}`;
  await forEachHost(inventory, env, globals, async (shell, host) => {
    const token = randomUUID();
    const lock = {
      // A dry run takes no lock: it only reads.
      mode: options.dryRun ? ('report' as const) : ('acquire' as const),
      dir: lockDir(layout.app),
      token,
      holder: { who: by, client: hostname(), pid: process.pid, since: new Date().toISOString(), command: `rollback ${env.name}` },
    };
    const round = await runWithLock(shell, lock, listReleasesScript(layout), {
      progress,
      host: host.address,
      env: env.name,
      wait: options.wait,
      what: 'list releases',
    });
    let done = options.dryRun === true;
    try {
      const releases = parseReleases(round.stdout);
      const live = releases.find((r) => r.live);
      const chosen = target ? releases.find((r) => r.id === target) : previousRelease(releases);
      if (!chosen) {
        throw new UsageError(target ? `${host.address}: there is no release ${target}` : `${host.address}: there is no earlier release to roll back to`, {
          hint: `\`stack releases ${env.name}\` lists them`,
        });
      }
      if (chosen.live) throw new UsageError(`${host.address}: ${chosen.id} is already live`);
      if (!chosen.manifest || !chosen.hasConfig)
        throw new UsageError(`${host.address}: release ${chosen.id} is incomplete or has no recorded configuration; pick another`);
      if (options.dryRun) {
        const secretFiles = [`${layout.cert_dir}/privkey.pem`];
        const redact = (p: string, text: string) => (p === layout.env_file ? redactEnvFileText(text, env.app.secrets) : text);
        const r = await shell.sudoScript(restoreFactsScript(layout, chosen.id, secretFiles));
        if (r.code !== 0) throw new StackError(`${host.address}: ${r.stderr.trim() || `exit ${r.code}`}`);
        progress.line(formatRestore(parseRestore(chosen.id, r.stdout, redact), `${host.address} (${env.name}, live ${live?.id ?? 'none'})`, colorDiff));
        if (round.holder) progress.line(pc.yellow(`note: ${describeHolder(round.holder)} holds the deploy lock right now`));
        return;
      }
      const health = healthCheckFor(env, sslMode(env.ssl) !== 'none', layout.unit);
      const ctx = {
        layout,
        lock: { dir: lock.dir, token },
        audit: { file: auditFile(layout.app), who: by, command: `rollback ${env.name} ${live?.id ?? '?'} -> ${chosen.id}` },
      };
      const outcome = await runScript(shell, host.address, progress, { stdin: rollbackScript(chosen.id, ctx, health), what: `rollback to ${chosen.id}` });
      done = true;
      progress.line(
        `${pc.green('rolled back:')} ${host.address} now runs release ${chosen.id} (was ${live?.id ?? 'none'}), code and configuration; health ${outcome.health ?? '?'}`,
      );
    } finally {
      if (!done) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
    }
  });
}
