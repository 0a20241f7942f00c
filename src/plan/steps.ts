/**
 * The plan as a program: the ordered server steps of one host after its facts (each one round
 * trip), decided here from the plan alone. Apply only interprets them (src/apply/apply.ts), and
 * `deploy --dry-run` prints them with the round trips they will take. Pure.
 */
import { changeCount, type Plan } from './plan.js';

export type Step =
  /** Packages, users, directories, conversions: on its own when something must follow it before activation. */
  | { kind: 'provision' }
  /** certbot asks the CA, after provisioning (certbot installed) and before anything goes live. */
  | { kind: 'certificate'; server: string }
  /** The source tarball streamed into a new release, which is built there. */
  | { kind: 'upload'; release: string }
  /** Files, release, validation, handlers, health gate; provisioning folded in when it had no step of its own. */
  | { kind: 'activate'; withProvision: boolean }
  /** Nothing to change: the site is still checked. */
  | { kind: 'health' }
  /** Nothing to change or check (setup): the lock is given back. */
  | { kind: 'unlock' }
  /** Rollback: a recorded release and its configuration put back, validated, restarted, health-gated. */
  | { kind: 'restore'; release: string; from: string | null };

export interface StepInput {
  /** The code ships (a new release that is not a configuration-only copy). */
  uploads: boolean;
  /** Provisioning has anything to do. */
  provisions: boolean;
  /** deploy checks health; setup does not. */
  checksHealth: boolean;
}

export function planSteps(plan: Plan, o: StepInput): Step[] {
  const steps: Step[] = [];
  // Provisioning goes first on its own when something must come between it and activation.
  const provisionFirst = plan.certificate !== null || o.uploads;
  if (provisionFirst && o.provisions) steps.push({ kind: 'provision' });
  if (plan.certificate) steps.push({ kind: 'certificate', server: plan.certificate.server });
  if (o.uploads && plan.release) {
    steps.push({ kind: 'upload', release: plan.release.id }, { kind: 'activate', withProvision: false });
  } else if (changeCount(plan) > 0 || plan.handlers.length > 0) {
    steps.push({ kind: 'activate', withProvision: !provisionFirst && o.provisions });
  } else if (o.checksHealth) {
    steps.push({ kind: 'health' });
  } else {
    steps.push({ kind: 'unlock' });
  }
  return steps;
}

export function describeStep(s: Step): string {
  switch (s.kind) {
    case 'provision':
      return 'provision';
    case 'certificate':
      return `obtain certificate from ${s.server}`;
    case 'upload':
      return `upload and build release ${s.release}`;
    case 'activate':
      return s.withProvision ? 'provision and activate' : 'activate';
    case 'health':
      return 'health check';
    case 'unlock':
      return 'release the lock';
    case 'restore':
      return `restore release ${s.release} (code and configuration)`;
  }
}

/** "steps: provision, upload ..., activate (4 SSH round trips with the facts)". */
export function formatSteps(steps: Step[]): string {
  return `  steps: ${steps.map(describeStep).join(', ')} (${steps.length + 1} SSH round trips with the facts)`;
}
