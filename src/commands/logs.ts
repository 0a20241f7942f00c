/**
 * `stack logs ENV [PROCESS...] [-f] [-n N] [--since TIME] [--grep RE]`: the journal of the app's
 * units (the web, each process's instances, each scheduled job) and nginx's logs of its site,
 * merged by time, each line naming where it came from. It reads them as root through the same
 * sudo as deploys, so a deploy user without journal rights sees them too. Following runs until
 * Ctrl-C.
 */
import { PassThrough } from 'node:stream';
import pc from 'picocolors';
import { StackError, UsageError } from '../errors.js';
import { records } from '../facts/fact.js';
import type { Environment } from '../inventory/resolve.js';
import { shellLibrary } from '../remote/library.js';
import { shCommand } from '../remote/quote.js';
import { connectHost } from '../ssh/connect.js';
import { jobUnit, layoutFor, processUnit } from '../views/layout.js';
import { nginxLogFiles } from '../views/nginx.js';
import { connectTimeoutMs, selectEnvironment, targetHosts } from './environment.js';
import { forEachHost } from './hosts.js';
import type { GlobalOptions } from './options.js';
import { pickHost } from './ssh.js';

export interface LogsOptions {
  follow?: boolean;
  lines?: string;
  since?: string;
  grep?: string;
  host?: string;
}

/**
 * One log source on the server: a unit's journal or a file. A journal's `unit` may be a pattern
 * (`blog.worker@*.service`: every instance of a process, those scaled away since included);
 * `also` are units whose lines come under its name (the instances the inventory runs now, which
 * a follower keeps following even when they start after it).
 */
export type LogSource = { kind: 'journal'; name: string; unit: string; also?: string[] } | { kind: 'file'; name: string; file: string };

const journal = (unit: string, also?: string[]): LogSource => ({ kind: 'journal', name: unit, unit, ...(also?.length ? { also } : {}) });

/**
 * The processes `stack logs` knows, by the name the user gives, and where their lines are: the
 * web (`app`, or `web`), nginx, each process of `processes:` (all its instances) and each job of
 * `schedule:` (its service: the runs of the timer and of `stack schedule run`). A name used
 * twice (a process and a job) gives the lines of both.
 */
export function logSources(env: Environment): Map<string, LogSource[]> {
  const layout = layoutFor(env.app, env.gateway);
  const files = nginxLogFiles(env.app.name);
  const web = [journal(layout.unit), journal(`${layout.app}.socket`)];
  const sources = new Map<string, LogSource[]>([
    ['app', web],
    ['web', web],
    [
      'nginx',
      [
        { kind: 'file', name: 'nginx access', file: files.access },
        { kind: 'file', name: 'nginx error', file: files.error },
      ],
    ],
  ]);
  const add = (name: string, source: LogSource) => sources.set(name, [...(sources.get(name) ?? []), source]);
  // The template's name with a glob for the instance: journalctl -u matches it against the journal.
  for (const p of env.processes) {
    const instances = Array.from({ length: p.scale }, (_, i) => processUnit(layout, p.name, i + 1));
    add(p.name, journal(processUnit(layout, p.name).replace('@.service', '@*.service'), instances));
  }
  for (const j of env.schedule) add(j.name, journal(`${jobUnit(layout, j.name)}.service`));
  return sources;
}

/** The sources of the processes asked for (all when none is named), each once, or a usage error. */
export function selectSources(env: Environment, names: string[]): LogSource[] {
  const all = logSources(env);
  const chosen =
    names.length === 0
      ? [...all.values()].flat()
      : names.flatMap((n) => {
          const sources = all.get(n);
          if (!sources) throw new UsageError(`no process "${n}" to show logs of`, { hint: `processes: ${[...all.keys()].join(', ')}` });
          return sources;
        });
  return [...new Set(chosen)];
}

/**
 * `--since` as an absolute time: `30s`, `15m`, `2h`, `3d` ago, or a date and time (UTC unless it
 * names a zone). One cut-off for every source: journalctl gets it as `@SECONDS`, nginx's lines
 * are compared with it here.
 */
export function parseSince(text: string, now: Date): Date {
  const relative = text.trim().match(/^(\d+)\s*(s|m|min|h|d)$/);
  if (relative) {
    const seconds = { s: 1, m: 60, min: 60, h: 3600, d: 86400 }[relative[2] as 's' | 'm' | 'min' | 'h' | 'd'];
    return new Date(now.getTime() - Number(relative[1]) * seconds * 1000);
  }
  const absolute = text.trim().match(/^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}(?::\d{2})?))?(Z|[+-]\d{2}:?\d{2})?$/);
  if (absolute) {
    const [, day, time, zone] = absolute;
    const t = Date.parse(`${day}T${time ?? '00:00'}${time && time.length === 5 ? ':00' : ''}${zone ?? 'Z'}`);
    if (!Number.isNaN(t)) return new Date(t);
  }
  throw new UsageError(`--since: "${text}" is not a time`, { hint: 'write how long ago (30s, 15m, 2h, 3d) or a UTC date and time (2026-12-01 14:30)' });
}

/** The server script: the library, then one call per source; with `follow`, in the background until stdin ends. */
export function logsScript(sources: LogSource[], o: { lines: number; since: Date | null; grep: string; follow: boolean }): string {
  const since = o.since ? `@${Math.floor(o.since.getTime() / 1000)}` : '';
  const follow = o.follow ? ['-f'] : [];
  const calls = sources.map((s) => {
    const line =
      s.kind === 'journal'
        ? shCommand('logs_journal', s.unit, String(o.lines), since, o.grep, ...follow, ...(s.also ?? []))
        : shCommand('logs_file', s.name, s.file, String(o.lines), o.grep, ...follow);
    return o.follow ? `${line} &` : line;
  });
  return [shellLibrary('logs.sh'), 'set -u', 'logs_tz', ...calls, ...(o.follow ? ['logs_follow_until_eof'] : []), 'exit 0', ''].join('\n');
}

export interface LogLine {
  /** Milliseconds since the epoch; NaN when the line had no time stack could read. */
  time: number;
  source: string;
  text: string;
}

const MONTHS: Record<string, string> = {
  Jan: '01',
  Feb: '02',
  Mar: '03',
  Apr: '04',
  May: '05',
  Jun: '06',
  Jul: '07',
  Aug: '08',
  Sep: '09',
  Oct: '10',
  Nov: '11',
  Dec: '12',
};

/** A record's time and text: journal lines start with an ISO time and the host name; nginx's carry theirs inside. */
export function parseLogLine(source: string, raw: string, tz: string): LogLine {
  const journal = raw.match(/^(\d{4}-\d{2}-\d{2}T\S+)\s+\S+\s+(.*)$/);
  if (journal) return { time: Date.parse(journal[1]!), source, text: journal[2]! };
  const access = raw.match(/\[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}:\d{2}:\d{2}) ([+-]\d{4})\]/);
  if (access && MONTHS[access[2]!]) {
    return { time: Date.parse(`${access[3]}-${MONTHS[access[2]!]}-${access[1]}T${access[4]}${access[5]}`), source, text: raw };
  }
  const error = raw.match(/^(\d{4})\/(\d{2})\/(\d{2}) (\d{2}:\d{2}:\d{2}) (.*)$/);
  if (error) return { time: Date.parse(`${error[1]}-${error[2]}-${error[3]}T${error[4]}${tz || '+0000'}`), source, text: error[5]! };
  return { time: Number.NaN, source, text: raw };
}

/** The records of one host's answer, merged by time (a line without one keeps its place after the one before). */
export function mergeLogs(output: string, since: Date | null, lines: number): LogLine[] {
  const tz = records(output, 'tz')[0]?.[0] ?? '+0000';
  const parsed = records(output, 'log').map(([source, ...text]) => parseLogLine(source ?? '', text.join('\t'), tz));
  let last = Number.NEGATIVE_INFINITY;
  const timed = parsed.map((l, i) => {
    if (!Number.isNaN(l.time)) last = l.time;
    return { l, key: Number.isNaN(l.time) ? last : l.time, i };
  });
  timed.sort((a, b) => a.key - b.key || a.i - b.i);
  const kept = timed.map((t) => t.l).filter((l) => since === null || Number.isNaN(l.time) || l.time >= since.getTime());
  return kept.slice(Math.max(0, kept.length - lines));
}

/** One line as `stack logs` shows it: time (UTC), the host when there are several, the source, the text. */
export function formatLine(l: LogLine, width: number, host: string | null): string {
  const time = Number.isNaN(l.time) ? ''.padEnd(19) : new Date(l.time).toISOString().slice(0, 19).replace('T', ' ');
  return `${pc.dim(time)} ${host ? `${pc.dim(host)} ` : ''}${pc.cyan(l.source.padEnd(width))} ${l.text}\n`;
}

export async function runLogs(envName: string | undefined, processes: string[], options: LogsOptions, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const sources = selectSources(env, processes);
  const lines = Number(options.lines ?? 50);
  if (!Number.isInteger(lines) || lines < 0 || lines > 100_000) throw new UsageError(`-n: "${options.lines}" is not a number of lines from 0 to 100000`);
  const since = options.since ? parseSince(options.since, new Date()) : null;
  if (options.grep) {
    try {
      new RegExp(options.grep);
    } catch (err) {
      throw new UsageError(`--grep: ${(err as Error).message}`);
    }
  }
  const width = Math.max(...sources.map((s) => s.name.length));
  const script = logsScript(sources, { lines, since, grep: options.grep ?? '', follow: options.follow === true });
  if (!options.follow) {
    const several = targetHosts(env, globals.limit).length > 1;
    await forEachHost(inventory, env, globals, async (shell, host) => {
      const r = await shell.sudoScript(script);
      if (r.code !== 0) throw new StackError(`${shell.label}: could not read the logs: ${r.stderr.trim() || `exit ${r.code}`}`);
      for (const l of mergeLogs(r.stdout, since, lines)) process.stdout.write(formatLine(l, width, several ? host.address : null));
    });
    return;
  }
  await follow(env, inventory.dir, options.host, script, width, globals);
}

/** Follows one host's logs until Ctrl-C: the script runs in a session of its own, which ends when its stdin does. */
async function follow(env: Environment, baseDir: string, address: string | undefined, script: string, width: number, globals: GlobalOptions): Promise<void> {
  const host = pickHost(env, address);
  const shell = await connectHost(host, { baseDir, timeoutMs: connectTimeoutMs(globals) });
  const stdin = new PassThrough();
  const out = new PassThrough();
  let tz = '+0000';
  let partial = '';
  out.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const all = text.split('\n');
    partial = all.pop() ?? '';
    for (const raw of all) {
      const [kind, source, ...rest] = raw.split('\t');
      if (kind === 'tz') tz = source ?? tz;
      else if (kind === 'log') process.stdout.write(formatLine(parseLogLine(source ?? '', rest.join('\t'), tz), width, null));
    }
  });
  const stop = () => stdin.end();
  process.on('SIGINT', stop);
  try {
    const status = await shell.attach(shCommand('setsid', '-w', 'sh', '-c', script), { pty: false, stdin, stdout: out, stderr: process.stderr });
    if (status === null) throw new StackError(`${shell.label}: the connection was lost`);
  } finally {
    process.off('SIGINT', stop);
    await shell.close();
  }
}
