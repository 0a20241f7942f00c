/** `stack lock status|release ENV` and `stack audit ENV`: who holds the deploy lock, who did what. */
import pc from 'picocolors';
import type { GlobalOptions } from '../cli/main.js';
import { selectEnvironment } from '../cli/environment.js';
import { forEachHost } from '../cli/hosts.js';
import { StackError } from '../errors.js';
import { lockLines, parseFacts } from '../facts/gather.js';
import { shQuote as q } from '../remote/quote.js';
import { describeHolder, staleReason } from '../apply/lock.js';
import { auditFile, lockDir } from '../apply/scripts.js';
import { layoutFor } from '../views/layout.js';

export async function runLock(action: 'status' | 'release', envName: string | undefined, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const dir = lockDir(layoutFor(env.app, env.gateway).app);
  await forEachHost(inventory, env, globals, async (shell, host) => {
    // The same report a deploy reads, so both always agree on whether there is a lock.
    const report = lockLines({ mode: 'report', dir, token: '', holder: { who: '', client: '', pid: 0, since: '', command: '' } }).join('\n');
    const r = await shell.sudoScript(action === 'status' ? report : `${report}\nrm -rf ${q(dir)}`);
    if (r.code !== 0) throw new StackError(`${shell.label}: ${r.stderr.trim()}`);
    const lock = parseFacts(r.stdout).lock;
    if (lock.state !== 'held') {
      process.stdout.write(`${host.address}: not locked\n`);
    } else if (action === 'release') {
      process.stdout.write(`${host.address}: ${pc.yellow('released')} the lock held by ${describeHolder(lock.holder)}\n`);
    } else {
      const stale = staleReason(lock);
      const note = lock.scriptRunning
        ? ' (one of its steps is running on the server right now)'
        : stale
          ? pc.yellow(` (stale: ${stale}; the next deploy clears it)`)
          : '';
      process.stdout.write(`${host.address}: locked by ${describeHolder(lock.holder)}${note}\n`);
    }
  });
}

export async function runAudit(envName: string | undefined, options: { lines?: string }, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const file = auditFile(layoutFor(env.app, env.gateway).app);
  const n = Number(options.lines ?? 20);
  await forEachHost(inventory, env, globals, async (shell, host) => {
    const r = await shell.sudoScript(`tail -n ${Number.isInteger(n) && n > 0 ? n : 20} ${q(file)} 2>/dev/null || true`);
    process.stdout.write(`${pc.bold(host.address)}\n`);
    const rows = r.stdout.split('\n').filter(Boolean);
    if (rows.length === 0) process.stdout.write('  nothing recorded yet\n');
    for (const row of rows) {
      try {
        const e = JSON.parse(row) as { time: string; who: string; command: string; release: string | null; result: string; step: string };
        const result = e.result === 'ok' ? pc.green('ok') : pc.red(`${e.result}${e.step ? `: ${e.step}` : ''}`);
        process.stdout.write(`  ${e.time}  ${e.who}  ${e.command}${e.release ? `  release ${e.release}` : ''}  ${result}\n`);
      } catch {
        process.stdout.write(`  ${row}\n`);
      }
    }
  });
}
