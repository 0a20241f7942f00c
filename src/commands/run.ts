/**
 * `stack run ENV [--host H] [-t] -- CMD ARGS...`: a command in the live release, as the app's
 * user, with the app's environment and virtualenv, in a transient systemd service with the
 * limits of the app's own unit. systemd reads the environment file itself, so no secret is ever
 * on a command line (the server's process list) or passes through stack.
 */
import { randomBytes } from 'node:crypto';
import { UsageError } from '../errors.js';
import { shellLibrary } from '../remote/library.js';
import { shCommand } from '../remote/quote.js';
import { connectHost } from '../ssh/connect.js';
import { type Layout, layoutFor } from '../views/layout.js';
import { connectTimeoutMs, selectEnvironment } from './environment.js';
import type { GlobalOptions } from './options.js';
import { pickHost } from './ssh.js';

export interface RunOptions {
  host?: string;
  /** A pseudo-terminal: interactive programs (a shell, createsuperuser). */
  tty?: boolean;
}

/**
 * The server's command line for CMD: the library function (src/remote/sh/run.sh) and its call,
 * as `sh -c`. UNIT names the transient service, for an interrupt to reach it.
 */
export function runCommandLine(layout: Layout, command: string[], o: { pty: boolean; unit: string }): string {
  const script = `${shellLibrary('run.sh')}\nrun_in_release "$@"\n`;
  return shCommand(
    'sh',
    '-c',
    script,
    'stack-run',
    o.unit,
    o.pty ? '--pty' : '--pipe',
    layout.current,
    layout.app,
    layout.env_file,
    layout.shared,
    layout.media_dir,
    ...command,
  );
}

export async function runRun(envName: string | undefined, command: string[], options: RunOptions, globals: GlobalOptions): Promise<number> {
  if (command.length === 0) throw new UsageError('stack run needs a command after --', { hint: 'e.g. stack run prod -- python manage.py showmigrations' });
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const host = pickHost(env, options.host, 'app', true);
  const layout = layoutFor(env.app, env.gateway);
  const pty = options.tty === true || process.stdin.isTTY === true;
  const unit = `${layout.app}-run-${randomBytes(4).toString('hex')}`;
  const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
  const stdin = process.stdin;
  const raw = pty && stdin.isTTY;
  let interrupts = 0;
  // Without a terminal of its own on the server, Ctrl-C is passed on as a signal to the
  // command's service; a second one ends it at once. With -t, Ctrl-C is a key like any other,
  // and the remote terminal turns it into SIGINT.
  const onInterrupt = () => {
    interrupts++;
    void shell.sudo(shCommand('systemctl', 'kill', `--signal=${interrupts > 1 ? 'SIGKILL' : 'SIGINT'}`, `${unit}.service`), '').catch(() => undefined);
  };
  try {
    if (raw) stdin.setRawMode(true);
    else process.on('SIGINT', onInterrupt);
    const status = await shell.attach(runCommandLine(layout, command, { pty, unit }), {
      pty,
      stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      terminal: pty && process.stdout.isTTY ? process.stdout : undefined,
    });
    if (status === null) throw new UsageError(`${shell.label}: the connection was lost while the command ran`);
    return status;
  } finally {
    if (raw) stdin.setRawMode(false);
    process.off('SIGINT', onInterrupt);
    stdin.pause();
    await shell.close();
  }
}
