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
  /**
   * The first release after the target that ran server hooks (a migration, typically): the
   * database may have changed under the target's code since. `backup` was taken right before.
   */
  migrated: { release: string; hooks: string[]; backup: string | null } | null;
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
  return { target: chosen.id, live, steps: [{ kind: 'restore', release: chosen.id, from: live }], migrated: migratedSince(releases, chosen.id, live) };
}

/** The first release after `target`, up to the live one, that ran server hooks. */
export function migratedSince(releases: ReleaseEntry[], target: string, live: string | null): RollbackPlan['migrated'] {
  if (live === null || live < target) return null;
  const after = releases.filter((r) => r.id > target && r.id <= live).sort((a, b) => a.id.localeCompare(b.id));
  const first = after.find((r) => (r.manifest?.hooks?.length ?? 0) > 0);
  if (!first) return null;
  return { release: first.id, hooks: first.manifest!.hooks!, backup: first.manifest!.db_backup ?? null };
}
