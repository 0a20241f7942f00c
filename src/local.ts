/**
 * A program run on this machine directly, without a shell (git, ssh -G, a local hook's sh):
 * node's own child_process, since loading a shell library for these few calls cost every
 * command about a tenth of a second at start. Never throws: the caller decides what a failure means.
 */
import { execFile } from 'node:child_process';

export interface LocalResult {
  /** The exit code; null when the program never ran to an exit of its own (not installed, killed). */
  code: number | null;
  stdout: string;
  /** What it said on stderr, and why it did not run when it did not. */
  stderr: string;
}

export function runLocal(file: string, args: readonly string[], o: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<LocalResult> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { cwd: o.cwd, env: o.env, encoding: 'utf8', maxBuffer: Number.POSITIVE_INFINITY }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      const ran = !err || typeof code === 'number';
      resolve({ code: err ? (ran ? (code as number) : null) : 0, stdout, stderr: ran ? stderr : `${stderr}${err!.message}` });
    });
    // Nothing here reads the user's terminal.
    child.stdin?.end();
  });
}
