/** Runs the built CLI as a user would: a real process, its exit code and its two streams. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const STACK = path.join(ROOT, 'bin/stack.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function stack(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [STACK, ...args], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, NO_COLOR: '1', ...options.env },
    input: options.input ?? '',
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface Started {
  child: ChildProcess;
  startedAt: number;
  done: Promise<Run>;
  stderr: () => string;
  onStderrLine: (fn: (line: string) => void) => void;
}

/**
 * The built CLI as an asynchronous process, for tests that must keep doing something (a load
 * loop, a kill) while it runs: `stack()` blocks the whole test process. Killed after limitMs.
 */
export function startStack(args: string[], options: { cwd: string; limitMs?: number }): Started {
  const t0 = Date.now();
  const child = spawn(process.execPath, [STACK, ...args], { cwd: options.cwd, env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let partial = '';
  const listeners: ((line: string) => void)[] = [];
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => {
    const text = d.toString();
    stderr += text;
    partial += text;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      for (const fn of listeners) fn(line);
    }
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), options.limitMs ?? 120_000);
  const done = new Promise<Run>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
  return { child, startedAt: t0, done, stderr: () => stderr, onStderrLine: (fn) => listeners.push(fn) };
}
