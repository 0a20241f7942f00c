/**
 * `stack db backup|backups|restore|pull|psql ENV`: the app's PostgreSQL database, as `database:`
 * in the inventory provisions it. Backups and restores take the deploy lock (a deploy's backup
 * and a restore must not cross) and are recorded in the audit log; the work is the server's
 * (src/remote/sh/db.sh), the same program the backup timer runs.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import pc from 'picocolors';
import { appUnits, dbBackupScript, dbRestoreScript } from '../apply/database.js';
import { hostHealthCheck } from '../apply/deploy-host.js';
import { topologyOf } from '../views/topology.js';
import { releaseLockScript, runWithLock } from '../apply/lock.js';
import { runScript } from '../apply/run-script.js';
import { StackError, UsageError } from '../errors.js';
import { auditFile } from '../facts/audit.js';
import { type BackupFacts, backupsFact, judgeBackups } from '../facts/backups.js';
import { ask } from '../facts/fact.js';
import { lockRequest } from '../facts/lock.js';
import type { Environment, ResolvedDatabase } from '../inventory/resolve.js';
import { sslMode } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { backupId } from '../plan/database.js';
import { shCommand } from '../remote/quote.js';
import type { RunContext } from '../remote/script.js';
import type { RemoteShell } from '../ssh/connect.js';
import { connectHost } from '../ssh/connect.js';
import type { BackupsResult } from '../ui/results.js';
import { formatBytes } from '../ui/text.js';
import { type Layout, layoutFor } from '../views/layout.js';
import { connectTimeoutMs, selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import type { Progress } from '../ui/progress.js';
import type { GlobalOptions } from './options.js';
import { pickHost } from './ssh.js';

/** The environment's database; a clear refusal when the inventory has none. */
function databaseOf(env: Environment): ResolvedDatabase {
  if (!env.database) {
    throw new UsageError(`environment ${env.name} has no database: in the inventory, so stack manages no database there`, {
      hint: 'add `database: { engine: postgresql }` and run `stack setup`; a database stack does not run (a managed service) is backed up by its provider',
    });
  }
  return env.database;
}

const who = () => `${userInfo().username}@${hostname()}`;

/**
 * Runs `fn` on one host with the deploy lock held and the backups as read with it; the lock is
 * given back by the script `fn` runs, or here when it stops before.
 */
async function lockedOnHost<T>(
  shell: RemoteShell,
  host: Host,
  env: Environment,
  o: { command: string; progress: Progress; wait?: boolean },
  fn: (a: { layout: Layout; backups: BackupFacts; ctx: RunContext }) => Promise<T>,
): Promise<T> {
  const layout = layoutFor(env.app, env.gateway);
  const token = randomUUID();
  const lock = lockRequest(layout.app, { dryRun: false, by: who(), command: o.command, token, since: new Date() });
  const round = await runWithLock(shell, lock, backupsFact(layout), { progress: o.progress, host: host.address, env: env.name, wait: o.wait });
  let lockHeld = round.acquired;
  try {
    const ctx = { layout, lock: { dir: lock.dir, token }, audit: { file: auditFile(layout.app), who: who(), command: o.command } };
    const value = await fn({ layout, backups: round.value, ctx });
    lockHeld = false;
    return value;
  } finally {
    if (lockHeld) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
  }
}

/** Runs `fn` on each db host under its deploy lock (lockedOnHost). */
async function withBackupLock(
  envName: string | undefined,
  command: string,
  options: { wait?: boolean },
  globals: GlobalOptions,
  fn: (a: {
    shell: RemoteShell;
    host: Host;
    env: Environment;
    db: ResolvedDatabase;
    layout: Layout;
    backups: BackupFacts;
    ctx: RunContext;
    progress: Progress;
  }) => Promise<void>,
  oneAtATime = false,
): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const db = databaseOf(env);
  await forEachHost(
    inventory,
    env,
    globals,
    (shell, host, progress) =>
      lockedOnHost(shell, host, env, { command: `${command} ${env.name}`, progress, wait: options.wait }, (locked) =>
        fn({ shell, host, env, db, progress, ...locked }),
      ),
    { what: command, oneAtATime, role: 'db' },
  );
}

/**
 * A deploy's backup on the db host, taken right before the server hooks (a migration) run on
 * another host: with the deploy lock of the db host, like `stack db backup`, checked by reading
 * its table of contents. Returns its id.
 */
export async function backupBeforeHooks(
  baseDir: string,
  env: Environment,
  host: Host,
  globals: GlobalOptions,
  progress: Progress,
  askSudoPassword?: () => Promise<string>,
): Promise<string> {
  const db = databaseOf(env);
  const shell = await connectHost(host, { baseDir, timeoutMs: connectTimeoutMs(globals), askSudoPassword });
  try {
    return await lockedOnHost(shell, host, env, { command: `deploy ${env.name}: backup before the hooks`, progress }, async ({ layout, ctx }) => {
      const id = backupId(new Date(), 'deploy');
      const r = await runScript(shell, host.address, progress, {
        stdin: dbBackupScript(ctx, { dir: layout.backup_dir, db: db.name, keep: db.backups.keep, id }, 'deploy'),
        what: 'back up the database',
      });
      return backupMarker(r.stdout)?.id ?? id;
    });
  } finally {
    await shell.close();
  }
}

/** The `@@backup ID BYTES TABLES` line of a script's output. */
function backupMarker(stdout: string): { id: string; bytes: number; tables: string } | null {
  const m = /^@@backup (\S+) (\d+) (\S+)$/m.exec(stdout);
  return m ? { id: m[1]!, bytes: Number(m[2]), tables: m[3]! } : null;
}

export async function runDbBackup(envName: string | undefined, options: { wait?: boolean }, globals: GlobalOptions): Promise<void> {
  await withBackupLock(envName, 'db backup', options, globals, async ({ shell, host, db, layout, ctx, progress }) => {
    const started = Date.now();
    const id = backupId(new Date(), 'manual');
    const r = await runScript(shell, host.address, progress, {
      stdin: dbBackupScript(ctx, { dir: layout.backup_dir, db: db.name, keep: db.backups.keep, id }),
      what: 'back up the database',
    });
    const b = backupMarker(r.stdout);
    progress.line(
      `${pc.green('backed up:')} ${host.address} ${db.name} as ${b?.id ?? id} (${b ? formatBytes(b.bytes) : '?'}, ${b?.tables ?? '?'} tables, checked by restoring it into a scratch database) in ${((Date.now() - started) / 1000).toFixed(1)}s`,
    );
    process.stdout.write(`${b?.id ?? id}\n`);
  });
}

export async function runDbBackups(envName: string | undefined, globals: GlobalOptions): Promise<BackupsResult> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  databaseOf(env);
  const layout = layoutFor(env.app, env.gateway);
  const result: BackupsResult = { kind: 'backups', env: env.name, hosts: [] };
  result.hosts = await forEachHost(
    inventory,
    env,
    globals,
    async (shell, host) => {
      const facts = await ask(shell, backupsFact(layout));
      const part = { host: host.address, dir: layout.backup_dir, backups: facts.backups, verdict: judgeBackups(facts, new Date()), timer: facts.timer };
      globals.output.host({ kind: 'backups', ...part });
      return part;
    },
    { what: 'db backups', role: 'db' },
  );
  if (result.hosts.some((h) => !h.verdict.ok)) result.exitCode = 1;
  return result;
}

export async function runDbRestore(envName: string | undefined, id: string, options: { yes?: boolean; wait?: boolean }, globals: GlobalOptions): Promise<void> {
  await withBackupLock(
    envName,
    `db restore ${id}`,
    options,
    globals,
    async ({ shell, host, env, db, layout, backups, ctx, progress }) => {
      if (!backups.backups.some((b) => b.id === id)) {
        throw new UsageError(`${host.address}: there is no backup ${id} in ${layout.backup_dir}`, { hint: `\`stack db backups ${env.name}\` lists them` });
      }
      const question = `Restore ${id} into ${db.name} on ${host.address}? The app stops while it restores; the database as it is now is backed up first, and kept as ${db.name}__previous until the next backup.`;
      if (!options.yes) {
        if (!process.stdin.isTTY)
          throw new UsageError(`restoring ${id} replaces the live database on ${host.address}`, { hint: 'run it on a terminal to confirm, or pass --yes' });
        const { confirm } = await import('@inquirer/prompts');
        if (!(await confirm({ message: question, default: false }))) throw new StackError('not restored; nothing was changed');
      }
      // A db host of its own serves nothing and runs none of the app's units: the app hosts keep
      // running, and their connections to the database it replaces end at the swap.
      const topology = topologyOf(env, host);
      const health = hostHealthCheck(env, sslMode(env.ssl) !== 'none', layout, topology);
      const safetyId = backupId(new Date(), 'restore');
      const started = Date.now();
      const r = await runScript(shell, host.address, progress, {
        stdin: dbRestoreScript(ctx, health, {
          dir: layout.backup_dir,
          db: db.name,
          keep: db.backups.keep,
          role: layout.app,
          locale: db.locale,
          id,
          safetyId,
          units: topology.app ? appUnits(layout) : [],
        }),
        what: `restore ${id}`,
        healthPath: health ? `GET ${health.path}` : undefined,
      });
      const tables = /^@@restored \S+ (\S+)$/m.exec(r.stdout)?.[1] ?? '?';
      progress.line(
        `${pc.green('restored:')} ${host.address} ${db.name} from ${id} (${tables} tables) in ${((Date.now() - started) / 1000).toFixed(1)}s; health ${r.health ?? '?'}. Before it: backup ${backupMarker(r.stdout)?.id ?? safetyId}, and ${db.name}__previous until the next backup`,
      );
    },
    !options.yes,
  );
}

export async function runDbPull(
  envName: string | undefined,
  file: string | undefined,
  options: { host?: string; backup?: string; force?: boolean },
  globals: GlobalOptions,
): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const db = databaseOf(env);
  const host = pickHost(env, options.host, 'db');
  const layout = layoutFor(env.app, env.gateway);
  const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
  try {
    const facts = await ask(shell, backupsFact(layout));
    const chosen = options.backup ? facts.backups.find((b) => b.id === options.backup) : facts.backups[0];
    if (!chosen) {
      throw new UsageError(options.backup ? `${host.address}: there is no backup ${options.backup}` : `${host.address}: there is no backup of ${db.name} yet`, {
        hint: options.backup ? `\`stack db backups ${env.name}\` lists them` : `take one with \`stack db backup ${env.name}\``,
      });
    }
    const target = path.resolve(file ?? `${env.app.name}-${env.name}-${chosen.id}.dump`);
    // Every row of the app: readable by the user alone, and never written over a file of theirs.
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(target, options.force ? 'w' : 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST')
        throw new UsageError(`${target} exists`, { hint: 'name another file, or pass --force to replace it' });
      throw err;
    }
    await handle.chmod(0o600);
    const out = createWriteStream('', { fd: handle.fd, autoClose: true });
    const errors = new PassThrough();
    const said: Buffer[] = [];
    errors.on('data', (c: Buffer) => said.push(c));
    const status = await shell.attach(shCommand('cat', '--', `${layout.backup_dir}/${chosen.id}.dump`), {
      pty: false,
      stdin: Readable.from([]),
      stdout: out,
      stderr: errors,
    });
    await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
    const size = (await stat(target)).size;
    if (status !== 0 || size !== chosen.bytes) {
      await rm(target, { force: true });
      throw new StackError(
        `${host.address}: the download of ${chosen.id} failed (${size} of ${chosen.bytes} bytes)${said.length ? `: ${Buffer.concat(said).toString().trim()}` : ''}`,
      );
    }
    globals.output.progress.line(`${pc.green('pulled:')} ${chosen.id} (${formatBytes(size)}, made by ${chosen.kind}) to ${target} (0600)`);
    globals.output.progress.line(pc.dim(`  restore it locally with: pg_restore --no-owner -d DATABASE ${path.basename(target)}`));
  } finally {
    await shell.close();
  }
}

export async function runDbPsql(envName: string | undefined, args: string[], options: { host?: string }, globals: GlobalOptions): Promise<number> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const db = databaseOf(env);
  const host = pickHost(env, options.host, 'db');
  const layout = layoutFor(env.app, env.gateway);
  const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
  const pty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const raw = pty && process.stdin.isTTY;
  try {
    if (raw) process.stdin.setRawMode(true);
    // As the app's own user (peer authentication): psql can do what the app can, no more.
    const command = shCommand('env', '-C', '/', 'PSQL_HISTORY=/dev/null', 'runuser', '-u', layout.app, '--', 'psql', '-X', '-d', db.name, ...args);
    const status = await shell.attach(command, {
      pty,
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      terminal: pty ? process.stdout : undefined,
    });
    if (status === null) throw new UsageError(`${shell.label}: the connection was lost while psql ran`);
    return status;
  } finally {
    if (raw) process.stdin.setRawMode(false);
    process.stdin.pause();
    await shell.close();
  }
}
