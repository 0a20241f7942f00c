/**
 * Progress of remote steps as they run. On a terminal each step is one line that turns into a
 * check mark with its duration when the next begins; elsewhere (CI, pipes) plain lines. With
 * `-q` a step shows only when it fails; with `-v` every finished step shows its duration, on a
 * pipe too.
 *
 * Hosts run in parallel: each gets its own scope (`scope()`), which has one current step of its
 * own. All scopes write to one stream, so a step's line is rewritten in place only while it is
 * still the last line written; once another host has written below it, its end gets a line of
 * its own instead of overwriting someone else's.
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
  /** A progress of its own for one of several hosts running at once, on the same stream. */
  scope(): Progress;
}

/** Where progress goes: stderr, or anything that takes text (tests, the output's redaction). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
}

interface Step {
  host: string;
  text: string;
  started: number;
}

export function createProgress(stream: ProgressStream = process.stderr, level: Level = 'normal'): Progress {
  const tty = stream.isTTY === true;
  const quiet = level === 'quiet';
  // The step whose line is the last one on the stream: only that one may be rewritten.
  let lastLine: Step | null = null;
  const write = (text: string, owner: Step | null) => {
    stream.write(text);
    lastLine = owner;
  };
  const scoped = (): Progress => {
    let current: Step | null = null;
    const finish = (ok: boolean) => {
      if (!current) return;
      const took = `${((Date.now() - current.started) / 1000).toFixed(1)}s`;
      const mark = ok ? pc.green('✓') : pc.red('✗');
      const line = `${mark} ${current.host}: ${current.text} ${pc.dim(took)}`;
      // Quiet never wrote the step's own line, so there is nothing to rewrite: a failure gets a line of its own.
      if (quiet) {
        if (!ok) write(`${line}\n`, null);
      } else if (tty) write(lastLine === current ? `\x1b[1A\x1b[2K${line}\n` : `${line}\n`, null);
      else if (!ok || level === 'verbose') write(`${line}\n`, null);
      current = null;
    };
    return {
      step(host, text) {
        finish(true);
        current = { host, text, started: Date.now() };
        if (!quiet) write(tty ? `${pc.dim('…')} ${host}: ${text}\n` : `${host}: ${text}\n`, current);
      },
      end: finish,
      interrupt() {
        if (current && lastLine === current) lastLine = null;
      },
      line(text) {
        finish(true);
        write(`${text}\n`, null);
      },
      scope: scoped,
    };
  };
  return scoped();
}
