/** Runs one remote script and turns its `@@` markers into progress, and a failure into an error. */
import type { Readable } from 'node:stream';
import type { Progress } from '../cli/progress.js';
import { RemoteCommandError } from '../errors.js';
import type { ExecResult, RemoteShell } from '../ssh/connect.js';

export interface ScriptOutcome extends ExecResult {
  health?: string;
}

export async function runScript(
  shell: RemoteShell,
  host: string,
  progress: Progress,
  script: { command?: string; stdin: string | Readable; what: string },
): Promise<ScriptOutcome> {
  let buffered = '';
  let failed: string | undefined;
  let health: string | undefined;
  const onStdout = (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (line.startsWith('@@step ')) progress.step(host, line.slice(7));
      else if (line.startsWith('@@fail ')) failed = line.slice(7);
      else if (line.startsWith('@@health ')) health = line.slice(9);
    }
  };
  const r = script.command
    ? await shell.sudo(script.command, script.stdin, { onStdout })
    : await shell.sudoScript(script.stdin as string, { onStdout });
  if (r.code !== 0) {
    progress.end(false);
    throw new RemoteCommandError(host, failed ?? script.what, r.code, r.stderr);
  }
  progress.end(true);
  return { ...r, health };
}
