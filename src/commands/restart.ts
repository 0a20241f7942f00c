/**
 * `stack restart ENV [PROCESS]`: the app's processes restarted as a deploy restarts them: the
 * web first (socket activation keeps every connection waiting instead of refused) and
 * health-checked through nginx, then the instances of `processes:` (warm: SIGTERM, then their
 * stop timeout), each of which must stay up a few seconds; under the deploy lock, recorded in
 * the audit log.
 */
import { randomUUID } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import pc from 'picocolors';
import { hostHealthCheck } from '../apply/deploy-host.js';
import { releaseLockScript, runWithLock } from '../apply/lock.js';
import { runScript } from '../apply/run-script.js';
import { healthConfig, healthLines, type HealthCheck, PROCESS_SETTLE_SECONDS, type RunContext, wrap } from '../apply/scripts.js';
import { call, step } from '../remote/script.js';
import { UsageError } from '../errors.js';
import { auditFile } from '../facts/audit.js';
import { lockRequest } from '../facts/lock.js';
import { releasesFact } from '../facts/releases.js';
import { sslMode, type Environment } from '../inventory/resolve.js';
import { processInstances } from '../views/processes.js';
import { topologyOf } from '../views/topology.js';
import type { Host } from '../inventory/schema.js';
import { layoutFor, processUnit } from '../views/layout.js';
import { shCommand, shQuote as q } from '../remote/quote.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import type { GlobalOptions } from './options.js';

/** What a restart restarts: the web's unit, then process instances. */
export interface RestartUnits {
  web: string[];
  instances: string[];
}

/** Of the units to restart, those this host runs (its roles; a singleton on one host only). */
function onHost(env: Environment, host: Host, units: RestartUnits): RestartUnits {
  const topology = topologyOf(env, host);
  const here = new Set(processInstances(env, layoutFor(env.app, env.gateway), topology));
  return { web: topology.app ? units.web : [], instances: units.instances.filter((u) => here.has(u)) };
}

/**
 * The units a process name stands for: `app` (or `web`) is the gateway's service, a process of
 * `processes:` its `scale` instances; no name is all of them, the web first.
 */
export function restartUnits(env: Environment, process: string | undefined): RestartUnits {
  const layout = layoutFor(env.app, env.gateway);
  const web = { web: [layout.unit], instances: [] };
  const named = new Map<string, RestartUnits>([
    ['app', web],
    ['web', web],
  ]);
  for (const p of env.processes) {
    named.set(p.name, { web: [], instances: Array.from({ length: p.scale }, (_, i) => processUnit(layout, p.name, i + 1)) });
  }
  if (process === undefined) return { web: web.web, instances: env.processes.flatMap((p) => named.get(p.name)!.instances) };
  const found = named.get(process);
  if (!found) {
    const job = env.schedule.some((j) => j.name === process);
    throw new UsageError(
      job ? `${process} is a scheduled job: nothing of it runs to restart` : `no process "${process}" to restart`,
      job ? { hint: `stack schedule run ${env.name} ${process} runs it now` } : { hint: `processes: ${[...named.keys()].join(', ')}` },
    );
  }
  if (found.web.length === 0 && found.instances.length === 0) {
    throw new UsageError(`${process} has scale 0: no instance runs to restart`, {
      hint: `set processes.${process}.scale in the inventory, then stack deploy ${env.name}`,
    });
  }
  return found;
}

/**
 * The restart's script: each web unit restarts the way a deploy restarts the app (its socket
 * holds new connections meanwhile) and the health check through nginx decides; then the
 * instances restart together as a deploy restarts them (parts_run: each waits for its own warm
 * shutdown) and must stay up PROCESS_SETTLE_SECONDS. Nothing changed, so nothing can be put
 * back: a failure is reported with the unit's journal.
 */
export function restartUnitsScript(ctx: RunContext, health: HealthCheck | null, units: RestartUnits): string {
  const checked = health !== null && units.web.length > 0;
  const lines = checked ? [healthConfig(health)] : [];
  for (const unit of units.web) {
    lines.push(step(`restart ${unit}`), `${call('run_handler', shCommand('systemctl', 'restart', unit), unit)} || fail ${q(`restart ${unit}`)}`);
  }
  if (checked) lines.push(...healthLines(health, 'fail'));
  const all = units.instances;
  if (all.length > 0) {
    lines.push(
      step(`restart ${all.join(' ')}`),
      `${call('parts_run', 'restart', ...all)} || fail 'restart processes'`,
      step(`check that ${all.join(' ')} stay up (${PROCESS_SETTLE_SECONDS} s)`),
      `${call('parts_settle', String(PROCESS_SETTLE_SECONDS), ...all)} || fail 'processes'`,
    );
  }
  lines.push(`audit ok ''`);
  return wrap(ctx, lines, { releaseLock: true });
}

export async function runRestart(
  envName: string | undefined,
  processName: string | undefined,
  options: { wait?: boolean },
  globals: GlobalOptions,
): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const all = restartUnits(env, processName);
  const layout = layoutFor(env.app, env.gateway);
  const by = `${userInfo().username}@${hostname()}`;
  await forEachHost(inventory, env, globals, async (shell, host, progress) => {
    const restart = onHost(env, host, all);
    if (restart.web.length + restart.instances.length === 0) return;
    const units = [...restart.web, ...restart.instances];
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
      const health = hostHealthCheck(env, sslMode(env.ssl) !== 'none', layout, topologyOf(env, host));
      const r = await runScript(shell, host.address, progress, {
        stdin: restartUnitsScript(ctx, health, restart),
        what: `restart ${units.join(' ')}`,
        healthPath: health ? `GET ${health.path}` : undefined,
      });
      lockHeld = false;
      progress.line(`${pc.green('restarted:')} ${host.address} ${units.join(', ')}${restart.web.length > 0 ? `; health ${r.health ?? '?'}` : ''}`);
    } finally {
      if (lockHeld) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
    }
  });
}
