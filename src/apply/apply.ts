/**
 * The one executor of a host's steps (src/plan/steps.ts): each step becomes its script
 * (src/apply/scripts.ts) and runs over the injected shell, in order; the first failure stops
 * the rest. What the steps are was decided by the plan; a command gives scripts only for the
 * kinds of step it plans (a rollback: restore), and a step without one is a bug, caught before
 * anything runs.
 */
import type { Readable } from 'node:stream';
import { describeStep, type Step } from '../plan/steps.js';
import type { ScriptOutcome } from './run-script.js';

/** How each kind of step becomes a round trip; built by the caller from the plan and its context. */
export interface StepScripts {
  provision?(): string;
  certificate?(): { script: string; hint: string };
  /** The release script as the command line, the tarball as stdin, and its packing. */
  upload?(): { command: string; stdin: Readable; packed: Promise<void> };
  activate?(withProvision: boolean): string;
  health?(): string;
  unlock?(): string;
  restore?(release: string): string;
}

export type RunStep = (what: string, stdin: string | Readable, command?: string, hint?: string) => Promise<ScriptOutcome>;

/** Runs the steps in order; the outcome of the last one (health, rollback) is the host's. */
export async function applySteps(steps: Step[], scripts: StepScripts, run: RunStep): Promise<ScriptOutcome | undefined> {
  const missing = steps.find((s) => !scripts[s.kind]);
  if (missing) throw new Error(`a ${missing.kind} step was planned (${describeStep(missing)}) but the command has no script for it`);
  let outcome: ScriptOutcome | undefined;
  for (const step of steps) {
    switch (step.kind) {
      case 'provision':
        outcome = await run('provision', scripts.provision!());
        break;
      case 'certificate': {
        const { script, hint } = scripts.certificate!();
        outcome = await run('obtain certificate', script, undefined, hint);
        break;
      }
      case 'upload': {
        const { command, stdin, packed } = scripts.upload!();
        [, outcome] = await Promise.all([packed, run(`upload release ${step.release}`, stdin, command)]);
        break;
      }
      case 'activate':
        outcome = await run('activate', scripts.activate!(step.withProvision));
        break;
      case 'health':
        outcome = await run('health check', scripts.health!());
        break;
      case 'unlock':
        outcome = await run('release the lock', scripts.unlock!());
        break;
      case 'restore':
        outcome = await run(`rollback to ${step.release}`, scripts.restore!(step.release));
        break;
    }
  }
  return outcome;
}
