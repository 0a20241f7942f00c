/**
 * `stack rollback ENV [RELEASE]`: back to a recorded release (the previous one by default),
 * code and configuration together, validated, reloaded and health-checked like a deploy.
 * Planned from the releases each host recorded (src/plan/rollback.ts) and carried out by the
 * same executor as a deploy; `--dry-run` prints what would be restored and the steps.
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import pc from 'picocolors';
import type { GlobalOptions } from './options.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import { ask } from '../facts/fact.js';
import { describeHolder, lockRequest } from '../facts/lock.js';
import { releasesFact } from '../facts/releases.js';
import { restoreFact } from '../facts/restore.js';
import { formatRestore } from '../plan/print.js';
import { planRollback } from '../plan/rollback.js';
import { formatSteps } from '../plan/steps.js';
import { redactEnvFileText } from '../views/envfile.js';
import { sslMode } from '../inventory/resolve.js';
import { layoutFor } from '../views/layout.js';
import { applySteps, type StepScripts } from '../apply/apply.js';
import { healthCheckFor } from '../apply/deploy-host.js';
import { releaseLockScript, runWithLock } from '../apply/lock.js';
import { runScript } from '../apply/run-script.js';
import { rollbackScript } from '../apply/scripts.js';
import { auditFile } from '../facts/audit.js';

export async function runRollback(
  envName: string | undefined,
  target: string | undefined,
  options: { wait?: boolean; dryRun?: boolean },
  globals: GlobalOptions,
): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const layout = layoutFor(env.app, env.gateway);
  const progress = globals.output.progress;
  const by = `${userInfo().username}@${hostname()}`;
  const dryRun = options.dryRun === true;
  await forEachHost(inventory, env, globals, async (shell, host) => {
    const token = randomUUID();
    // A dry run takes no lock: it only reads.
    const lock = lockRequest(layout.app, { dryRun, by, command: `rollback ${env.name}`, token, since: new Date() });
    const round = await runWithLock(shell, lock, releasesFact(layout), { progress, host: host.address, env: env.name, wait: options.wait });
    let lockHeld = round.acquired;
    try {
      const plan = planRollback(round.value, target, { host: host.address, env: env.name });
      if (dryRun) {
        const secretFiles = [`${layout.cert_dir}/privkey.pem`];
        const redact = (p: string, text: string) => (p === layout.env_file ? redactEnvFileText(text, env.app.secrets) : text);
        const restore = await ask(shell, restoreFact(layout, plan.target, secretFiles, redact));
        progress.line(formatRestore(restore, `${host.address} (${env.name}, live ${plan.live ?? 'none'})`));
        progress.line(formatSteps(plan.steps));
        if (round.holder) progress.line(pc.yellow(`note: ${describeHolder(round.holder)} holds the deploy lock right now`));
        return;
      }
      // The static check follows today's inventory, which may not be the restored release's.
      const { static: _today, ...health } = healthCheckFor(env, sslMode(env.ssl) !== 'none', layout);
      const ctx = {
        layout,
        lock: { dir: lock.dir, token },
        audit: { file: auditFile(layout.app), who: by, command: `rollback ${env.name} ${plan.live ?? '?'} -> ${plan.target}` },
      };
      const scripts: StepScripts = { restore: (release) => rollbackScript(release, ctx, health) };
      const outcome = await applySteps(plan.steps, scripts, (what, stdin) => runScript(shell, host.address, progress, { stdin, what }));
      lockHeld = false;
      progress.line(
        `${pc.green('rolled back:')} ${host.address} now runs release ${plan.target} (was ${plan.live ?? 'none'}), code and configuration; health ${outcome?.health ?? '?'}`,
      );
    } finally {
      // The rollback script releases the lock itself once it runs; this covers stopping before.
      if (lockHeld) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
    }
  });
}
