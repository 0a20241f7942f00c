import { inspect } from 'node:util';

export const REDACTED = '[REDACTED]';

/**
 * A secret value. Every way of turning it into text (template interpolation, JSON, console.log,
 * string concatenation) yields the redacted marker; only `reveal()` gives the value, and it is
 * called only where a file's content or a process's stdin is written.
 */
export class Secret {
  readonly #value: string | undefined;
  constructor(
    readonly name: string,
    value?: string,
  ) {
    this.#value = value;
  }

  get known(): boolean {
    return this.#value !== undefined;
  }

  reveal(): string {
    if (this.#value === undefined) {
      throw new Error(`secret ${this.name} has no value here`);
    }
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }
  toJSON(): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return `Secret(${this.name}: ${REDACTED})`;
  }
}

/**
 * File content made of plain text and secrets. `String(x)` is the redacted form, safe to print or
 * diff; `reveal()` is the content to write to the server.
 */
export class SecretText {
  constructor(readonly parts: ReadonlyArray<string | Secret>) {}

  toString(): string {
    return this.parts.map((p) => (typeof p === 'string' ? p : REDACTED)).join('');
  }
  toJSON(): string {
    return this.toString();
  }
  [inspect.custom](): string {
    return this.toString();
  }
  reveal(): string {
    return this.parts.map((p) => (typeof p === 'string' ? p : p.reveal())).join('');
  }
}

export type FileContent = string | SecretText;

/** The printable (redacted) form of a file's content. */
export function displayContent(content: FileContent): string {
  return String(content);
}
