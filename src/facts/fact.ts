/**
 * A fact is one question to a server in two pure halves: the lines that ask it (calls into the
 * facts library, src/remote/sh/facts.sh, with the plan's data quoted) and a parser of the
 * records they print. Several facts asked together share one round trip: each parser picks its
 * own record kinds out of the common output.
 */
import { shellLibrary } from '../remote/library.js';
import { StackError } from '../errors.js';
import type { RemoteShell } from '../ssh/connect.js';

export interface Fact<T> {
  /** What is asked, as an error names it: "list releases". */
  what: string;
  lines: string[];
  parse(output: string): T;
}

/**
 * The script for facts asked in one round trip: the library, then each fact's calls. The
 * virtualenv's functions come along: the facts name a release's virtualenv as the release script
 * will (fact_venv).
 */
export function factScript(...facts: Pick<Fact<unknown>, 'lines'>[]): string {
  return [shellLibrary('facts.sh'), shellLibrary('venv.sh'), 'set -u', ...facts.flatMap((f) => f.lines), 'exit 0', ''].join('\n');
}

/** Asks one fact as root over `shell`; a failing script is an error naming the host and the question. */
export async function ask<T>(shell: RemoteShell, fact: Fact<T>): Promise<T> {
  const r = await shell.sudoScript(factScript(fact));
  if (r.code !== 0) throw new StackError(`${shell.label}: could not ${fact.what}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return fact.parse(r.stdout);
}

/** Every record of one kind in a fact's output, its fields split on tabs. */
export function records(output: string, kind: string): string[][] {
  const out: string[][] = [];
  for (const line of output.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab > 0 && line.slice(0, tab) === kind) out.push(line.slice(tab + 1).split('\t'));
  }
  return out;
}

export function fromBase64(text: string | undefined): string {
  return Buffer.from(text ?? '', 'base64').toString('utf8');
}

/** Two facts asked in one round trip (the second may be absent: its value is then null). */
export function both<A, B>(a: Fact<A>, b: Fact<B> | null): Fact<[A, B | null]> {
  return { what: a.what, lines: [...a.lines, ...(b?.lines ?? [])], parse: (output) => [a.parse(output), b ? b.parse(output) : null] };
}
