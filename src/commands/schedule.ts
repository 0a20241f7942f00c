/**
 * `stack schedule run ENV JOB [--host H] [-n N]`: a job of `schedule:` runs now, through its own
 * unit (`APP.job.NAME.service`), as its timer runs it: same user, environment, sandbox and
 * timeout, never twice at once. It waits for the run to end, then shows the last lines the run
 * wrote and its result; exit 1 when it failed. It takes no deploy lock: a job may run during a
 * deploy, as its timer's runs may (the run keeps the release it started with).
 *
 * `stack schedule list ENV`: each job's schedule, last run and its result, and next run, per
 * host (the job lines of `stack status`); exit 1 when a last run failed or a timer is not
 * scheduled.
 */
import { hostname, userInfo } from 'node:os';
import pc from 'picocolors';
import { runScript } from '../apply/run-script.js';
import { StackError, UsageError } from '../errors.js';
import { auditFile } from '../facts/audit.js';
import { ask, records } from '../facts/fact.js';
import { judgeJob, jobsFact } from '../facts/status.js';
import type { Environment, ResolvedJob } from '../inventory/resolve.js';
import { shellLibrary } from '../remote/library.js';
import { call, type RunContext, step, wrap } from '../remote/script.js';
import { connectHost } from '../ssh/connect.js';
import { scheduleText } from '../ui/text.js';
import { jobUnit, layoutFor } from '../views/layout.js';
import { connectTimeoutMs, selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import { formatLine, type LogLine, parseLogLine } from './logs.js';
import type { GlobalOptions } from './options.js';
import { pickHost } from './ssh.js';

export interface ScheduleRunOptions {
  host?: string;
  lines?: string;
}

/** The job of the inventory called `name`, or a usage error that lists them. */
export function jobNamed(env: Environment, name: string): ResolvedJob {
  const job = env.schedule.find((j) => j.name === name);
  if (job) return job;
  if (env.schedule.length === 0) {
    throw new UsageError(`${env.name} has no scheduled jobs, so no job "${name}"`, {
      hint: 'add one under schedule: in the inventory, e.g. clearsessions: { command: "python manage.py clearsessions", on: daily }',
    });
  }
  throw new UsageError(`${env.name} has no job "${name}"`, { hint: `jobs: ${env.schedule.map((j) => j.name).join(', ')}` });
}

/**
 * The root script of one run (src/remote/sh/logs.sh schedule_run): no lock, an audit record of
 * how the run ended (none when it was refused).
 */
export function scheduleRunScript(ctx: RunContext, job: string, lines: number): string {
  const { layout } = ctx;
  const unit = jobUnit(layout, job);
  return wrap(ctx, [shellLibrary('logs.sh'), step(`run ${unit}.service`), call('schedule_run', unit, layout.current, String(lines), job)], {
    releaseLock: false,
  });
}

/** What a run's script printed. */
export interface JobRun {
  /** Why nothing ran: no live release, or the live release has no such job. */
  missing: 'release' | 'job' | null;
  /** systemd's result of the run (success, exit-code, signal, timeout, ...). */
  result: string;
  exitStatus: number | null;
  seconds: number;
  /** systemctl start's exit code: not 0 when the run failed, or when the unit could not start. */
  startCode: number;
  lines: LogLine[];
  ok: boolean;
}

export function parseJobRun(output: string): JobRun {
  const missing = records(output, 'jobmissing')[0]?.[0];
  const [result, status, seconds, code] = records(output, 'jobrun')[0] ?? [];
  const num = (s: string | undefined) => (s && /^\d+$/.test(s) ? Number(s) : null);
  const startCode = num(code) ?? 1;
  const r = !result || result === '-' ? 'unknown' : result;
  return {
    missing: missing === 'release' || missing === 'job' ? missing : null,
    result: r,
    exitStatus: num(status),
    seconds: num(seconds) ?? 0,
    startCode,
    lines: records(output, 'log').map(([source, ...text]) => parseLogLine(source ?? '', text.join('\t'), '+0000')),
    ok: missing === undefined && r === 'success' && startCode === 0,
  };
}

/** The run's outcome in a few words: `success in 4s`, `FAILED (exit-code, status 2) after 3s`. */
export function describeJobRun(r: JobRun): string {
  const took = `${r.seconds}s`;
  if (r.ok) return `success in ${took}`;
  if (r.result === 'success') return 'systemd could not start it';
  return `FAILED (${r.result}${r.exitStatus ? `, status ${r.exitStatus}` : ''}) after ${took}`;
}

export async function runScheduleRun(envName: string, jobName: string, options: ScheduleRunOptions, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const job = jobNamed(env, jobName);
  const lines = Number(options.lines ?? 50);
  if (!Number.isInteger(lines) || lines < 0 || lines > 100_000) throw new UsageError(`-n: "${options.lines}" is not a number of lines from 0 to 100000`);
  const host = pickHost(env, options.host, 'worker', true);
  const layout = layoutFor(env.app, env.gateway);
  const by = `${userInfo().username}@${hostname()}`;
  const ctx: RunContext = { layout, lock: null, audit: { file: auditFile(layout.app), who: by, command: `schedule run ${env.name} ${job.name}` } };
  const shell = await connectHost(host, { baseDir: inventory.dir, timeoutMs: connectTimeoutMs(globals) });
  let run: JobRun;
  let stderr: string;
  try {
    const r = await runScript(shell, host.address, globals.output.progress, { stdin: scheduleRunScript(ctx, job.name, lines), what: `run ${job.name}` });
    run = parseJobRun(r.stdout);
    stderr = r.stderr.trim();
  } finally {
    await shell.close();
  }
  refuseMissing(env, job.name, host.address, run.missing);
  const width = Math.max(0, ...run.lines.map((l) => l.source.length));
  for (const l of run.lines) globals.output.print(formatLine(l, width, null));
  const outcome = `${host.address}: job ${job.name} ${describeJobRun(run)}`;
  if (!run.ok) {
    throw new StackError(`${outcome}${stderr ? `:\n  ${stderr.split('\n').join('\n  ')}` : ''}`, {
      hint: `its journal: stack logs ${env.name} ${job.name}`,
    });
  }
  globals.output.print(`${pc.green('ran:')} ${outcome}\n`);
}

function refuseMissing(env: Environment, job: string, host: string, missing: JobRun['missing']): void {
  if (missing === 'release') {
    throw new UsageError(`${host}: ${env.app.name} has no live release, so no job to run`, { hint: `deploy it first: stack deploy ${env.name}` });
  }
  if (missing === 'job') {
    throw new UsageError(`${host}: the live release has no job "${job}" (the inventory has it, the last deploy did not)`, {
      hint: `deploy it first: stack deploy ${env.name}`,
    });
  }
}

/** Each host's jobs as `stack status` reads them; returns the exit code: 1 when a last run failed or a timer is not scheduled. */
export async function runScheduleList(envName: string | undefined, globals: GlobalOptions): Promise<number> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  if (env.schedule.length === 0) {
    globals.output.print(`${env.name} has no scheduled jobs (schedule: in the inventory)\n`);
    return 0;
  }
  const fact = jobsFact(
    layoutFor(env.app, env.gateway),
    env.schedule.map((j) => j.name),
  );
  let failed = false;
  await forEachHost(
    inventory,
    env,
    globals,
    async (shell, host) => {
      const states = await ask(shell, fact);
      const jobs = env.schedule.map((j) => {
        const state = states.find((s) => s.name === j.name);
        const verdict = state
          ? judgeJob(state)
          : { name: j.name, last: null, next: null, result: null, exitStatus: null, scheduled: false, ok: false, problem: 'not read' };
        if (!verdict.ok) failed = true;
        return { on: j.on, verdict };
      });
      globals.output.print(scheduleText(host.address, jobs));
    },
    { what: 'schedule list', role: 'worker' },
  );
  return failed ? 1 : 0;
}
