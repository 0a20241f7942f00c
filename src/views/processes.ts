/**
 * The units of what the app runs besides the web: one template unit per process (`scale`
 * instances), a oneshot service and a timer per scheduled job, and the target that groups them.
 * Pure; src/state/desired.ts renders them.
 */
import type { Environment, ResolvedJob, ResolvedProcess } from '../inventory/resolve.js';
import { appUnitView } from './gateway.js';
import { jobUnit, type Layout, processUnit } from './layout.js';
import type { Topology } from './topology.js';

/** What every unit running the app's code shares with the web's unit: user, release, environment, sandbox. */
interface RunsTheApp {
  app: string;
  name: string;
  user: string;
  group: string;
  workingDirectory: string;
  environmentFile: string;
  /** The release's virtualenv first, as for hooks and `stack run`. */
  path: string;
  venv: string;
  /** `sh -c`'s argument, quoted for a unit file. */
  execStart: string;
  readWritePaths: string[];
  /** Services to start after: the database and Redis the command may need. */
  after: string[];
  target: string;
}

export interface ProcessView extends RunsTheApp {
  timeoutStopSec: number;
}

export interface JobView extends RunsTheApp {
  on: string;
  timeoutStartSec: number;
}

/**
 * A command as one argument of ExecStart=: double-quoted, with what systemd itself would expand
 * escaped (`%` specifiers, `$` variables), so that sh gets the command exactly as written.
 */
export function unitQuoted(command: string): string {
  return `"${command
    .replace(/[\\"]/g, (c) => `\\${c}`)
    .replace(/%/g, '%%')
    .replace(/\$/g, '$$$$')}"`;
}

function runsTheApp(env: Environment, layout: Layout, name: string, command: string, topology?: Topology): RunsTheApp {
  return {
    app: env.app.name,
    name,
    user: env.app.name,
    group: env.app.name,
    workingDirectory: layout.current,
    environmentFile: layout.env_file,
    path: `${layout.venv}/bin:/usr/local/bin:/usr/bin:/bin`,
    venv: layout.venv,
    // exec: the command takes the shell's place, so systemd's SIGTERM reaches it (a warm
    // shutdown) instead of a shell that would leave it to the SIGKILL.
    execStart: unitQuoted(`exec ${command}`),
    readWritePaths: [layout.shared, ...(env.app.media ? [env.app.media.path] : [])],
    after: appUnitView(env, layout, topology).uses,
    target: layout.target,
  };
}

export function processView(env: Environment, layout: Layout, p: ResolvedProcess, topology?: Topology): ProcessView {
  return { ...runsTheApp(env, layout, p.name, p.command, topology), timeoutStopSec: p.stopSeconds };
}

export function jobView(env: Environment, layout: Layout, j: ResolvedJob, topology?: Topology): JobView {
  return { ...runsTheApp(env, layout, j.name, j.command, topology), on: j.on, timeoutStartSec: j.timeoutSeconds };
}

/**
 * The processes a host runs: all of them on a single server; with roles, only on worker hosts,
 * and a singleton (a scheduler such as celery beat) on the first worker host alone.
 */
export function hostProcesses(env: Environment, topology?: Topology): Environment['processes'] {
  if (!topology) return env.processes;
  if (!topology.worker) return [];
  return env.processes.filter((p) => !p.singleton || topology.firstWorker);
}

/** The instances that must run: `blog-worker@1.service` .. `@scale`, process by process. */
export function processInstances(env: Environment, layout: Layout, topology?: Topology): string[] {
  return hostProcesses(env, topology).flatMap((p) => Array.from({ length: p.scale }, (_, i) => processUnit(layout, p.name, i + 1)));
}

/** Scheduled jobs run on the first worker host only: one timer per job in the environment, so a job never runs twice at once. */
export function hostSchedule(env: Environment, topology?: Topology): Environment['schedule'] {
  return !topology || topology.firstWorker ? env.schedule : [];
}

/** The unit files of processes and jobs, by path, with the template and view of each. */
export function partUnitFiles(env: Environment, layout: Layout, topology?: Topology): { path: string; template: string; view: object }[] {
  const dir = '/etc/systemd/system';
  const files: { path: string; template: string; view: object }[] = [];
  for (const p of hostProcesses(env, topology))
    files.push({ path: `${dir}/${processUnit(layout, p.name)}`, template: 'systemd/process.service', view: processView(env, layout, p, topology) });
  for (const j of hostSchedule(env, topology)) {
    const view = jobView(env, layout, j, topology);
    files.push({ path: `${dir}/${jobUnit(layout, j.name)}.service`, template: 'systemd/job.service', view });
    files.push({ path: `${dir}/${jobUnit(layout, j.name)}.timer`, template: 'systemd/job.timer', view });
  }
  if (files.length > 0) files.push({ path: `${dir}/${layout.target}`, template: 'systemd/app.target', view: { app: env.app.name, target: layout.target } });
  return files;
}
