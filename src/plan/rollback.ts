/**
 * A rollback, planned from the releases a host recorded like a deploy is planned from its facts:
 * which release goes live (the previous complete one unless one is named) and the steps that put
 * it back. Refusals name the host and what to do instead. Pure.
 */
import { UsageError } from '../errors.js';
import { previousRelease, type ReleaseEntry } from '../facts/releases.js';
import type { Step } from './steps.js';

export interface RollbackPlan {
  target: string;
  live: string | null;
  steps: Step[];
}

export function planRollback(releases: ReleaseEntry[], wanted: string | undefined, o: { host: string; env: string }): RollbackPlan {
  const live = releases.find((r) => r.live)?.id ?? null;
  const chosen = wanted ? releases.find((r) => r.id === wanted) : previousRelease(releases);
  if (!chosen) {
    throw new UsageError(wanted ? `${o.host}: there is no release ${wanted}` : `${o.host}: there is no earlier release to roll back to`, {
      hint: `\`stack releases ${o.env}\` lists them`,
    });
  }
  if (chosen.live) throw new UsageError(`${o.host}: ${chosen.id} is already live`);
  if (!chosen.manifest || !chosen.hasConfig)
    throw new UsageError(`${o.host}: release ${chosen.id} is incomplete or has no recorded configuration; pick another`);
  return { target: chosen.id, live, steps: [{ kind: 'restore', release: chosen.id, from: live }] };
}
