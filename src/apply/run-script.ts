/** Runs one remote script and turns its `@@` markers into progress, and a failure into an error. */
import type { Readable } from 'node:stream';
import type { Progress } from '../cli/progress.js';
import { RemoteCommandError } from '../errors.js';
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
  script: { command?: string; stdin: string | Readable; what: string; redact?: (text: string) => string },
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
    }
  };
  const r = script.command
    ? await shell.sudo(script.command, script.stdin, { onStdout })
    : await shell.sudoScript(script.stdin as string, { onStdout });
  if (r.code !== 0) {
    progress.end(false);
    const redact = script.redact ?? ((t: string) => t);
    const outcome =
      rolledBack === undefined ? undefined : rolledBack.startsWith('200') ? 'rolled back to the previous release, which answers its health check' : `rolled back to the previous release, whose health check answered ${rolledBack}`;
    throw new RemoteCommandError(host, failed ?? script.what, r.code, redact(r.stderr), { outcome });
  }
  progress.end(true);
  return { ...r, health, rolledBack };
}
