/**
 * Progress of remote steps as they run. On a terminal each step is one line that turns into a
 * check mark with its duration when the next begins; elsewhere (CI, pipes) plain lines. With
 * `-q` a step shows only when it fails; with `-v` every finished step shows its duration, on a
 * pipe too.
 */
import pc from 'picocolors';
import type { Level } from './output.js';

export interface Progress {
  step(host: string, text: string): void;
  /** The current step ended, well or not. */
  end(ok: boolean): void;
  line(text: string): void;
  /** Something else is about to write (a prompt): the current step's line may no longer be rewritten. */
  interrupt(): void;
}

/** Where progress goes: stderr, or anything that takes text (tests, the output's redaction). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

export function createProgress(stream: ProgressStream = process.stderr, level: Level = 'normal'): Progress {
  const tty = stream.isTTY === true;
  const quiet = level === 'quiet';
  let current: { host: string; text: string; started: number; rewritable: boolean } | null = null;
  const finish = (ok: boolean) => {
    if (!current) return;
    const took = `${((Date.now() - current.started) / 1000).toFixed(1)}s`;
    const mark = ok ? pc.green('✓') : pc.red('✗');
    const line = `${mark} ${current.host}: ${current.text} ${pc.dim(took)}`;
    // Quiet never wrote the step's own line, so there is nothing to rewrite: a failure gets a line of its own.
    if (quiet) {
      if (!ok) stream.write(`${line}\n`);
    } else if (tty) stream.write(current.rewritable ? `\x1b[1A\x1b[2K${line}\n` : `${line}\n`);
    else if (!ok || level === 'verbose') stream.write(`${line}\n`);
    current = null;
  };
  return {
    step(host, text) {
      finish(true);
      current = { host, text, started: Date.now(), rewritable: !quiet };
      if (!quiet) stream.write(tty ? `${pc.dim('…')} ${host}: ${text}\n` : `${host}: ${text}\n`);
    },
    end: finish,
    interrupt() {
      if (current) current.rewritable = false;
    },
    line(text) {
      finish(true);
      stream.write(`${text}\n`);
    },
  };
}
