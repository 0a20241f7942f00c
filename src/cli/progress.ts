/**
 * Progress of remote steps as they run. On a terminal each step is one line that turns into a
 * check mark with its duration when the next begins; elsewhere (CI, pipes) plain lines.
 */
import pc from 'picocolors';

export interface Progress {
  step(host: string, text: string): void;
  /** The current step ended, well or not. */
  end(ok: boolean): void;
  line(text: string): void;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  let current: { host: string; text: string; started: number } | null = null;
  const finish = (ok: boolean) => {
    if (!current) return;
    const took = `${((Date.now() - current.started) / 1000).toFixed(1)}s`;
    const mark = ok ? pc.green('✓') : pc.red('✗');
    const line = `${mark} ${current.host}: ${current.text} ${pc.dim(took)}`;
    stream.write(tty ? `\x1b[1A\x1b[2K${line}\n` : ok ? '' : `${line}\n`);
    current = null;
  };
  return {
    step(host, text) {
      finish(true);
      current = { host, text, started: Date.now() };
      stream.write(tty ? `${pc.dim('…')} ${host}: ${text}\n` : `${host}: ${text}\n`);
    },
    end: finish,
    line(text) {
      finish(true);
      stream.write(`${text}\n`);
    },
  };
}
