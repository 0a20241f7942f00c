/** `stack lock status|release ENV` and `stack audit ENV`: who holds the deploy lock, who did what. */
import type { GlobalOptions } from './options.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import { auditFact, auditFile } from '../facts/audit.js';
import { ask } from '../facts/fact.js';
import { lockDir, lockFact, type LockRequest } from '../facts/lock.js';
import { staleReason } from '../apply/lock.js';
import { shCommand } from '../remote/quote.js';
import type { AuditResult, LockResult } from '../ui/results.js';
import { layoutFor } from '../views/layout.js';

export async function runLock(action: 'status' | 'release', envName: string | undefined, globals: GlobalOptions): Promise<LockResult> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const dir = lockDir(layoutFor(env.app, env.gateway).app);
  const report: LockRequest = { mode: 'report', dir, token: '', holder: { who: '', client: '', pid: 0, since: '', command: '' } };
  const result: LockResult = { kind: 'lock', action, env: env.name, hosts: [] };
  result.hosts = await forEachHost(inventory, env, globals, async (shell, host) => {
    // The same report a deploy reads, so both always agree on whether there is a lock.
    // Reported and removed in the same script: what is printed is the lock that was removed.
    const fact = lockFact(report);
    const lock = await ask(
      shell,
      action === 'status' ? fact : { ...fact, what: 'release the deploy lock', lines: [...fact.lines, shCommand('rm', '-rf', dir)] },
    );
    const held = lock.state === 'held' ? lock : null;
    const part = {
      host: host.address,
      locked: held !== null,
      holder: held?.holder ?? null,
      stepRunning: held?.scriptRunning ?? false,
      stale: held ? staleReason(held) : null,
    };
    globals.output.host({ kind: 'lock', action, ...part });
    return part;
  });
  return result;
}

export async function runAudit(envName: string | undefined, options: { lines?: string }, globals: GlobalOptions): Promise<AuditResult> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const file = auditFile(layoutFor(env.app, env.gateway).app);
  const n = Number(options.lines ?? 20);
  const result: AuditResult = { kind: 'audit', env: env.name, hosts: [] };
  result.hosts = await forEachHost(inventory, env, globals, async (shell, host) => {
    const part = { host: host.address, entries: await ask(shell, auditFact(file, n)) };
    globals.output.host({ kind: 'audit', ...part });
    return part;
  });
  return result;
}
