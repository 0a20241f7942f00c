/** Runs one remote script and turns its `@@` markers into progress, and a failure into an error. */
import type { Readable } from 'node:stream';
import type { Progress } from '../ui/progress.js';
import { ConnectError, RemoteCommandError } from '../errors.js';
import type { ExecResult, RemoteShell } from '../ssh/connect.js';

export interface ScriptOutcome extends ExecResult {
  health?: string;
  /** Set when a failed activation put the previous release back: the health code after that. */
  rolledBack?: string;
}

export async function runScript(
  shell: RemoteShell,
  host: string,
  progress: Progress,
  script: { command?: string; stdin: string | Readable; what: string; redact?: (text: string) => string; hint?: string; healthPath?: string },
): Promise<ScriptOutcome> {
  let buffered = '';
  let failed: string | undefined;
  let health: string | undefined;
  let rolledBack: string | undefined;
  const onStdout = (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('@@step ')) progress.step(host, line.slice(7));
      else if (line.startsWith('@@fail ')) failed = line.slice(7);
      else if (line.startsWith('@@health ')) health = line.slice(9);
      else if (line.startsWith('@@rolledback ')) rolledBack = line.slice(13);
      // Something the user must know even when the step succeeds.
      else if (line.startsWith('@@note ')) progress.line(`${host}: warning: ${line.slice(7)}`);
    }
  };
  let r: ExecResult;
  try {
    r = script.command ? await shell.sudo(script.command, script.stdin, { onStdout }) : await shell.sudoScript(script.stdin as string, { onStdout });
  } catch (err) {
    r = { code: null, stdout: '', stderr: (err as Error).message };
  }
  if (r.code === null) {
    // No exit status: the connection went away while the step ran.
    progress.end(false);
    throw new ConnectError(`${shell.label}: the connection was lost during "${failed ?? script.what}"`, {
      hint: 'a step that had fully reached the server finishes, or rolls back, there by itself; run the command again (the lock left behind is cleared once that step is done)',
    });
  }
  if (r.code !== 0) {
    progress.end(false);
    const redact = script.redact ?? ((t: string) => t);
    const outcome = rollbackOutcome(rolledBack, script.healthPath);
    throw new RemoteCommandError(shell.label, failed ?? script.what, r.code, redact(r.stderr), { outcome, hint: script.hint });
  }
  progress.end(true);
  return { ...r, health, rolledBack };
}

/**
 * What the site is after a failed activation was put back (the `@@rolledback` marker): the
 * previous release again, or, on a first deploy, no release at all and the app's units stopped.
 */
export function rollbackOutcome(marker: string | undefined, healthPath = 'the health check'): string | undefined {
  if (marker === undefined) return undefined;
  const [first, second] = marker.split(' ');
  if (first === 'none') {
    const answer = second === undefined ? '' : `; ${healthPath} now answers ${describeAnswer(second)}`;
    return `there was no previous release to go back to: the app's units are stopped and disabled until a deploy succeeds${answer}`;
  }
  return first!.startsWith('200')
    ? 'rolled back to the previous release, which answers its health check'
    : `rolled back to the previous release, whose health check answered ${first}`;
}

/** An HTTP answer from nginx once the app's site is gone again: who is answering. */
function describeAnswer(code: string): string {
  if (code === '000') return '000 (nothing answers on that port)';
  if (/^50[234]$/.test(code)) return `${code} (nginx has no app behind the site)`;
  return `${code} (from nginx's default site or another app's on this server, not this app)`;
}
