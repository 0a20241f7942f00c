/**
 * Several hosts at once: a bounded pool that runs one job per host, the batches of a rolling
 * deploy, and the one error that tells what failed where. Nothing here connects anywhere; the
 * jobs do. A failing host never stops the others already running: each host's own run leaves
 * it serving what it served before, and the caller decides what a failure means for the rest.
 */
import { StackError } from '../errors.js';
import type { Host } from '../inventory/schema.js';

export type Outcome<T> = { host: Host; ok: true; value: T } | { host: Host; ok: false; error: unknown };

/**
 * Runs `job` for every host, at most `parallel` at a time, and returns each host's outcome in
 * the hosts' order (not the order they finished in), so output and exit codes are stable.
 */
export async function eachHost<T>(hosts: readonly Host[], parallel: number, job: (host: Host, index: number) => Promise<T>): Promise<Outcome<T>[]> {
  const outcomes: Outcome<T>[] = new Array(hosts.length);
  let next = 0;
  const worker = async () => {
    while (next < hosts.length) {
      const index = next++;
      const host = hosts[index]!;
      try {
        outcomes[index] = { host, ok: true, value: await job(host, index) };
      } catch (error) {
        outcomes[index] = { host, ok: false, error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, hosts.length)) }, worker));
  return outcomes;
}

/**
 * The values of every host, or the failure: one host's own error as it was (a single host
 * behaves as it always did), several hosts' errors together in one HostsError.
 */
export function settle<T>(outcomes: readonly Outcome<T>[], what: string): T[] {
  const failed = outcomes.filter((o): o is Outcome<T> & { ok: false } => !o.ok);
  if (failed.length === 0) return outcomes.map((o) => (o as { value: T }).value);
  if (outcomes.length === 1) throw failed[0]!.error;
  throw new HostsError(what, outcomes.length, failed);
}

/** Some hosts of several failed; each one's message (and hint) is kept, under the host's name. */
export class HostsError extends StackError {
  override readonly exitCode: number;
  readonly failures: { host: Host; error: unknown }[];
  constructor(what: string, total: number, failures: { host: Host; error: unknown }[], hint?: string) {
    const lines = failures.map(({ host, error }) => {
      const e = error as { message?: string; hint?: string };
      const message = (e?.message ?? String(error)).replace(/\n/g, '\n    ');
      return `  ${host.address}: ${message}${e?.hint ? `\n    hint: ${e.hint}` : ''}`;
    });
    super(`${what} failed on ${failures.length} of ${total} hosts:\n${lines.join('\n')}`, { hint });
    this.failures = failures;
    const codes = new Set(failures.map(({ error }) => (error instanceof StackError ? error.exitCode : 1)));
    this.exitCode = codes.size === 1 ? [...codes][0]! : 1;
  }
}

/**
 * The hosts of a rolling deploy in batches: `batch` hosts each (a number, or a share of all the
 * hosts such as "25%", rounded up so that every batch has at least one), in the inventory's order.
 * Without `rolling:` all hosts are one batch.
 */
export function batches<T>(hosts: readonly T[], batch: number | string | null): T[][] {
  if (hosts.length === 0) return [];
  const size = batch === null ? hosts.length : typeof batch === 'number' ? batch : Math.max(1, Math.ceil((hosts.length * Number.parseInt(batch, 10)) / 100));
  const out: T[][] = [];
  for (let i = 0; i < hosts.length; i += size) out.push(hosts.slice(i, i + size));
  return out;
}
