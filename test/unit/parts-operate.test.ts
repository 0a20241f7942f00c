/**
 * Operating the app's processes and scheduled jobs, the pure parts: the jobs' fact (fact_jobs
 * run under dash against a stand-in systemctl) and how status judges jobs and process
 * instances, the units `stack logs` and `stack restart` resolve a name to, and `stack schedule
 * run`'s script (job_run run under dash against stand-ins too). The commands themselves run
 * against sandboxes in the e2e tests.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { logsScript, selectSources } from '../../src/commands/logs.js';
import { restartUnits, restartUnitsScript } from '../../src/commands/restart.js';
import { describeJobRun, jobNamed, parseJobRun, scheduleRunScript } from '../../src/commands/schedule.js';
import { statusOf, statusUnits } from '../../src/commands/status.js';
import { UsageError } from '../../src/errors.js';
import { factScript } from '../../src/facts/fact.js';
import { type JobState, jobsFact, judgeJob, parseJobs, type StatusFacts, statusFact, systemdTime } from '../../src/facts/status.js';
import { parseInventory } from '../../src/inventory/load.js';
import { shellLibrary } from '../../src/remote/library.js';
import { jsonOf } from '../../src/ui/json.js';
import type { HostRunResult } from '../../src/ui/results.js';
import { jobText, scheduleText, statusText } from '../../src/ui/text.js';
import { layoutFor } from '../../src/views/layout.js';
import { ROOT } from '../helpers/cli.js';
import { temporaryFolders } from '../helpers/temporary.js';

const inventory = parseInventory(
  `app:
  name: blog
  wsgi: blog.wsgi:application
processes:
  worker: { command: "celery -A blog worker -l info", scale: 2, stop_timeout: 300 }
  beat: { command: "celery -A blog beat" }
  idle: { command: "sleep infinity", scale: 0 }
schedule:
  clearsessions: { command: "python manage.py clearsessions", on: daily, timeout: 1h }
  report: { command: "python manage.py report", on: "Mon *-*-* 07:00:00" }
environments:
  prod:
    domains: [blog.example.com]
    hosts: [{ address: 203.0.113.10 }]
`,
  'inventory.yml',
);
const prod = inventory.environments.prod!;
/** An app with neither processes nor jobs. */
const bare = parseInventory(
  `app: { name: blog, wsgi: blog.wsgi:application }
environments:
  bare: { domains: [bare.example.com], hosts: [{ address: 203.0.113.11 }] }
`,
  'inventory.yml',
).environments.bare!;
const layout = layoutFor(prod.app, prod.gateway);

const temporary = temporaryFolders();

/**
 * Runs `script` under dash with stand-in commands first on PATH (name -> shell body); each call
 * is recorded in $STUB_LOG as "NAME ARGS".
 */
function dash(script: string, stubs: Record<string, string>, env: Record<string, string> = {}) {
  const bin = temporary('stack-parts-stubs-');
  const log = path.join(bin, '.calls');
  writeFileSync(log, '');
  for (const [name, code] of Object.entries(stubs)) {
    writeFileSync(path.join(bin, name), `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> "$STUB_LOG"\n${code}\n`, { mode: 0o755 });
  }
  const r = spawnSync('dash', ['-c', script], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, STUB_LOG: log, STUB_DIR: bin, ...env },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, calls: readFileSync(log, 'utf8').split('\n').filter(Boolean), stubDir: bin };
}

describe('the inventory fixture', () => {
  it('resolves processes and jobs as the commands read them', () => {
    expect(prod.processes.map((p) => [p.name, p.scale, p.stopSeconds])).toEqual([
      ['worker', 2, 300],
      ['beat', 1, 60],
      ['idle', 0, 60],
    ]);
    expect(prod.schedule.map((j) => [j.name, j.on, j.timeoutSeconds])).toEqual([
      ['clearsessions', 'daily', 3600],
      ['report', 'Mon *-*-* 07:00:00', 3600],
    ]);
    expect(bare.processes).toEqual([]);
    expect(bare.schedule).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// The jobs' fact

/** `systemctl show` as a stand-in: the properties of each unit, from files named after it, in systemd's own order. */
const SYSTEMCTL_SHOW = `
[ "$1" = show ] || exit 1
unit=$2
shift 2
f="$STUB_DIR/show.$unit"
[ -f "$f" ] || f="$STUB_DIR/show.none"
cat "$f"
printf 'TZ %s\\n' "\${TZ:-}" >> "$STUB_DIR/.tz"
`;

describe('the jobs fact (fact_jobs)', () => {
  it('asks nothing when there are no jobs', () => {
    expect(jobsFact(layout, []).lines).toEqual([]);
    expect(jobsFact(layout, ['clearsessions', 'report']).lines).toEqual(['fact_jobs blog clearsessions report']);
  });

  it("reads each job's timer and last run by property name, in UTC, - for what systemd does not know", () => {
    const fact = jobsFact(layout, ['clearsessions', 'report', 'gone']);
    // The stand-ins' folder is dash()'s own: the properties are written there first.
    const script = `
cat > "$STUB_DIR/show.blog.job.clearsessions.timer" <<'EOF'
NextElapseUSecRealtime=Wed 2026-12-02 00:00:03 UTC
LastTriggerUSec=Tue 2026-12-01 00:00:04 UTC
ActiveState=active
EOF
cat > "$STUB_DIR/show.blog.job.clearsessions.service" <<'EOF'
Result=exit-code
ExecMainStartTimestamp=Tue 2026-12-01 00:00:04 UTC
ExecMainStatus=2
ActiveState=failed
EOF
cat > "$STUB_DIR/show.blog.job.report.timer" <<'EOF'
ActiveState=active
LastTriggerUSec=n/a
NextElapseUSecRealtime=Mon 2026-12-07 07:00:02 UTC
EOF
printf 'ActiveState=inactive\\nLastTriggerUSec=\\nNextElapseUSecRealtime=\\nResult=success\\nExecMainStatus=0\\nExecMainStartTimestamp=\\n' > "$STUB_DIR/show.none"
${factScript(fact)}`;
    const r = dash(script, { systemctl: SYSTEMCTL_SHOW });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').filter((l) => l.startsWith('job\t'))).toEqual([
      'job\tclearsessions\tactive\tTue 2026-12-01 00:00:04 UTC\tWed 2026-12-02 00:00:03 UTC\tfailed\texit-code\t2\tTue 2026-12-01 00:00:04 UTC',
      'job\treport\tactive\t-\tMon 2026-12-07 07:00:02 UTC\tinactive\tsuccess\t0\t-',
      'job\tgone\tinactive\t-\t-\tinactive\tsuccess\t0\t-',
    ]);
    // Each unit asked once, for the properties it has, with the time zone set.
    expect(r.calls).toContain('systemctl show blog.job.clearsessions.timer -p ActiveState -p LastTriggerUSec -p NextElapseUSecRealtime');
    expect(r.calls).toContain('systemctl show blog.job.clearsessions.service -p ActiveState -p Result -p ExecMainStatus -p ExecMainStartTimestamp');
    expect(r.calls).toHaveLength(6);
    const jobs = fact.parse(r.stdout);
    expect(jobs[0]).toEqual({
      name: 'clearsessions',
      timer: 'active',
      last: '2026-12-01T00:00:04Z',
      next: '2026-12-02T00:00:03Z',
      service: 'failed',
      result: 'exit-code',
      exitStatus: 2,
      ranSinceBoot: true,
    });
    expect(jobs[1]).toMatchObject({ name: 'report', last: null, next: '2026-12-07T07:00:02Z', ranSinceBoot: false });
    expect(jobs[2]).toMatchObject({ name: 'gone', timer: 'inactive', next: null });
  });

  it('runs systemctl under TZ=UTC', () => {
    const r = dash(factScript(jobsFact(layout, ['clearsessions'])), { systemctl: SYSTEMCTL_SHOW }, { TZ: 'Europe/Paris' });
    expect(r.code).toBe(0);
    expect(readFileSync(path.join(r.stubDir, '.tz'), 'utf8')).toBe('TZ UTC\nTZ UTC\n');
  });

  it('reads systemd times in UTC as ISO 8601, and keeps another form as it is', () => {
    expect(systemdTime('Tue 2026-12-01 03:00:04 UTC')).toBe('2026-12-01T03:00:04Z');
    expect(systemdTime('2026-12-01 03:00:04.123456 UTC')).toBe('2026-12-01T03:00:04Z');
    expect(systemdTime('Tue 2026-12-01 04:00:04 CET')).toBe('Tue 2026-12-01 04:00:04 CET');
    expect(systemdTime('-')).toBeNull();
    expect(systemdTime('n/a')).toBeNull();
    expect(systemdTime(undefined)).toBeNull();
  });

  it('parses odd records without failing', () => {
    expect(parseJobs('job\tx\n\njob\t\tactive\nunit\tblog.service\tactive\trunning\t1\n')).toEqual([
      { name: 'x', timer: 'unknown', last: null, next: null, service: 'unknown', result: '', exitStatus: null, ranSinceBoot: false },
    ]);
  });

  it('shares the round trip of the status fact', () => {
    const fact = statusFact({
      layout,
      units: ['blog.service'],
      jobs: ['clearsessions'],
      probe: { url: 'http://blog.example.com/health', resolve: 'blog.example.com:80:127.0.0.1', timeout: 3 },
      disks: ['/srv/blog'],
      auditFile: '/var/log/stack/blog.log',
      certs: null,
    });
    expect(fact.lines.slice(0, 2)).toEqual(['fact_unit blog.service', 'fact_jobs blog clearsessions']);
    const s = fact.parse(
      'unit\tblog.service\tactive\trunning\t12\njob\tclearsessions\tactive\tTue 2026-12-01 00:00:04 UTC\tWed 2026-12-02 00:00:03 UTC\tinactive\tsuccess\t0\tTue 2026-12-01 00:00:04 UTC\n',
    );
    expect(s.jobs).toEqual([
      {
        name: 'clearsessions',
        timer: 'active',
        last: '2026-12-01T00:00:04Z',
        next: '2026-12-02T00:00:03Z',
        service: 'inactive',
        result: 'success',
        exitStatus: 0,
        ranSinceBoot: true,
      },
    ]);
    expect(s.units).toEqual([{ name: 'blog.service', active: 'active', sub: 'running', seconds: 12 }]);
  });
});

// ---------------------------------------------------------------------------------------------
// How status judges jobs and instances

const job = (over: Partial<JobState> = {}): JobState => ({
  name: 'clearsessions',
  timer: 'active',
  last: '2026-12-01T03:00:04Z',
  next: '2026-12-02T03:00:02Z',
  service: 'inactive',
  result: 'success',
  exitStatus: 0,
  ranSinceBoot: true,
  ...over,
});

describe('a job as status judges it', () => {
  it('is ok when its last run succeeded, or it never ran, or a run goes on, or it ran before the last boot', () => {
    expect(judgeJob(job())).toEqual({
      name: 'clearsessions',
      last: '2026-12-01T03:00:04Z',
      next: '2026-12-02T03:00:02Z',
      result: 'success',
      exitStatus: 0,
      scheduled: true,
      ok: true,
      problem: null,
    });
    expect(judgeJob(job({ last: null, ranSinceBoot: false }))).toMatchObject({ result: null, ok: true });
    expect(judgeJob(job({ service: 'activating' }))).toMatchObject({ result: 'running', ok: true });
    expect(judgeJob(job({ ranSinceBoot: false }))).toMatchObject({ result: 'unknown', ok: true });
  });

  it('is not ok when its last run failed, however it was started, or its timer does not run', () => {
    expect(judgeJob(job({ service: 'failed', result: 'exit-code', exitStatus: 2 }))).toMatchObject({
      result: 'exit-code',
      ok: false,
      problem: 'the last run FAILED (exit-code, status 2)',
    });
    expect(judgeJob(job({ service: 'failed', result: 'timeout', exitStatus: 15 }))).toMatchObject({ result: 'timeout', ok: false });
    // Run by hand only (stack schedule run): its timer never fired, the run failed all the same.
    expect(judgeJob(job({ last: null, result: 'signal', exitStatus: 9 }))).toMatchObject({ result: 'signal', ok: false });
    expect(judgeJob(job({ timer: 'inactive', next: null }))).toMatchObject({ scheduled: false, ok: false, problem: 'not scheduled: its timer is inactive' });
  });

  it('reads as one line', () => {
    expect(plain(jobText(judgeJob(job())))).toBe('last 2026-12-01 03:00:04 UTC (success), next 2026-12-02 03:00:02 UTC');
    expect(plain(jobText(judgeJob(job({ service: 'failed', result: 'exit-code', exitStatus: 2 }))))).toBe(
      'last 2026-12-01 03:00:04 UTC FAILED (exit-code, status 2), next 2026-12-02 03:00:02 UTC',
    );
    expect(plain(jobText(judgeJob(job({ last: null, ranSinceBoot: false }))))).toBe('never run yet, next 2026-12-02 03:00:02 UTC');
    expect(plain(jobText(judgeJob(job({ service: 'activating' }))))).toBe('running now, next 2026-12-02 03:00:02 UTC');
    expect(plain(jobText(judgeJob(job({ ranSinceBoot: false }))))).toBe(
      'last 2026-12-01 03:00:04 UTC (result unknown: it ran before the server last booted), next 2026-12-02 03:00:02 UTC',
    );
    expect(plain(jobText(judgeJob(job({ timer: 'inactive', next: null }))))).toBe(
      'last 2026-12-01 03:00:04 UTC (success), not scheduled (its timer is not running)',
    );
  });
});

/** Text without colours. */
function plain(text: string): string {
  return text.replace(/\x1b\[[0-9;]*m/g, '');
}

describe('stack status with processes and jobs', () => {
  it('asks for the state of every instance the inventory wants, not of a process scaled to 0', () => {
    expect(statusUnits(prod, layout)).toEqual([
      'blog.socket',
      'blog.service',
      'blog.worker@1.service',
      'blog.worker@2.service',
      'blog.beat@1.service',
      'nginx.service',
    ]);
    expect(statusUnits(bare, layoutFor(bare.app, bare.gateway))).toEqual(['blog.socket', 'blog.service', 'nginx.service']);
  });

  const active = (name: string) => ({ name, active: 'active', sub: 'running', seconds: 100 });
  const facts = (over: Partial<StatusFacts> = {}): StatusFacts => ({
    units: statusUnits(prod, layout).map(active),
    jobs: [job(), job({ name: 'report', last: null, ranSinceBoot: false, next: '2026-12-07T07:00:02Z' })],
    probe: { code: '200', seconds: 0.01 },
    disk: [],
    maintenance: false,
    releases: [
      {
        id: '20261201T100000.000Z',
        manifest: { source_hash: 'abc', created: '2026-12-01T10:00:00.000Z', by: 'me@here' },
        hasConfig: true,
        live: true,
      },
    ],
    lastAudit: null,
    certs: null,
    backups: null,
    ...over,
  });
  const run = (status: StatusFacts) => ({ host: '203.0.113.10', changes: 0, execs: 1, ms: 100, lockHolder: null, status }) as unknown as HostRunResult;
  const now = new Date('2026-12-01T12:00:00Z');

  it('is ok with every instance active and no failed run, and shows a line per job', () => {
    const s = statusOf(prod, run(facts()), now);
    expect(s.ok).toBe(true);
    expect(s.jobs.map((j) => [j.name, j.result, j.ok])).toEqual([
      ['clearsessions', 'success', true],
      ['report', null, true],
    ]);
    const text = plain(statusText(s));
    expect(text).toContain('\n  blog.worker@2.service active (running) for 2m\n');
    expect(text).toContain('\n  job clearsessions  last 2026-12-01 03:00:04 UTC (success), next 2026-12-02 03:00:02 UTC\n');
    expect(text).toContain('\n  job report  never run yet, next 2026-12-07 07:00:02 UTC\n');
    expect(text.split('\n')[0]).toBe('203.0.113.10  ok');
  });

  it('is NOT OK with an instance down or a failed last run', () => {
    const down = facts({
      units: statusUnits(prod, layout).map((u) =>
        u === 'blog.worker@2.service' ? { name: u, active: 'activating', sub: 'auto-restart', seconds: 2 } : active(u),
      ),
    });
    const s = statusOf(prod, run(down), now);
    expect(s.ok).toBe(false);
    expect(plain(statusText(s))).toContain('\n  blog.worker@2.service activating (auto-restart) for 2s\n');
    const failed = statusOf(prod, run(facts({ jobs: [job({ service: 'failed', result: 'exit-code', exitStatus: 1 })] })), now);
    expect(failed.ok).toBe(false);
    expect(plain(statusText(failed)).split('\n')[0]).toBe('203.0.113.10  NOT OK');
    expect(plain(statusText(failed))).toContain('\n  job clearsessions  last 2026-12-01 03:00:04 UTC FAILED (exit-code, status 1), next');
  });

  it('reads facts without jobs (an app without schedule:)', () => {
    const { jobs: _, ...noJobs } = facts();
    const s = statusOf(bare, run(noJobs as StatusFacts), now);
    expect(s.jobs).toEqual([]);
    expect(plain(statusText(s))).not.toContain('  job ');
  });

  it('gives the jobs in JSON', () => {
    const s = statusOf(prod, run(facts({ jobs: [job({ service: 'failed', result: 'exit-code', exitStatus: 2 })] })), now);
    const doc = jsonOf({ kind: 'status', env: 'prod', hosts: [s], exitCode: 1 }) as { ok: boolean; hosts: { jobs: unknown[] }[] };
    expect(doc.ok).toBe(false);
    expect(doc.hosts[0]!.jobs).toEqual([
      {
        name: 'clearsessions',
        last: '2026-12-01T03:00:04Z',
        next: '2026-12-02T03:00:02Z',
        result: 'exit-code',
        exitStatus: 2,
        scheduled: true,
        ok: false,
        problem: 'the last run FAILED (exit-code, status 2)',
      },
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// stack logs

describe('stack logs with processes and jobs', () => {
  it('knows each process (all its instances) and each job (its service), and app or web for the gateway', () => {
    const journal = (names: string[]) => selectSources(prod, names).map((s) => (s.kind === 'journal' ? [s.unit, ...(s.also ?? [])] : [s.name]));
    expect(journal(['worker'])).toEqual([['blog.worker@*.service', 'blog.worker@1.service', 'blog.worker@2.service']]);
    expect(journal(['idle'])).toEqual([['blog.idle@*.service']]);
    expect(journal(['clearsessions'])).toEqual([['blog.job.clearsessions.service']]);
    expect(journal(['web'])).toEqual(journal(['app']));
    expect(journal(['app'])).toEqual([['blog.service'], ['blog.socket']]);
  });

  it('shows everything, each source once, when no name is given', () => {
    expect(selectSources(prod, []).map((s) => s.name)).toEqual([
      'blog.service',
      'blog.socket',
      'nginx access',
      'nginx error',
      'blog.worker@*.service',
      'blog.beat@*.service',
      'blog.idle@*.service',
      'blog.job.clearsessions.service',
      'blog.job.report.service',
    ]);
    expect(selectSources(prod, ['app', 'web', 'worker', 'worker']).map((s) => s.name)).toEqual(['blog.service', 'blog.socket', 'blog.worker@*.service']);
  });

  it('refuses an unknown name and lists the names it knows', () => {
    expect(() => selectSources(prod, ['celery'])).toThrow(UsageError);
    try {
      selectSources(prod, ['celery']);
    } catch (err) {
      expect((err as UsageError).message).toBe('no process "celery" to show logs of');
      expect((err as UsageError).hint).toBe('processes: app, web, nginx, worker, beat, idle, clearsessions, report');
    }
    expect(() => selectSources(bare, ['worker'])).toThrow(/no process "worker"/);
  });

  it("passes a process's instances after the pattern, following too", () => {
    const sources = selectSources(prod, ['worker', 'clearsessions']);
    const script = logsScript(sources, { lines: 20, since: null, grep: '', follow: false });
    expect(script).toContain("logs_journal 'blog.worker@*.service' 20 '' '' blog.worker@1.service blog.worker@2.service\n");
    expect(script).toContain("logs_journal blog.job.clearsessions.service 20 '' ''\n");
    const follow = logsScript(sources, { lines: 5, since: null, grep: 'x', follow: true });
    expect(follow).toContain("logs_journal 'blog.worker@*.service' 5 '' x -f blog.worker@1.service blog.worker@2.service &\n");
    expect(spawnSync('dash', ['-n', '-c', follow]).status).toBe(0);
  });

  it('asks journalctl for the pattern and each instance, labelled with the pattern (logs_journal)', () => {
    const journalctl = `printf '2026-12-01T05:00:01.000000+00:00 srv celery[7]: %s\\n' "$*"`;
    const r = dash(
      `${shellLibrary('logs.sh')}\nlogs_journal 'blog.worker@*.service' 5 @1796083200 '' blog.worker@1.service blog.worker@2.service\nlogs_journal blog.service 5 '' '' -f`,
      { journalctl },
    );
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([
      'journalctl --quiet --no-pager -o short-iso-precise -u blog.worker@*.service -u blog.worker@1.service -u blog.worker@2.service --since @1796083200',
      'journalctl --quiet --no-pager -o short-iso-precise -u blog.service -f -n 5',
    ]);
    expect(r.stdout.split('\n')[0]).toMatch(/^log\tblog\.worker@\*\.service\t2026-12-01T05:00:01\.000000\+00:00 srv celery\[7\]: /);
  });
});

// ---------------------------------------------------------------------------------------------
// stack restart

describe('stack restart with processes', () => {
  it('restarts the web then every instance by default, and one process by its name', () => {
    expect(restartUnits(prod, undefined)).toEqual({
      web: ['blog.service'],
      instances: ['blog.worker@1.service', 'blog.worker@2.service', 'blog.beat@1.service'],
    });
    expect(restartUnits(prod, 'app')).toEqual({ web: ['blog.service'], instances: [] });
    expect(restartUnits(prod, 'web')).toEqual({ web: ['blog.service'], instances: [] });
    expect(restartUnits(prod, 'worker')).toEqual({ web: [], instances: ['blog.worker@1.service', 'blog.worker@2.service'] });
    expect(restartUnits(bare, undefined)).toEqual({ web: ['blog.service'], instances: [] });
  });

  it('refuses an unknown name, a job and a process scaled to 0, saying what to do', () => {
    const error = (name: string) => {
      try {
        restartUnits(prod, name);
      } catch (err) {
        return { message: (err as UsageError).message, hint: (err as UsageError).hint, usage: err instanceof UsageError };
      }
      throw new Error('no error');
    };
    expect(error('celery')).toEqual({ message: 'no process "celery" to restart', hint: 'processes: app, web, worker, beat, idle', usage: true });
    expect(error('clearsessions')).toEqual({
      message: 'clearsessions is a scheduled job: nothing of it runs to restart',
      hint: 'stack schedule run prod clearsessions runs it now',
      usage: true,
    });
    expect(error('idle')).toMatchObject({ message: 'idle has scale 0: no instance runs to restart' });
  });

  const ctx = {
    layout,
    lock: { dir: '/var/lock/stack/blog', token: 'T' },
    audit: { file: '/var/log/stack/blog.log', who: 'me@here', command: 'restart prod' },
  };
  const health = {
    path: '/health',
    host: 'blog.example.com',
    https: false,
    app: 'blog.service',
    status: 200,
    timeout: 3,
    retries: 20,
  };
  /** The lines after the library: the script's own. */
  const own = (script: string) => script.slice(script.indexOf('trap on_exit EXIT'));

  it('restarts the web, checks its health, then restarts the instances as a deploy does and waits for them to stay up', () => {
    const script = restartUnitsScript(ctx, health, restartUnits(prod, undefined));
    const lines = own(script).split('\n');
    const at = (text: string) => lines.findIndex((l) => l.startsWith(text));
    expect(at('run_handler')).toBeGreaterThan(0);
    expect(at('health_ok')).toBeGreaterThan(at('run_handler'));
    expect(lines).toContain("parts_run restart blog.worker@1.service blog.worker@2.service blog.beat@1.service || fail 'restart processes'");
    expect(lines).toContain("parts_settle 3 blog.worker@1.service blog.worker@2.service blog.beat@1.service || fail 'processes'");
    expect(at('parts_run restart')).toBeGreaterThan(at('health_ok'));
    expect(at("audit ok ''")).toBeGreaterThan(at('parts_settle'));
    expect(script).toContain('LOCK_RELEASE=yes');
    expect(spawnSync('dash', ['-n', '-c', script]).status).toBe(0);
  });

  it('restarts only the instances of one process, without a health check of the web', () => {
    const script = own(restartUnitsScript(ctx, health, restartUnits(prod, 'worker')));
    expect(script).not.toContain('run_handler');
    expect(script).not.toContain('health_ok');
    expect(script).not.toContain('HEALTH_URL');
    expect(script).toContain("step 'restart blog.worker@1.service blog.worker@2.service'\n");
    expect(script).toContain("parts_settle 3 blog.worker@1.service blog.worker@2.service || fail 'processes'\n");
  });

  it('restarts the web alone as before', () => {
    const script = own(restartUnitsScript(ctx, health, restartUnits(prod, 'app')));
    expect(script).toContain("run_handler 'systemctl restart blog.service' blog.service || fail 'restart blog.service'\n");
    expect(script).toContain('health_ok');
    expect(script).not.toContain('parts_');
  });
});

// ---------------------------------------------------------------------------------------------
// stack schedule

describe('stack schedule run', () => {
  it('knows the jobs of the inventory, and lists them for a name it does not know', () => {
    expect(jobNamed(prod, 'report').on).toBe('Mon *-*-* 07:00:00');
    expect(() => jobNamed(prod, 'clear')).toThrow(UsageError);
    try {
      jobNamed(prod, 'clear');
    } catch (err) {
      expect((err as UsageError).message).toBe('prod has no job "clear"');
      expect((err as UsageError).hint).toBe('jobs: clearsessions, report');
    }
    expect(() => jobNamed(bare, 'clearsessions')).toThrow(/bare has no scheduled jobs, so no job "clearsessions"/);
  });

  const ctx = { layout, lock: null, audit: { file: '/var/log/stack/blog.log', who: 'me@here', command: 'schedule run prod clearsessions' } };

  it('starts the job through its unit, takes no lock, and records how the run ended', () => {
    const script = scheduleRunScript(ctx, 'clearsessions', 30);
    const own = script.slice(script.indexOf('trap on_exit EXIT'));
    expect(own).toContain("step 'run blog.job.clearsessions.service'\n");
    expect(own).toContain('schedule_run blog.job.clearsessions /srv/blog/current 30 clearsessions\n');
    expect(script).toContain("LOCK_TOKEN_FILE=''");
    expect(script).not.toContain('hold_lock\n');
    expect(script).toContain('AUDIT_COMMAND=\'"schedule run prod clearsessions"\'');
    expect(spawnSync('dash', ['-n', '-c', script]).status).toBe(0);
  });

  /** job_run under dash: a live release at $DIR/current, systemctl and journalctl as stand-ins. */
  function jobRun(o: { parts?: string | null; live?: boolean; result: string; status: string; start: number; newRun?: boolean; audited?: boolean }) {
    const dir = temporary('stack-job-');
    const current = path.join(dir, 'current');
    mkdirSync(path.join(dir, 'releases/1/.stack'), { recursive: true });
    if (o.live !== false) symlinkSync('releases/1', current);
    if (o.parts !== null)
      writeFileSync(path.join(dir, 'releases/1/.stack/parts'), o.parts ?? 'blog.worker@1.service\nblog.job.report.timer blog.job.clearsessions.timer\n');
    const systemctl = `
case "$1 $3" in
  "start "*) echo "Job for $2 failed." >&2; ${o.newRun === false ? ':' : `printf new > "$STUB_DIR/.id"`}; exit ${o.start} ;;
  "show InvocationID") cat "$STUB_DIR/.id" 2>/dev/null || echo old ;;
  "show Result") echo ${o.result} ;;
  "show ExecMainStatus") echo ${o.status} ;;
esac`;
    const journalctl = `[ "$1" = --sync ] && exit 0
printf '2026-12-01T05:00:0%s.000000+00:00 srv python[9]: line %s\\n' 1 one 2 two 3 three`;
    const run = o.audited
      ? `audit() { echo "audit $*"; }\nschedule_run blog.job.clearsessions '${current}' 2 clearsessions`
      : `job_run blog.job.clearsessions '${current}' 2`;
    return dash(`${shellLibrary('logs.sh')}\nTMPD=$(mktemp -d)\n${run}; echo "rc=$?"; rm -rf "$TMPD"`, {
      systemctl,
      journalctl,
    });
  }

  it('runs it, waits for the end, and gives the result and the last lines of that run (job_run)', () => {
    const r = jobRun({ result: 'success', status: '0', start: 0 });
    expect(r.calls).toContain('systemctl start blog.job.clearsessions.service');
    expect(r.calls).toContain('journalctl --sync');
    expect(r.calls).toContain('journalctl --quiet --no-pager -o short-iso-precise _SYSTEMD_INVOCATION_ID=new + INVOCATION_ID=new');
    expect(r.stdout).toMatch(/^jobrun\tsuccess\t0\t\d+\t0\n/);
    expect(r.stdout).toContain('rc=0');
    const run = parseJobRun(r.stdout);
    expect(run).toMatchObject({ missing: null, result: 'success', exitStatus: 0, startCode: 0, ok: true });
    // The last N (2) lines of the run.
    expect(run.lines.map((l) => l.text)).toEqual(['python[9]: line two', 'python[9]: line three']);
    expect(run.lines[0]!.source).toBe('blog.job.clearsessions.service');
  });

  it('says how a failed run ended, with its lines, and returns 1', () => {
    const r = jobRun({ result: 'exit-code', status: '2', start: 1 });
    expect(r.stdout).toContain('rc=1');
    expect(r.stderr).toContain('Job for blog.job.clearsessions.service failed.');
    const run = parseJobRun(r.stdout);
    expect(run).toMatchObject({ result: 'exit-code', exitStatus: 2, startCode: 1, ok: false });
    expect(run.lines).toHaveLength(2);
    expect(describeJobRun({ ...run, seconds: 3 })).toBe('FAILED (exit-code, status 2) after 3s');
    expect(describeJobRun({ ...run, ok: true, result: 'success', seconds: 4 })).toBe('success in 4s');
  });

  it('refuses when no release is live or the live one has no such job, and starts nothing', () => {
    const none = jobRun({ live: false, result: 'success', status: '0', start: 0 });
    expect(none.stdout).toBe('jobmissing\trelease\nrc=2\n');
    expect(none.calls.filter((c) => c.startsWith('systemctl start'))).toEqual([]);
    expect(parseJobRun(none.stdout)).toMatchObject({ missing: 'release', ok: false });
    const other = jobRun({ parts: 'blog.worker@1.service\nblog.job.report.timer\n', result: 'success', status: '0', start: 0 });
    expect(other.stdout).toBe('jobmissing\tjob\nrc=2\n');
    expect(other.calls).toEqual([]);
    // A release recorded before stack ran jobs has no list: then the unit file decides (none here).
    const old = jobRun({ parts: null, result: 'success', status: '0', start: 0 });
    expect(parseJobRun(old.stdout).missing).toBe('job');
  });

  it('records how the run ended in the audit log, and nothing when it refused (schedule_run)', () => {
    const ok = jobRun({ result: 'success', status: '0', start: 0, audited: true });
    expect(ok.stdout).toMatch(/\naudit ok \nrc=0\n$/);
    const failed = jobRun({ result: 'exit-code', status: '2', start: 1, audited: true });
    expect(failed.stdout).toMatch(/\naudit failed job clearsessions\nrc=0\n$/);
    const refused = jobRun({ live: false, result: 'success', status: '0', start: 0, audited: true });
    expect(refused.stdout).toBe('jobmissing\trelease\nrc=0\n');
  });

  it('shows no lines of an earlier run when systemd could not start this one', () => {
    const r = jobRun({ result: 'success', status: '0', start: 5, newRun: false });
    expect(r.stdout).toContain('rc=1');
    expect(r.calls.filter((c) => c.startsWith('journalctl'))).toEqual([]);
    const run = parseJobRun(r.stdout);
    expect(run).toMatchObject({ startCode: 5, ok: false, lines: [] });
    expect(describeJobRun(run)).toBe('systemd could not start it');
  });
});

describe('stack schedule list', () => {
  it("shows each job's schedule and runs under its host, NOT OK with a failed one", () => {
    const text = plain(
      scheduleText('203.0.113.10', [
        { on: 'daily', verdict: judgeJob(job()) },
        { on: 'Mon *-*-* 07:00:00', verdict: judgeJob(job({ name: 'report', service: 'failed', result: 'exit-code', exitStatus: 1 })) },
      ]),
    );
    expect(text).toBe(
      [
        '203.0.113.10  NOT OK',
        '  clearsessions  daily               last 2026-12-01 03:00:04 UTC (success), next 2026-12-02 03:00:02 UTC',
        '  report         Mon *-*-* 07:00:00  last 2026-12-01 03:00:04 UTC FAILED (exit-code, status 1), next 2026-12-02 03:00:02 UTC',
        '',
      ].join('\n'),
    );
  });
});

describe('the shell functions', () => {
  it('pass shellcheck', () => {
    const files = ['facts.sh', 'logs.sh'].map((f) => path.join(ROOT, 'src/remote/sh', f));
    const r = spawnSync('shellcheck', ['-s', 'sh', '-S', 'warning', ...files], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
