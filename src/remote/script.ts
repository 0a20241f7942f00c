/**
 * A root script as text: the frame (src/remote/sh/frame.sh), the shell library, the script's
 * audit record and lock as data lines, then the lines of its plan. Every script that runs as
 * root on a server is built here, so they all start, end and give the lock back the same way.
 */
import type { Layout } from '../views/layout.js';
import { shellLibrary } from './library.js';
import { shCommand, shQuote as q } from './quote.js';

/**
 * The fixed shell every root script starts with: the library (step, fail, audit, the undo log,
 * reload_nginx, health), the lock as seen from a script, and the functions of provisioning,
 * releases, activation and certificates. Real files, shellchecked and run under dash by the
 * unit tests. Every script carries all of it: a few dozen KiB, and one text to reason about.
 */
export const REMOTE_LIBRARY = ['lib.sh', 'lock.sh', 'provision.sh', 'venv.sh', 'release.sh', 'activate.sh', 'certs.sh', 'maintenance.sh', 'db.sh']
  .map(shellLibrary)
  .join('\n');

/** The lock's functions alone: the script that only gives the lock back needs no more. */
export const LOCK_LIBRARY = shellLibrary('lock.sh');

const FRAME = shellLibrary('frame.sh');
const FRAME_MARK = '  : STACK_SCRIPT\n';

/**
 * A root script: `lines` inside the frame of frame.sh (one function called on the last line).
 * No shell of its own: the frame is a file, the lines are the library and the plan's calls.
 */
export function framed(lines: string[]): string {
  const at = FRAME.indexOf(FRAME_MARK);
  if (at < 0) throw new Error(`src/remote/sh/frame.sh has lost its mark ${FRAME_MARK.trim()}`);
  return `${FRAME.slice(0, at)}${lines.join('\n')}\n${FRAME.slice(at + FRAME_MARK.length)}`;
}

/** Who runs what, for the lock and the audit log. */
export interface RunContext {
  layout: Layout;
  /** Our deploy lock, taken by the facts script; scripts check it is still ours. */
  lock: { dir: string; token: string } | null;
  audit: { file: string; who: string; command: string } | null;
}

/**
 * Wraps a script body: framed, so it runs only if the whole text arrived. The library comes
 * first; then the script's own lines: its audit record and its lock as data, the EXIT trap
 * (on_exit: the temporary folder goes, the lock as `releaseLock` says), and the body.
 * `releaseLock`: true releases the deploy lock when the script ends; 'on-failure' only when it
 * fails (a step whose client may be gone, like an upload cut off: nobody else would release it).
 */
export function wrap(ctx: RunContext, body: string[], options: { releaseLock: boolean | 'on-failure'; release?: string }): string {
  const lines = [REMOTE_LIBRARY, 'begin_script'];
  if (ctx.audit) {
    const { file, who, command } = ctx.audit;
    lines.push(
      assign({
        AUDIT_FILE: file,
        AUDIT_WHO: JSON.stringify(who),
        AUDIT_COMMAND: JSON.stringify(command),
        AUDIT_RELEASE: JSON.stringify(options.release ?? null),
      }),
    );
  } else {
    lines.push(assign({ AUDIT_FILE: '' }));
  }
  if (ctx.lock) {
    const release = options.releaseLock === true ? 'yes' : options.releaseLock === 'on-failure' ? 'on-failure' : 'no';
    lines.push(assign({ LOCK_TOKEN_FILE: `${ctx.lock.dir}/token`, LOCK_TOKEN: ctx.lock.token, LOCK_RELEASE: release }), 'hold_lock');
  } else {
    lines.push(assign({ LOCK_TOKEN_FILE: '' }));
  }
  // The script's own lines start with this trap (nothing in the library sets it).
  lines.push('trap on_exit EXIT', ...body);
  return framed(lines);
}

/** One line setting shell variables to the plan's values. */
export function assign(values: Record<string, string>): string {
  return Object.entries(values)
    .map(([k, v]) => `${k}=${q(v)}`)
    .join(' ');
}

/** A call of a library function with the plan's values as its arguments. */
export function call(fn: string, ...args: string[]): string {
  return shCommand(fn, ...args);
}

/** The step line: what the client shows as the current step. */
export function step(text: string): string {
  return `step ${q(text)}`;
}

/**
 * A command reading `content` as base64 from a heredoc, its lines, and the end tag (which has a
 * `_`, so base64 never contains it).
 */
export function heredoc(command: string, tag: string, content: string): string[] {
  return [command, ...chunk(Buffer.from(content, 'utf8').toString('base64'), 76), tag];
}

function chunk(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out.length > 0 ? out : [''];
}
