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
import { connectTimeoutMs, parallelHosts, selectEnvironment, targetHosts } from './environment.js';
import { batches, eachHost, HostsError, settle } from '../apply/fleet.js';
import { connectHost, type RemoteShell } from '../ssh/connect.js';
import type { Progress } from '../ui/progress.js';
import type { Host } from '../inventory/schema.js';
import { ask, both } from '../facts/fact.js';
import { backupsFact } from '../facts/backups.js';
import { describeHolder, lockRequest } from '../facts/lock.js';
import { previousRelease, releasesFact } from '../facts/releases.js';
import { restoreFact } from '../facts/restore.js';
import { formatRestore } from '../plan/print.js';
import { planRollback } from '../plan/rollback.js';
import { formatSteps } from '../plan/steps.js';
import { redactEnvFileText } from '../views/envfile.js';
import { hostRoles, sslMode } from '../inventory/resolve.js';
import { layoutFor } from '../views/layout.js';
import { separateDbHost, topologyOf } from '../views/topology.js';
import { applySteps, type StepScripts } from '../apply/apply.js';
import { hostHealthCheck } from '../apply/deploy-host.js';
import { releaseLockScript, runWithLock } from '../apply/lock.js';
import { runScript } from '../apply/run-script.js';
import { rollbackScript } from '../apply/scripts.js';
import { auditFile } from '../facts/audit.js';
import { appUnits, restoreLines } from '../apply/database.js';
import { StackError, UsageError } from '../errors.js';
import type { Environment } from '../inventory/resolve.js';
import { backupId } from '../plan/database.js';
import type { RollbackPlan } from '../plan/rollback.js';

export interface RollbackOptions {
  wait?: boolean;
  dryRun?: boolean;
  /** Restore the backup taken before the first release after the target that ran hooks. */
  restoreDb?: boolean;
  /** Code and configuration only: the database stays as it is. */
  keepDb?: boolean;
}

export async function runRollback(envName: string | undefined, target: string | undefined, options: RollbackOptions, globals: GlobalOptions): Promise<void> {
  if (options.restoreDb && options.keepDb) throw new UsageError('--restore-db and --keep-db exclude each other; pick one');
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const dbHost = separateDbHost(env);
  if (options.restoreDb && dbHost)
    throw new UsageError(
      `--restore-db restores the database of a host that runs the code, and environment ${env.name} keeps it on ${dbHost.address}, shared by its hosts`,
      {
        hint: `roll the code back with --keep-db, then restore the database there: stack db restore ${env.name} ID (stack db backups ${env.name} lists them)`,
      },
    );
  // The hosts that run code have releases; a db host of its own has none to go back to.
  const hosts = targetHosts(env, globals.limit).filter((h) => {
    const t = topologyOf(env, h);
    return t.app || t.worker;
  });
  if (hosts.length === 0)
    throw new UsageError(`no host ${globals.limit ? `that --limit ${globals.limit} picks ` : ''}runs the app's code, so there is no release to go back to`, {
      hint: 'a database goes back with `stack db restore`',
    });
  // A question on the terminal (restore the database or not) is asked one host at a time.
  const asks = env.database !== null && !options.restoreDb && !options.keepDb && !options.dryRun && process.stdin.isTTY === true;
  const parallel = asks ? 1 : parallelHosts(globals, hosts.length);
  const root = globals.output.progress;
  if (target === undefined && hosts.length > 1) target = await commonPrevious(hosts, env, inventory.dir, globals);
  const done: { host: Host; release: string }[] = [];
  const groups = options.dryRun ? [hosts] : batches(hosts, env.rolling?.batch ?? null);
  for (const [n, group] of groups.entries()) {
    const outcomes = await eachHost(group, parallel, async (host) => {
      const progress = hosts.length > 1 ? root.scope() : root;
      const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
      try {
        return await rollbackOnHost(shell, host, target, options, { env, progress });
      } finally {
        await shell.close();
      }
    });
    for (const o of outcomes) if (o.ok && o.value) done.push({ host: o.host, release: o.value.target });
    if (outcomes.some((o) => !o.ok)) {
      const rest = groups.slice(n + 1).flat();
      const state = [
        done.length > 0 ? `rolled back: ${done.map((d) => `${d.host.address} (${d.release})`).join(', ')}` : '',
        rest.length > 0 ? `not started, still on their release: ${rest.map((h) => h.address).join(', ')}` : '',
      ].filter((l) => l !== '');
      if (hosts.length === 1) throw (outcomes[0] as { error: unknown }).error;
      throw new HostsError(
        'rollback',
        hosts.length,
        outcomes.filter((o) => !o.ok).map((o) => ({ host: o.host, error: (o as { error: unknown }).error })),
        `${state.join('; ')}${state.length ? '; ' : ''}a host that failed serves what it served before`,
      );
    }
  }
}

/**
 * The release several hosts go back to without one named: the one before the live one, which
 * must be the same everywhere (a host undone with its batch may be a step behind the others),
 * else the user names one they all have.
 */
async function commonPrevious(hosts: readonly Host[], env: Environment, baseDir: string, globals: GlobalOptions): Promise<string> {
  const layout = layoutFor(env.app, env.gateway);
  const read = settle(
    await eachHost(hosts, parallelHosts(globals, hosts.length), async (host) => {
      const shell = await connectHost(host, { baseDir, timeoutMs: connectTimeoutMs(globals) });
      try {
        return await ask(shell, releasesFact(layout));
      } finally {
        await shell.close();
      }
    }),
    'rollback',
  );
  const previous = read.map((releases) => previousRelease(releases)?.id ?? null);
  if (previous.every((p) => p !== null && p === previous[0])) return previous[0]!;
  const complete = read.map((releases) => new Set(releases.filter((r) => r.manifest && r.hasConfig && !r.live).map((r) => r.id)));
  const newest = [...complete[0]!]
    .filter((id) => complete.every((ids) => ids.has(id)))
    .sort()
    .at(-1);
  throw new UsageError(
    `the hosts of ${env.name} would go back to different releases (${hosts.map((h, i) => `${h.address}: ${previous[i] ?? 'none'}`).join(', ')}); name the one they all go back to`,
    { hint: newest ? `the newest release every host has: stack rollback ${env.name} ${newest}` : 'no release older than the live one is on every host' },
  );
}

/**
 * One host back to `target` (the release before the live one when undefined), on an open
 * connection: the lock and the releases in one round trip, the plan, the database choice, then
 * the restore script (or, dry, what it would do). Returns the release it now runs.
 */
export async function rollbackOnHost(
  shell: RemoteShell,
  host: Host,
  target: string | undefined,
  options: RollbackOptions,
  o: { env: Environment; progress: Progress },
): Promise<{ target: string; live: string | null } | null> {
  const { env, progress } = o;
  const layout = layoutFor(env.app, env.gateway);
  const by = `${userInfo().username}@${hostname()}`;
  const dryRun = options.dryRun === true;
  const token = randomUUID();
  // A dry run takes no lock: it only reads.
  const lock = lockRequest(layout.app, { dryRun, by, command: `rollback ${env.name}`, token, since: new Date() });
  // With a database, its backups come in the same round trip: the one a --restore-db would use must still be there.
  const fact = both(releasesFact(layout), env.database && hostRoles(host).includes('db') ? backupsFact(layout) : null);
  const round = await runWithLock(shell, lock, fact, { progress, host: host.address, env: env.name, wait: options.wait });
  const [releases, backups] = round.value;
  let lockHeld = round.acquired;
  try {
    const plan = planRollback(releases, target, { host: host.address, env: env.name });
    const kept = backups ? new Set(backups.backups.map((b) => b.id)) : null;
    // The database is the db host's: a host without it rolls back code and configuration only,
    // and says so when a migration ran since the release it goes back to.
    const restoreDb = hostRoles(host).includes('db') ? await databaseChoice(plan, env, options, host.address, (text) => progress.line(text), kept) : null;
    if (!hostRoles(host).includes('db') && env.database && plan.migrated && !options.keepDb)
      progress.line(
        pc.yellow(
          `${host.address}: note: release ${plan.migrated.release} ran server hooks after ${plan.target} (${plan.migrated.hooks.join('; ')}); the database on the db host is left as it is${plan.migrated.backup ? `, and backup ${plan.migrated.backup} there is from right before them (stack db restore ${env.name} ${plan.migrated.backup})` : ''}`,
        ),
      );
    if (dryRun) {
      const secretFiles = [`${layout.cert_dir}/privkey.pem`];
      const redact = (p: string, text: string) => (p === layout.env_file ? redactEnvFileText(text, env.app.secrets) : text);
      const restore = await ask(shell, restoreFact(layout, plan.target, secretFiles, redact));
      progress.line(formatRestore(restore, `${host.address} (${env.name}, live ${plan.live ?? 'none'})`));
      if (restoreDb) progress.line(`  then restore database ${env.database!.name} from backup ${restoreDb} (a backup of it as it is now is taken first)`);
      progress.line(formatSteps(plan.steps));
      if (round.holder) progress.line(pc.yellow(`note: ${describeHolder(round.holder)} holds the deploy lock right now`));
      return null;
    }
    // The static check follows today's inventory, which may not be the restored release's.
    const topology = topologyOf(env, host);
    const check = hostHealthCheck(env, sslMode(env.ssl) !== 'none', layout, topology);
    const health = check ? (({ static: _today, ...rest }) => rest)(check) : null;
    const ctx = {
      layout,
      lock: { dir: lock.dir, token },
      audit: { file: auditFile(layout.app), who: by, command: `rollback ${env.name} ${plan.live ?? '?'} -> ${plan.target}` },
    };
    const db = env.database;
    const dbLines =
      restoreDb && db
        ? restoreLines(
            {
              dir: layout.backup_dir,
              db: db.name,
              keep: db.backups.keep,
              role: layout.app,
              locale: db.locale,
              id: restoreDb,
              safetyId: backupId(new Date(), 'restore'),
              units: appUnits(layout),
            },
            'undo_rollback',
          )
        : [];
    const scripts: StepScripts = { restore: (release) => rollbackScript(release, ctx, health, dbLines, { web: topology.web, app: topology.app }) };
    const outcome = await applySteps(plan.steps, scripts, (what, stdin) => runScript(shell, host.address, progress, { stdin, what }));
    lockHeld = false;
    progress.line(
      `${pc.green('rolled back:')} ${host.address} now runs release ${plan.target} (was ${plan.live ?? 'none'}), code and configuration${restoreDb ? `, database from backup ${restoreDb}` : ''}; health ${outcome?.health ?? '?'}`,
    );
    return { target: plan.target, live: plan.live };
  } finally {
    // The rollback script releases the lock itself once it runs; this covers stopping before.
    if (lockHeld) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
  }
}

/**
 * A rollback past a release that ran server hooks (a migration) leaves the database as those
 * hooks made it, under older code. With a database of its own, stack says so and makes the
 * user choose: the backup taken before those hooks restored with the code (returned: its id), or
 * the code alone (null). A terminal is asked; without one, the choice must be on the command line.
 */
export async function databaseChoice(
  plan: RollbackPlan,
  env: Environment,
  options: RollbackOptions,
  host: string,
  say: (text: string) => void,
  /** The ids of the backups on the server (null: not read). */
  kept: ReadonlySet<string> | null = null,
): Promise<string | null> {
  if (options.restoreDb && !env.database) {
    throw new UsageError(`--restore-db restores a database stack manages, and environment ${env.name} has no database: in the inventory`, {
      hint: 'roll back without it; restore the database with the tools of wherever it lives',
    });
  }
  const found = plan.migrated;
  // A backup pruned since (backups.keep) cannot be restored: said like one never taken.
  const gone = found?.backup && kept && !kept.has(found.backup) ? found.backup : null;
  const m = found && gone ? { ...found, backup: null } : found;
  if (!m) {
    if (options.restoreDb) say(`${host}: no release since ${plan.target} ran server hooks: the database is left as it is`);
    return null;
  }
  const what = `release ${m.release} ran server hooks after ${plan.target} (${m.hooks.join('; ')}): the database may have changed under the code of ${plan.target}`;
  if (!env.database) {
    say(
      pc.yellow(
        `${host}: note: ${what}. The database is not stack's (no database: in the inventory), so it is left as it is; the README's "Rolling back a migration" says how to undo one first.`,
      ),
    );
    return null;
  }
  const backup = m.backup
    ? `backup ${m.backup} was taken right before them`
    : gone
      ? `backup ${gone} was taken right before them but is gone since (backups.keep)`
      : 'no backup was taken before them (before_deploy_backup was off)';
  if (options.keepDb) {
    say(`${host}: ${what}; the database is kept as it is (--keep-db)`);
    return null;
  }
  if (options.restoreDb) {
    if (!m.backup)
      throw new UsageError(`${host}: ${what}, and ${backup}`, {
        hint: 'roll back with --keep-db, or restore an older backup with `stack db restore` (`stack db backups` lists them)',
      });
    return m.backup;
  }
  const hint = `choose --restore-db (restore ${m.backup ?? 'that backup'} with the code: writes since that deploy leave the live database, kept in a backup taken first) or --keep-db (code and configuration only; to undo a migration first, see "Rolling back a migration" in the README)`;
  if (options.dryRun) {
    say(pc.yellow(`${host}: ${what}; ${backup}. ${hint}`));
    return null;
  }
  if (!process.stdin.isTTY || !process.stdout.isTTY) throw new UsageError(`${host}: ${what}; ${backup}`, { hint });
  say(pc.yellow(`${host}: ${what}; ${backup}.`));
  const { select } = await import('@inquirer/prompts');
  const answer = await select({
    message: 'What should happen to the database?',
    choices: [
      ...(m.backup ? [{ name: `restore backup ${m.backup} (writes since that deploy leave the live database)`, value: 'restore' }] : []),
      { name: 'keep it as it is (code and configuration only)', value: 'keep' },
      { name: 'cancel', value: 'cancel' },
    ],
  });
  if (answer === 'cancel') throw new StackError('rollback cancelled; nothing was changed');
  return answer === 'restore' ? m.backup : null;
}
