/**
 * What a deploy does to the app's processes and scheduled jobs (pure): which instances restart
 * once the web is healthy, which start, which stop because the inventory scaled them down or
 * dropped them, which timers are held while the release switches, and which unit files go.
 */
import type { GatheredFacts } from '../facts/host.js';
import type { DesiredState } from '../state/desired.js';

export interface PartsPlan {
  /** Running instances that run again: restarted on the new release once the web is healthy. */
  restart: string[];
  /** Instances not running that must: started at the same point. */
  start: string[];
  /** Instances and timers to enable (started at boot by the app's target). */
  enable: string[];
  /** Instances and timers no longer in the inventory (or above `scale`): disabled and stopped. */
  stop: string[];
  /** Timers running now: stopped while the release switches, so no job starts on half of it. */
  hold: string[];
  /** Every timer the inventory names: started once the release is committed. */
  timers: string[];
  /** Unit files of processes and jobs no longer in the inventory. */
  remove: string[];
  /** Instances running before the deploy: what a failed deploy restarts on the previous release. */
  before: string[];
}

const running = (active: string | undefined) => active === 'active' || active === 'activating' || active === 'reloading';

/**
 * @param releasing a new release goes live (new code or configuration): every running instance
 *   restarts on it, and the timers are held while it switches.
 */
export function planParts(desired: DesiredState, facts: GatheredFacts, releasing: boolean): PartsPlan | null {
  const { instances, timers } = desired.parts;
  const units = facts.parts.units;
  const wanted = new Set([...instances, ...timers]);
  const files = new Set(desired.files.map((f) => f.path));
  const state = (u: string) => units.get(u) ?? facts.services.get(u);
  const restart = releasing ? instances.filter((u) => running(state(u)?.active)) : [];
  const start = instances.filter((u) => !running(state(u)?.active) && !restart.includes(u));
  const enable = [...instances, ...timers].filter((u) => state(u)?.enabled !== 'enabled');
  const stop = [...units].filter(([u, s]) => !wanted.has(u) && (s.enabled === 'enabled' || running(s.active) || s.active === 'failed')).map(([u]) => u);
  const hold = releasing ? [...units].filter(([u, s]) => u.endsWith('.timer') && running(s.active)).map(([u]) => u) : [];
  const remove = facts.parts.files.filter((f) => !files.has(f));
  const before = [...units].filter(([u, s]) => u.includes('@') && running(s.active)).map(([u]) => u);
  const plan = { restart, start, enable, stop, hold, timers, remove, before };
  return Object.values(plan).some((list) => list.length > 0) ? plan : null;
}

/** What the plan changes, for the count of changes (restarts follow from the release). */
export function partsChanges(p: PartsPlan | null): number {
  return p ? p.start.length + p.enable.length + p.stop.length + p.remove.length : 0;
}

/** The plan's process and job work, for a person (`--dry-run`). */
export function describeParts(p: PartsPlan): string[] {
  const out: string[] = [];
  if (p.hold.length) out.push(`  hold the timers while the release switches: ${p.hold.join(' ')}`);
  if (p.restart.length) out.push(`  restart once the web is healthy (warm: SIGTERM, then their stop timeout): ${p.restart.join(' ')}`);
  if (p.start.length) out.push(`  start once the web is healthy: ${p.start.join(' ')}`);
  if (p.enable.length) out.push(`  enable ${p.enable.join(' ')}`);
  if (p.stop.length) out.push(`  stop and disable (no longer in the inventory): ${p.stop.join(' ')}`);
  if (p.remove.length) out.push(`  remove ${p.remove.join(' ')}`);
  return out;
}
