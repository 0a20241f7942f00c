/**
 * `stack restart ENV [PROCESS]`: the app's processes restarted as a deploy restarts them
 * (socket activation keeps every connection waiting instead of refused), under the deploy lock,
 * recorded in the audit log, and health-checked through nginx.
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import pc from 'picocolors';
import { healthCheckFor } from '../apply/deploy-host.js';
import { releaseLockScript, runWithLock } from '../apply/lock.js';
import { runScript } from '../apply/run-script.js';
import { restartScript } from '../apply/scripts.js';
import { UsageError } from '../errors.js';
import { auditFile } from '../facts/audit.js';
import { lockRequest } from '../facts/lock.js';
import { releasesFact } from '../facts/releases.js';
import { sslMode, type Environment } from '../inventory/resolve.js';
import { layoutFor } from '../views/layout.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import type { GlobalOptions } from './options.js';

/** The units a process name stands for: `app` (the default) is the gateway's service. */
export function restartUnits(env: Environment, process: string | undefined): string[] {
  const layout = layoutFor(env.app, env.gateway);
  const units = new Map([['app', [layout.unit]]]);
  if (process === undefined) return [...units.values()].flat();
  const found = units.get(process);
  if (!found) throw new UsageError(`no process "${process}" to restart`, { hint: `processes: ${[...units.keys()].join(', ')}` });
  return found;
}

export async function runRestart(
  envName: string | undefined,
  processName: string | undefined,
  options: { wait?: boolean },
  globals: GlobalOptions,
): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const units = restartUnits(env, processName);
  const layout = layoutFor(env.app, env.gateway);
  const progress = globals.output.progress;
  const by = `${userInfo().username}@${hostname()}`;
  await forEachHost(inventory, env, globals, async (shell, host) => {
    const token = randomUUID();
    const lock = lockRequest(layout.app, { dryRun: false, by, command: `restart ${env.name}`, token, since: new Date() });
    // The releases come with the lock: a server with no live release has nothing to restart.
    const round = await runWithLock(shell, lock, releasesFact(layout), { progress, host: host.address, env: env.name, wait: options.wait });
    let lockHeld = round.acquired;
    try {
      if (!round.value.some((r) => r.live)) {
        throw new UsageError(`${host.address}: ${env.app.name} has no live release to restart`, { hint: `deploy it first: stack deploy ${env.name}` });
      }
      const ctx = {
        layout,
        lock: { dir: lock.dir, token },
        audit: { file: auditFile(layout.app), who: by, command: `restart ${env.name} ${units.join(' ')}` },
      };
      const health = healthCheckFor(env, sslMode(env.ssl) !== 'none', layout);
      const r = await runScript(shell, host.address, progress, {
        stdin: restartScript(ctx, health, units),
        what: `restart ${units.join(' ')}`,
        healthPath: `GET ${health.path}`,
      });
      lockHeld = false;
      progress.line(`${pc.green('restarted:')} ${host.address} ${units.join(', ')}; health ${r.health ?? '?'}`);
    } finally {
      if (lockHeld) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
    }
  });
}
