/**
 * A RemoteShell that runs scripts here under dash, as the current user, in a folder of its own:
 * the scripts the executor sends to servers, run for real without a server or root. Tests give
 * the scripts paths inside that folder (a lock directory, a release tree), so "root" on this
 * shell is whoever runs the test.
 */
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { ExecOptions, ExecResult, RemoteShell } from './connect.js';

export class LocalShell implements RemoteShell {
  readonly label: string;
  execCount = 0;

  constructor(
    /** The folder scripts start in. */
    readonly root: string,
    label = 'local',
  ) {
    this.label = label;
  }

  exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    return this.run(['-c', command], options.stdin, options.onStdout);
  }

  sudoScript(script: string, options: Omit<ExecOptions, 'stdin'> = {}): Promise<ExecResult> {
    // As on a server (src/ssh/connect.ts SCRIPT_READER): the whole script on stdin, read by dash.
    return this.run(['-s'], script, options.onStdout);
  }

  sudo(command: string, stdin: string | Readable, options: Omit<ExecOptions, 'stdin'> = {}): Promise<ExecResult> {
    return this.run(['-c', command], stdin, options.onStdout);
  }

  async close(): Promise<void> {}

  private run(args: string[], stdin: string | Readable | undefined, onStdout?: (chunk: string) => void): Promise<ExecResult> {
    this.execCount++;
    return new Promise((resolve, reject) => {
      const child = spawn('dash', args, { cwd: this.root, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        onStdout?.(chunk);
      });
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
        stderr += chunk;
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      // A script that exits before reading all of its input is not an error here either.
      child.stdin.on('error', () => undefined);
      if (typeof stdin === 'string') child.stdin.end(stdin);
      else if (stdin) stdin.pipe(child.stdin);
      else child.stdin.end();
    });
  }
}
