/**
 * The CLI run inside the test's own process: the same entry point (src/main.ts `run`) with its
 * two streams captured, in milliseconds instead of a node start per case. For behaviour that
 * needs no real process (argument handling, inventory errors, exit codes); what does (signals,
 * terminals, the launcher) keeps using `stack` from ./cli.ts.
 */
import { run } from '../../src/main.js';
import type { CliResult } from './cli.js';

export async function stackInProcess(args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const write = { stdout: process.stdout.write, stderr: process.stderr.write };
  const capture = (into: string[]) =>
    ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      done?.();
      return true;
    }) as typeof process.stdout.write;
  process.stdout.write = capture(out);
  process.stderr.write = capture(err);
  try {
    const code = await run(args);
    // picocolors decides on colours once, when it is loaded, from this process's environment
    // (CI=true turns them on); a spawned CLI gets NO_COLOR=1. Compare the text, not the paint.
    return { code, stdout: stripColor(out.join('')), stderr: stripColor(err.join('')) };
  } finally {
    process.stdout.write = write.stdout;
    process.stderr.write = write.stderr;
    process.exitCode = undefined;
  }
}

function stripColor(text: string): string {
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}
