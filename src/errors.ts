/**
 * Every failure a user can cause or meet is a StackError. `main` turns it into one line on
 * stderr and an exit code; only `--debug` adds a stack trace. Errors carry data, not just text,
 * so tests and callers can inspect what went wrong.
 */
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  changesPending: 3,
  interrupted: 130,
} as const;

export class StackError extends Error {
  readonly exitCode: number = EXIT.failure;
  /** What the user should do next, printed under the message. */
  readonly hint?: string;
  constructor(message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.hint = options?.hint;
  }
}

export class UsageError extends StackError {
  override readonly exitCode = EXIT.usage;
}

/** One problem in an inventory, located in the user's file. */
export interface InventoryProblem {
  file: string;
  line: number;
  column: number;
  /** Dotted path of the field, e.g. `environments.prod.domains[1]`. Empty for syntax errors. */
  field: string;
  message: string;
}

export class InventoryError extends StackError {
  override readonly exitCode = EXIT.usage;
  constructor(readonly problems: InventoryProblem[]) {
    super(problems.map(formatProblem).join('\n'));
  }
}

export function formatProblem(p: InventoryProblem): string {
  const where = `${p.file}:${p.line}:${p.column}`;
  return p.field ? `${where}: ${p.field}: ${p.message}` : `${where}: ${p.message}`;
}

export class TemplateError extends StackError {
  override readonly exitCode = EXIT.usage;
  constructor(
    readonly templateFile: string,
    detail: string,
  ) {
    super(`${templateFile}: ${detail}`, {
      hint: 'fix the template, or delete the override to go back to the built-in one',
    });
  }
}

/** A rendered file that the real tool (nginx -t, systemd-analyze verify) rejected. */
export class CheckError extends StackError {
  constructor(
    readonly tool: string,
    readonly output: string,
  ) {
    super(`${tool} rejected the rendered configuration:\n${output.trim()}`);
  }
}

export class InterruptedError extends StackError {
  override readonly exitCode = EXIT.interrupted;
  constructor() {
    super('interrupted');
  }
}

/** The server could not be reached or would not let us in. */
export class ConnectError extends StackError {}

/** The server's host key is unknown or differs from the pinned one. */
export class HostKeyError extends StackError {
  constructor(
    message: string,
    readonly fingerprint: string,
    readonly presentedKey: string,
    options?: { hint?: string },
  ) {
    super(message, options);
  }
}

/** A command on the server failed; carries what it said, already redacted. */
export class RemoteCommandError extends StackError {
  constructor(
    readonly host: string,
    readonly step: string,
    readonly code: number | null,
    readonly stderr: string,
    options?: { hint?: string; outcome?: string },
  ) {
    const outcome = options?.outcome ? `; ${options.outcome}` : '';
    super(`${host}: ${step} failed${code === null ? '' : ` (exit ${code})`}${outcome}${stderr.trim() ? `:\n${indent(stderr.trim())}` : ''}`, options);
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}

/** Another deploy holds the server's deploy lock. */
export class LockHeldError extends StackError {}
