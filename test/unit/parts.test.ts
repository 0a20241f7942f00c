/**
 * The app's processes and scheduled jobs, the pure parts: `processes:`, `schedule:` and `redis:`
 * in the inventory (defaults, environment overrides, located problems), the units rendered for
 * them, what a deploy plans from the facts fact_parts reports, and the lines the activation and
 * rollback scripts carry for them. Operating them (status, logs, restart, schedule run) is
 * parts-operate.test.ts's; the real systemd is test/e2e/processes.test.ts's.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { healthCheckFor } from '../../src/apply/deploy-host.js';
import { type ActivateOptions, activateScript, REMOTE_LIBRARY, rollbackScript, type RunContext } from '../../src/apply/scripts.js';
import { checkSystemdUnits } from '../../src/checks/systemd.js';
import { InventoryError } from '../../src/errors.js';
import { type GatheredFacts, parseFacts } from '../../src/facts/host.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Environment } from '../../src/inventory/resolve.js';
import { describeParts, type PartsPlan, partsChanges, planParts } from '../../src/plan/parts.js';
import { type CodeVersion, type Plan, planDeploy } from '../../src/plan/plan.js';
import { displayContent } from '../../src/secrets/secret.js';
import { buildDesiredState, configFilesFor, type DesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { unitQuoted } from '../../src/views/processes.js';
import { convergedFacts, SYSTEM_VENV } from '../helpers/plans.js';

const FILE = 'inventory.yml';
const UNITS = '/etc/systemd/system';
const LIVE = '20261130T120000.000Z';
const NEW = '20261201T000000.000Z';

// ---------------------------------------------------------------------------------------------
// Inventories
// ---------------------------------------------------------------------------------------------

/** The processes and the job most tests start from (top-level lines). */
const PARTS = [
  'processes:',
  '  worker: { command: "celery -A blog worker -l info", scale: 2, stop_timeout: 5m }',
  '  beat: { command: "celery -A blog beat" }',
  'schedule:',
  '  clearsessions: { command: "python manage.py clearsessions", on: daily }',
];

/**
 * An inventory as text, so that every line is known: `top` lines right after app's (static files
 * and uploads, so that units get their paths; a line indented two spaces is still app's), `prod`
 * lines in environment prod (indented four); environment stage sets nothing of its own.
 */
function inventoryText(top: string[] = [], prod: string[] = []): string {
  const environment = (name: string, own: string[]) => [`  ${name}:`, `    domains: [${name}.example.com]`, '    hosts: [{ address: 203.0.113.10 }]', ...own];
  return `${[
    'app:',
    '  name: blog',
    '  wsgi: blog.wsgi:application',
    '  static: { url: /static/, path: static }',
    '  media: { url: /media/, path: /srv/blog/media }',
    ...top,
    'environments:',
    ...environment('prod', prod),
    ...environment('stage', []),
  ].join('\n')}\n`;
}

const environments = (top: string[], prod: string[] = []) => parseInventory(inventoryText(top, prod), FILE).environments;

/** What an environment runs besides the web. */
const partsOf = (e: Environment) => ({ processes: e.processes, schedule: e.schedule, redis: e.redis });

/**
 * The one problem the loader reports for `text` (the path bad-inventories.test.ts tests), at the
 * one line holding `marker`, for `field`: also in the message a person reads (file:line:column: field:).
 */
function expectOneProblem(text: string, marker: string, field: string, message: string): void {
  const hits = text.split('\n').flatMap((l, i) => (l.includes(marker) ? [i + 1] : []));
  expect(hits, `${marker} must be on one line of:\n${text}`).toHaveLength(1);
  let thrown: unknown;
  try {
    parseInventory(text, FILE);
  } catch (err) {
    thrown = err;
  }
  if (!(thrown instanceof InventoryError)) throw thrown ?? new Error(`accepted, but it should be refused:\n${text}`);
  expect(thrown.problems).toEqual([{ file: FILE, line: hits[0], column: expect.any(Number), field, message: expect.stringContaining(message) }]);
  expect(thrown.message).toMatch(new RegExp(`^${FILE}:${hits[0]}:\\d+: ${field.replace(/[.[\]]/g, '\\$&')}: `));
}

describe('processes:, schedule: and redis: in the inventory', () => {
  const worker = (o: object = {}) => ({ name: 'worker', command: 'celery -A blog worker', scale: 1, stopSeconds: 60, singleton: false, ...o });
  const job = (o: object = {}) => ({ name: 'clearsessions', command: 'python manage.py clearsessions', on: 'daily', timeoutSeconds: 3600, ...o });

  it.each([
    ['a process: scale 1, a stop timeout of 60 s', ['processes:', '  worker: { command: "celery -A blog worker" }'], { processes: [worker()] }],
    ['stop_timeout: 5m', ['processes:', '  worker: { command: "celery -A blog worker", stop_timeout: 5m }'], { processes: [worker({ stopSeconds: 300 })] }],
    [
      'stop_timeout: 90 (seconds)',
      ['processes:', '  worker: { command: "celery -A blog worker", stop_timeout: 90 }'],
      { processes: [worker({ stopSeconds: 90 })] },
    ],
    [
      'stop_timeout: 1h, the most',
      ['processes:', '  worker: { command: "celery -A blog worker", stop_timeout: 1h }'],
      { processes: [worker({ stopSeconds: 3600 })] },
    ],
    ['scale: 0', ['processes:', '  worker: { command: "celery -A blog worker", scale: 0 }'], { processes: [worker({ scale: 0 })] }],
    ['a job: a timeout of an hour', ['schedule:', '  clearsessions: { command: "python manage.py clearsessions", on: daily }'], { schedule: [job()] }],
    [
      'a job with timeout: 90s',
      ['schedule:', '  clearsessions: { command: "python manage.py clearsessions", on: daily, timeout: 90s }'],
      { schedule: [job({ timeoutSeconds: 90 })] },
    ],
    [
      'a job with timeout: 24h, the most',
      ['schedule:', '  clearsessions: { command: "python manage.py clearsessions", on: "Mon *-*-* 07:00:00", timeout: 24h }'],
      { schedule: [job({ on: 'Mon *-*-* 07:00:00', timeoutSeconds: 86400 })] },
    ],
    ['redis: true: 256mb, noeviction', ['redis: true'], { redis: { maxmemory: '256mb', policy: 'noeviction' } }],
    ['redis: { maxmemory: 1gb }', ['redis: { maxmemory: 1gb }'], { redis: { maxmemory: '1gb', policy: 'noeviction' } }],
    ['redis: false', ['redis: false'], {}],
    ['nothing', [], {}],
  ])('%s', (_, top, expected) => {
    const { prod, stage } = environments(top);
    const want = { processes: [], schedule: [], redis: null, ...expected };
    expect(partsOf(prod!)).toEqual(want);
    expect(partsOf(stage!)).toEqual(want);
  });

  const beat = { name: 'beat', command: 'celery -A blog beat', scale: 1, stopSeconds: 60, singleton: false };
  const topWorker = { name: 'worker', command: 'celery -A blog worker -l info', scale: 2, stopSeconds: 300, singleton: false };
  const topJob = job();

  it.each([
    ['worker: { scale: 4 } keeps the command and the stop timeout', ['processes:', '  worker: { scale: 4 }'], [{ ...topWorker, scale: 4 }, beat], [topJob]],
    ['worker: { stop_timeout: 30s } keeps the scale', ['processes:', '  worker: { stop_timeout: 30s }'], [{ ...topWorker, stopSeconds: 30 }, beat], [topJob]],
    [
      'worker: { command } replaces the command only',
      ['processes:', '  worker: { command: "rq worker" }'],
      [{ ...topWorker, command: 'rq worker' }, beat],
      [topJob],
    ],
    ['worker: null removes it', ['processes:', '  worker: null'], [beat], [topJob]],
    [
      'a process of its own, with its command, comes after the inherited ones',
      ['processes:', '  mailer: { command: "python -m mailer" }'],
      [topWorker, beat, { name: 'mailer', command: 'python -m mailer', scale: 1, stopSeconds: 60, singleton: false }],
      [topJob],
    ],
    ['clearsessions: { on: hourly } keeps the command', ['schedule:', '  clearsessions: { on: hourly }'], [topWorker, beat], [{ ...topJob, on: 'hourly' }]],
    ['clearsessions: null removes it', ['schedule:', '  clearsessions: null'], [topWorker, beat], []],
  ])('an environment: %s; the other keeps the top level', (_, own, processes, schedule) => {
    const { prod, stage } = environments(
      PARTS,
      own.map((l) => `    ${l}`),
    );
    expect(prod!.processes).toEqual(processes);
    expect(prod!.schedule).toEqual(schedule);
    expect(stage!.processes).toEqual([topWorker, beat]);
    expect(stage!.schedule).toEqual([topJob]);
  });

  it.each([
    ['true', 'false', null, { maxmemory: '256mb', policy: 'noeviction' }],
    ['false', 'true', { maxmemory: '256mb', policy: 'noeviction' }, null],
    ['{ maxmemory: 64mb }', '{ policy: allkeys-lru }', { maxmemory: '256mb', policy: 'allkeys-lru' }, { maxmemory: '64mb', policy: 'noeviction' }],
  ])('redis: %s at the top, %s in prod', (top, own, prodRedis, stageRedis) => {
    const { prod, stage } = environments([`redis: ${top}`], [`    redis: ${own}`]);
    expect(prod!.redis).toEqual(prodRedis);
    expect(stage!.redis).toEqual(stageRedis);
  });

  it.each([
    [
      'processes',
      '      mailer: { scale: 2 }',
      'environments.prod.processes.mailer',
      'mailer is not in the top-level processes, so it needs its own command here',
    ],
    [
      'schedule',
      '      report: { on: weekly }',
      'environments.prod.schedule.report',
      'report is not in the top-level schedule, so it needs its own command here',
    ],
  ])('an environment adding to %s without a command: one problem, at the entry', (section, entry, field, message) => {
    const text = inventoryText(PARTS, [`    ${section}:`, entry]);
    expectOneProblem(text, entry.trim(), field, message);
  });

  // Each inventory has one mistake; with two environments, a top-level one is still reported once.
  const BAD_TOP: [string, string[], string, string, string][] = [
    ['scale 33', ['processes:', '  worker: { command: celery, scale: 33 }'], 'scale: 33', 'processes.worker.scale', 'scale must be at most 32'],
    ['scale -1', ['processes:', '  worker: { command: celery, scale: -1 }'], 'scale: -1', 'processes.worker.scale', 'scale must be at least 0'],
    ['stop_timeout 2h', ['processes:', '  worker: { command: celery, stop_timeout: 2h }'], '2h', 'processes.worker.stop_timeout', 'from 1s to 1h'],
    ['a command with a newline', ['processes:', '  worker: { command: "celery\\nrm -rf /" }'], 'celery', 'processes.worker.command', 'a process is one line'],
    ['an empty command', ['schedule:', '  report: { command: "", on: daily }'], 'report', 'schedule.report.command', 'an empty command does nothing'],
    ['a process without a command', ['processes:', '  worker: { scale: 2 }'], 'worker', 'processes.worker.command', 'is required but missing'],
    ['a job without on', ['schedule:', '  report: { command: "python report.py" }'], 'report', 'schedule.report.on', 'is required but missing'],
    ['on: "25:00"', ['schedule:', '  report: { command: "python report.py", on: "25:00" }'], '25:00', 'schedule.report.on', 'hour 25 is out of range'],
    [
      'timeout: 25h',
      ['schedule:', '  report: { command: "python report.py", on: daily, timeout: 25h }'],
      '25h',
      'schedule.report.timeout',
      'a job timeout must be from 1s to 24h',
    ],
    ['the name Worker', ['processes:', '  Worker: { command: celery }'], 'Worker', 'processes.Worker', '"Worker" is not a valid process name'],
    ['a name of 21 characters', ['processes:', `  ${'w'.repeat(21)}: { command: celery }`], 'www', `processes.${'w'.repeat(21)}`, 'at most 20 characters'],
    [
      'the job name clear_sessions',
      ['schedule:', '  clear_sessions: { command: x, on: daily }'],
      'clear_',
      'schedule.clear_sessions',
      'is not a valid job name',
    ],
    ['a process named app', ['processes:', '  app: { command: celery }'], 'app: {', 'processes.app', 'app already names the web in stack logs'],
    ['a process named web', ['processes:', '  web: { command: celery }'], 'web: {', 'processes.web', 'web already names the web in stack logs'],
    ['a process named nginx', ['processes:', '  nginx: { command: celery }'], 'nginx: {', 'processes.nginx', 'nginx already names nginx in stack logs'],
    ['a job named web', ['schedule:', '  web: { command: x, on: daily }'], 'web: {', 'schedule.web', 'web already names the web'],
    [
      'a process and a job named alike',
      ['processes:', '  worker: { command: celery }', 'schedule:', '  worker: { command: x, on: daily }'],
      'worker: { command: x',
      'schedule.worker',
      'worker already names the process worker',
    ],
    ['redis policy lru', ['redis: { policy: lru }'], 'lru', 'redis.policy', "must be one of Redis's maxmemory policies"],
    ['redis maxmemory 256', ['redis: { maxmemory: 256 }'], '256', 'redis.maxmemory', 'write a size in kb, mb or gb'],
    [
      'REDIS_URL in app.env with redis',
      ['  env: { REDIS_URL: "redis://cache:6379/0" }', 'redis: true'],
      'REDIS_URL',
      'app.env.REDIS_URL',
      'REDIS_URL: stack sets it from redis:',
    ],
    [
      'CELERY_BROKER_URL in app.secrets with redis',
      ['  secrets: [CELERY_BROKER_URL]', 'redis: true'],
      'CELERY_BROKER_URL',
      'app.secrets[0]',
      'CELERY_BROKER_URL: stack sets it from redis:',
    ],
  ];

  it.each(BAD_TOP)('refuses %s at the top level: one problem, at its line, naming the field', (_, top, marker, field, message) => {
    expectOneProblem(inventoryText(top), marker, field, message);
  });

  const BAD_OWN: [string, string[], string, string, string][] = [
    ['scale 33', ['processes:', '  worker: { scale: 33 }'], '33', 'environments.prod.processes.worker.scale', 'scale must be at most 32'],
    ['the name Worker', ['processes:', '  Worker: { command: celery }'], 'Worker', 'environments.prod.processes.Worker', 'is not a valid process name'],
    ['a process named app', ['processes:', '  app: { command: celery }'], 'app: {', 'environments.prod.processes.app', 'app already names the web'],
    [
      'a job named like an inherited process',
      ['schedule:', '  worker: { command: x, on: daily }'],
      'worker: { command: x',
      'environments.prod.schedule.worker',
      'worker already names the process worker',
    ],
    ['on: "25:00"', ['schedule:', '  clearsessions: { on: "25:00" }'], '25:00', 'environments.prod.schedule.clearsessions.on', 'hour 25 is out of range'],
    ['redis policy lru', ['redis: { policy: lru }'], 'lru', 'environments.prod.redis.policy', "must be one of Redis's maxmemory policies"],
    [
      'REDIS_URL in app.env with redis',
      ['redis: true', 'app:', '  env: { REDIS_URL: x }'],
      'REDIS_URL',
      'environments.prod.app.env.REDIS_URL',
      'stack sets it from redis:',
    ],
  ];

  it.each(BAD_OWN)('refuses %s in an environment: one problem, at its line, naming the field', (_, own, marker, field, message) => {
    expectOneProblem(
      inventoryText(
        PARTS,
        own.map((l) => `    ${l}`),
      ),
      marker,
      field,
      message,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Units
// ---------------------------------------------------------------------------------------------

/**
 * What systemd makes of a double-quoted ExecStart= argument, step by step: specifiers are
 * expanded on the line (`%%` is a `%`), the word is unquoted with C escapes, and at exec time
 * `$$` is a `$`. Anything else systemd would expand or refuse (a specifier, a variable, an
 * unknown escape, a second word) throws.
 */
function systemdReads(argument: string): string {
  const specified = argument.replace(/%(%?)/g, (whole, escaped: string) => {
    if (escaped) return '%';
    throw new Error(`systemd would expand the specifier at ${whole} in ${argument}`);
  });
  const word = /^"((?:[^"\\]|\\.)*)"$/s.exec(specified);
  if (!word) throw new Error(`not one double-quoted word: ${specified}`);
  const unquoted = word[1]!.replace(/\\(.)/gs, (_, c: string) => {
    if (c === '\\' || c === '"') return c;
    throw new Error(`systemd would read \\${c} as an escape`);
  });
  return unquoted.replace(/\$(\$?)/g, (_, escaped: string) => {
    if (escaped) return '$';
    throw new Error(`systemd would expand a variable in ${unquoted}`);
  });
}

async function desiredOf(env: Environment): Promise<DesiredState> {
  return buildDesiredState(env, env.hosts[0]!, { engine: new TemplateEngine('/nonexistent', '/'), facts: { nginxVersion: [1, 22, 1], cpus: 2 } });
}

const fileText = (d: DesiredState, path: string): string => {
  const f = d.files.find((x) => x.path === path);
  if (!f) return expect.fail(`${path} is not among ${d.files.map((x) => x.path).join(', ')}`);
  return displayContent(f.content);
};

const linesOf = (unit: string) => unit.split('\n');

/** The hardening block of a unit: from its comment to the blank line after it. */
function hardening(unit: string): string[] {
  const lines = linesOf(unit);
  const start = lines.indexOf('# Hardening: the app sees a read-only system and writes only where it must.');
  expect(start).toBeGreaterThan(0);
  const end = lines.indexOf('', start);
  return lines.slice(start, end < 0 ? undefined : end);
}

describe('unitQuoted: a command as one argument of ExecStart=', () => {
  it.each([
    ['celery -A blog worker -l info', '"celery -A blog worker -l info"'],
    ['date +%Y-%m-%d', '"date +%%Y-%%m-%%d"'],
    ['echo %i %n', '"echo %%i %%n"'],
    ['echo $HOME $(id -u) $1', '"echo $$HOME $$(id -u) $$1"'],
    ['echo "quoted"', '"echo \\"quoted\\""'],
    ["printf 'a\\nb'", '"printf \'a\\\\nb\'"'],
    ['echo \\', '"echo \\\\"'],
    ['100% of $$', '"100%% of $$$$"'],
    ['sh -c "echo \\"$1%\\""', '"sh -c \\"echo \\\\\\"$$1%%\\\\\\"\\""'],
    ["echo 'single' ; true && false | cat", '"echo \'single\' ; true && false | cat"'],
  ])('%s -> %s, which systemd reads back as written', (command, quoted) => {
    expect(unitQuoted(command)).toBe(quoted);
    expect(systemdReads(quoted)).toBe(command);
  });

  it('the reader itself refuses what systemd would expand', () => {
    for (const raw of ['"echo %i"', '"echo $HOME"', '"a\\nb"', '"a" "b"', 'a']) expect(() => systemdReads(raw), raw).toThrow();
  });
});

describe('the units of processes and jobs, rendered', async () => {
  // To systemd, printf's %7s is a bad specifier, %h the home folder, $HOME a variable, a lone backslash an unknown escape.
  const TRICKY = String.raw`printf '%7s %s\n' "$HOME" 100% \ %h`;
  const env = environments([
    'processes:',
    '  worker: { command: "celery -A blog worker -l info", scale: 2, stop_timeout: 5m }',
    `  odd: { command: ${JSON.stringify(TRICKY)}, scale: 0 }`,
    'schedule:',
    '  clearsessions: { command: "python manage.py clearsessions", on: "*-*-* 03:00:00", timeout: 90s }',
  ]).prod!;
  const d = await desiredOf(env);
  const app = fileText(d, `${UNITS}/blog.service`);
  const worker = fileText(d, `${UNITS}/blog.worker@.service`);
  const odd = fileText(d, `${UNITS}/blog.odd@.service`);
  const jobService = fileText(d, `${UNITS}/blog.job.clearsessions.service`);
  const timer = fileText(d, `${UNITS}/blog.job.clearsessions.timer`);

  it('adds one template unit per process, a service and a timer per job, and the target, all checked by systemd', () => {
    const parts = d.files.filter((f) => f.path.startsWith(`${UNITS}/blog.`) && !['blog.service', 'blog.socket'].some((u) => f.path.endsWith(`/${u}`)));
    expect(parts.map((f) => [f.path, f.mode, f.owner, f.group, f.role, f.validate, f.notify])).toEqual(
      [
        `${UNITS}/blog.worker@.service`,
        `${UNITS}/blog.odd@.service`,
        `${UNITS}/blog.job.clearsessions.service`,
        `${UNITS}/blog.job.clearsessions.timer`,
        `${UNITS}/blog.target`,
      ].map((p) => [p, '0644', 'root', 'root', 'app', 'systemd', ['daemon-reload']]),
    );
    // scale 0: the template is there, no instance runs.
    expect(d.parts).toEqual({ instances: ['blog.worker@1.service', 'blog.worker@2.service'], timers: ['blog.job.clearsessions.timer'] });
    expect(d.services.at(-1)).toBe('blog.target');
  });

  it('runs the command through sh with exec, escaped for systemd', () => {
    expect(linesOf(worker)).toContain('ExecStart=/bin/sh -c "exec celery -A blog worker -l info"');
    const exec = linesOf(odd).find((l) => l.startsWith('ExecStart='))!;
    expect(exec.startsWith('ExecStart=/bin/sh -c ')).toBe(true);
    expect(systemdReads(exec.slice('ExecStart=/bin/sh -c '.length))).toBe(`exec ${TRICKY}`);
    expect(linesOf(jobService)).toContain('ExecStart=/bin/sh -c "exec python manage.py clearsessions"');
  });

  it.each([
    ['Type=exec'],
    ['KillMode=mixed'],
    ['KillSignal=SIGTERM'],
    ['TimeoutStopSec=300'],
    ['Restart=on-failure'],
    ['User=blog'],
    ['Group=blog'],
    ['WorkingDirectory=/srv/blog/current'],
    ['EnvironmentFile=/etc/blog/env'],
    ['Environment=PATH=/srv/blog/current/.venv/bin:/usr/local/bin:/usr/bin:/bin VIRTUAL_ENV=/srv/blog/current/.venv STACK_PROCESS=worker STACK_INSTANCE=%i'],
    ['PartOf=blog.target'],
    ['WantedBy=blog.target'],
  ])('the process unit has %s', (line) => {
    expect(linesOf(worker)).toContain(line);
  });

  it("has the web unit's hardening, line for line, in every unit that runs the app's code", () => {
    const web = hardening(app);
    expect(web).toContain('ReadWritePaths=-/srv/blog/media');
    expect(web.at(-1)).toBe('CapabilityBoundingSet=');
    expect(hardening(worker)).toEqual(web);
    expect(hardening(odd)).toEqual(web);
    expect(hardening(jobService)).toEqual(web);
  });

  it('runs a job as a oneshot bounded by its timeout, started by its timer only', () => {
    const lines = linesOf(jobService);
    expect(lines).toContain('Type=oneshot');
    expect(lines).toContain('TimeoutStartSec=90');
    expect(lines).toContain(
      'Environment=PATH=/srv/blog/current/.venv/bin:/usr/local/bin:/usr/bin:/bin VIRTUAL_ENV=/srv/blog/current/.venv STACK_JOB=clearsessions',
    );
    expect(lines).not.toContain('[Install]');
    expect(lines.filter((l) => /^(WantedBy|PartOf|Restart)=/.test(l))).toEqual([]);
  });

  it('fires the job by its calendar, catching up on a missed run, as part of the target', () => {
    const lines = linesOf(timer);
    for (const line of ['OnCalendar=*-*-* 03:00:00', 'Persistent=true', 'PartOf=blog.target', 'WantedBy=blog.target']) expect(lines).toContain(line);
  });

  it('passes systemd-analyze verify', async () => {
    const result = await checkSystemdUnits(configFilesFor(d, 'systemd'));
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });

  // The same argument with one of the escapes undone: systemd-analyze refuses each, so the check above can fail.
  it.each([
    ['%% written as %', (arg: string) => arg.replaceAll('%%', '%'), /Failed to resolve unit specifiers/],
    ['\\\\ written as \\', (arg: string) => arg.replaceAll('\\\\', '\\'), /unknown escape/],
  ])('systemd-analyze verify refuses the argument with %s', async (_, undo, said) => {
    const exec = linesOf(odd).find((l) => l.startsWith('ExecStart='))!;
    const content = odd.replace(exec, undo(exec));
    expect(content).not.toBe(odd);
    const result = await checkSystemdUnits([{ path: `${UNITS}/blog.odd@.service`, content }]);
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(said);
  });

  it.each([
    [[], 'After=network.target'],
    [['database: { engine: postgresql }'], 'After=network.target postgresql.service'],
    [['redis: true'], 'After=network.target redis-server@blog.service'],
    [['database: { engine: postgresql }', 'redis: true'], 'After=network.target postgresql.service redis-server@blog.service'],
  ])('with %j, starts after: %s', async (top, after) => {
    const withParts = await desiredOf(environments([...PARTS, ...top]).prod!);
    for (const unit of [`${UNITS}/blog.worker@.service`, `${UNITS}/blog.job.clearsessions.service`]) {
      expect(linesOf(fileText(withParts, unit)).filter((l) => l.startsWith('After='))).toEqual([after]);
    }
  });

  it('adds no unit, instance, timer or target for an app without processes and jobs', async () => {
    const bare = await desiredOf(environments([]).prod!);
    expect(bare.files.map((f) => f.path).filter((p) => /blog\.(target|job\.|[a-z-]+@)/.test(p))).toEqual([]);
    expect(bare.parts).toEqual({ instances: [], timers: [] });
    expect(bare.services).not.toContain('blog.target');
  });
});

// ---------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------

const W1 = 'blog.worker@1.service';
const W2 = 'blog.worker@2.service';
const W3 = 'blog.worker@3.service';
const B1 = 'blog.beat@1.service';
const T = 'blog.job.clearsessions.timer';
const M1 = 'blog.mailer@1.service';
const R = 'blog.job.report.timer';
const FILES = {
  worker: `${UNITS}/blog.worker@.service`,
  beat: `${UNITS}/blog.beat@.service`,
  clearsessions: [`${UNITS}/blog.job.clearsessions.service`, `${UNITS}/blog.job.clearsessions.timer`],
  mailer: `${UNITS}/blog.mailer@.service`,
  report: [`${UNITS}/blog.job.report.service`, `${UNITS}/blog.job.report.timer`],
};

/** fact_parts's records: `partfile PATH` per unit file, `partunit UNIT ENABLED ACTIVE` per unit. */
function partRecords(files: string[], units: [string, string, string][]): string[] {
  return [...files.map((f) => `partfile\t${f}`), ...units.map((u) => `partunit\t${u.join('\t')}`)];
}

/** A server where the inventory's processes and job run: every file there, every unit enabled and active. */
const RUNNING = partRecords(
  [FILES.worker, FILES.beat, ...FILES.clearsessions],
  [W1, W2, B1, T].map((u) => [u, 'enabled', 'active']),
);
/** Leftovers of a process (mailer) and a job (report) the inventory no longer has, still running. */
const GONE = partRecords(
  [FILES.mailer, ...FILES.report],
  [
    [M1, 'enabled', 'active'],
    [R, 'enabled', 'active'],
  ],
);

const plans = await (async () => {
  const env = environments(PARTS).prod!;
  const one = environments(PARTS, ['    processes:', '      worker: { scale: 1 }']).prod!;
  return { env, d: await desiredOf(env), one: await desiredOf(one), bare: await desiredOf(environments([]).prod!) };
})();
const { d } = plans;

/** The facts of a server converged on `d` (live on `sourceHash`), with these fact_parts records. */
const factsOf = (desired: DesiredState, records: string[], o: { sourceHash?: string; changed?: string } = {}): GatheredFacts =>
  parseFacts([convergedFacts(desired, { release: LIVE, sourceHash: o.sourceHash ?? 'same' }, o.changed), ...records].join('\n'));

const code = (sourceHash: string): CodeVersion => ({ id: NEW, sourceHash, requirements: null, venv: SYSTEM_VENV });

const plan = (o: Partial<PartsPlan>): PartsPlan => ({ restart: [], start: [], enable: [], stop: [], hold: [], timers: [T], remove: [], before: [], ...o });

/** fact_parts on a server where the worker ran at scale 3. */
const THREE = [...RUNNING, ...partRecords([], [[W3, 'enabled', 'active']])];
/** A server with nothing on it yet. */
const newServer = () => parseFacts('nginx\t1.22.1\nfree\t10000000');
const firstDeploy = () => planDeploy({ desired: d, facts: newServer(), code: code('new') });
/** The same code, the worker's unit changed: a configuration-only release. */
const configOnly = () => planDeploy({ desired: d, facts: factsOf(d, RUNNING, { changed: FILES.worker }), code: code('same') });
/** The worker from 3 to 1, the code and the configuration unchanged. */
const scaledDown = () => planDeploy({ desired: plans.one, facts: factsOf(plans.one, THREE), code: code('same') });

describe('planParts: what a deploy does to processes and jobs', () => {
  const CASES: [string, DesiredState, GatheredFacts, boolean, PartsPlan | null, number][] = [
    [
      'a first deploy: everything starts and is enabled, nothing restarts or is held',
      d,
      newServer(),
      true,
      plan({ start: [W1, W2, B1], enable: [W1, W2, B1, T] }),
      7,
    ],
    [
      'a release with everything running: every instance restarts, the running timer is held',
      d,
      factsOf(d, RUNNING),
      true,
      plan({ restart: [W1, W2, B1], hold: [T], before: [W1, W2, B1] }),
      0,
    ],
    ['no release, everything running: nothing restarts, nothing is held', d, factsOf(d, RUNNING), false, plan({ before: [W1, W2, B1] }), 0],
    [
      'scale 3 -> 1, releasing: @1 restarts, @2 and @3 stop',
      plans.one,
      factsOf(plans.one, THREE),
      true,
      plan({ restart: [W1, B1], stop: [W2, W3], hold: [T], before: [W1, W2, B1, W3] }),
      2,
    ],
    [
      'scale 3 -> 1, not releasing: @2 and @3 stop, @1 is left alone',
      plans.one,
      factsOf(plans.one, THREE),
      false,
      plan({ stop: [W2, W3], before: [W1, W2, B1, W3] }),
      2,
    ],
    [
      'a process and a job gone: their instance and timer stop, their three files go; the gone timer is held too',
      d,
      factsOf(d, [...RUNNING, ...GONE]),
      true,
      plan({ restart: [W1, W2, B1], stop: [M1, R], hold: [T, R], remove: [FILES.mailer, ...FILES.report], before: [W1, W2, B1, M1] }),
      5,
    ],
    [
      'failed, missing and disabled instances: started and enabled, never restarted; a failed leftover stops, an inactive one is left',
      d,
      factsOf(
        d,
        partRecords(
          [FILES.worker, FILES.beat, ...FILES.clearsessions],
          [
            [W1, 'enabled', 'activating'],
            [B1, 'disabled', 'failed'],
            [T, 'disabled', 'inactive'],
            [M1, 'disabled', 'failed'],
            ['blog.mailer@2.service', 'disabled', 'inactive'],
          ],
        ),
      ),
      true,
      plan({ restart: [W1], start: [W2, B1], enable: [W2, B1, T], stop: [M1], before: [W1] }),
      6,
    ],
    ['nothing desired, nothing there', plans.bare, factsOf(plans.bare, []), true, null, 0],
  ];

  it.each(CASES)('%s', (_, desired, facts, releasing, expected, changes) => {
    const p = planParts(desired, facts, releasing);
    expect(p).toEqual(expected);
    expect(partsChanges(p)).toBe(changes);
  });

  it('before lists running process instances only, never a running job service', () => {
    const p = planParts(d, factsOf(d, [...RUNNING, ...partRecords([], [['blog.job.clearsessions.service', 'static', 'active']])]), true)!;
    expect(p.before).toEqual([W1, W2, B1]);
    expect(p.restart).toEqual([W1, W2, B1]);
  });

  it('an inventory that drops every process and job: each leftover unit stops, each unit file goes', () => {
    const leftover = planParts(plans.bare, factsOf(plans.bare, RUNNING), true)!;
    expect(leftover).toEqual({
      restart: [],
      start: [],
      enable: [],
      stop: [W1, W2, B1, T],
      hold: [T],
      timers: [],
      remove: [FILES.worker, FILES.beat, ...FILES.clearsessions],
      before: [W1, W2, B1],
    });
  });

  it('describes the work for a person, and nothing when there is none', () => {
    const units: [string, string, string][] = [
      [W1, 'enabled', 'active'],
      [B1, 'disabled', 'failed'],
      [T, 'enabled', 'active'],
    ];
    const p = planParts(d, factsOf(d, [...partRecords([FILES.worker, FILES.beat, ...FILES.clearsessions], units), ...GONE]), true)!;
    expect(describeParts(p)).toEqual([
      `  hold the timers while the release switches: ${T} ${R}`,
      `  restart once the web is healthy (warm: SIGTERM, then their stop timeout): ${W1}`,
      `  start once the web is healthy: ${W2} ${B1}`,
      `  enable ${W2} ${B1}`,
      `  stop and disable (no longer in the inventory): ${M1} ${R}`,
      `  remove ${FILES.mailer} ${FILES.report.join(' ')}`,
    ]);
    expect(describeParts(planParts(d, factsOf(d, RUNNING), false)!)).toEqual([]);
  });
});

describe('planDeploy with processes and jobs', () => {
  it('on a new server: the target is enabled, never started; the processes start after the health check', () => {
    const p = firstDeploy();
    expect(p.release).not.toBeNull();
    expect(p.enable).toContain('blog.target');
    expect(p.start).not.toContain('blog.target');
    expect(p.parts).toEqual(plan({ start: [W1, W2, B1], enable: [W1, W2, B1, T] }));
  });

  it('a converged server with the target stopped: nothing starts it, while a stopped nginx is started', () => {
    const converged = convergedFacts(d, { release: LIVE, sourceHash: 'same' });
    const stopped = [converged.replace('service\tblog.target\tenabled\tactive', 'service\tblog.target\tenabled\tinactive'), ...RUNNING].join('\n');
    expect(stopped).toContain('service\tblog.target\tenabled\tinactive');
    const p = planDeploy({
      desired: d,
      facts: parseFacts(stopped.replace('service\tnginx\tenabled\tactive', 'service\tnginx\tenabled\tinactive')),
      code: code('same'),
    });
    expect(p.start).toEqual(['nginx']);
    expect(p.release).toBeNull();
    expect(p.parts).toEqual(plan({ before: [W1, W2, B1] }));
  });

  it.each([
    ['new code', 'new', undefined, true],
    ['new configuration (a changed unit)', 'same', FILES.worker, true],
    ['the same code and configuration', 'same', undefined, false],
  ])('%s: restarts and holds only when a release goes live', (_, sourceHash, changed, releasing) => {
    const p = planDeploy({ desired: d, facts: factsOf(d, RUNNING, { changed }), code: code(sourceHash) });
    expect(p.release !== null).toBe(releasing);
    expect(p.parts).toEqual(releasing ? plan({ restart: [W1, W2, B1], hold: [T], before: [W1, W2, B1] }) : plan({ before: [W1, W2, B1] }));
  });

  it('takes no part in setup', () => {
    expect(planDeploy({ desired: d, facts: newServer(), scope: 'setup' }).parts).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

const ctx: RunContext = {
  layout: d.layout,
  lock: { dir: '/var/lib/stack/blog.lock', token: 'token' },
  audit: { file: '/var/log/stack/blog.log', who: 'dev@laptop', command: 'deploy prod' },
};
const health = healthCheckFor(plans.env, false, d.layout);

function activate(p: Plan, desired: DesiredState = d): string {
  const options: ActivateOptions = {
    health,
    managedFiles: desired.files.map((f) => f.path),
    hooks: plans.env.hooks,
    keep: plans.env.keep,
    staticPath: 'static',
    parts: desired.parts,
    ...(p.release ? { manifest: { by: 'dev@laptop', gitCommit: null, inventoryHash: 'inv', created: '2026-12-01T00:00:00Z' } } : {}),
  };
  return activateScript(p, ctx, options);
}

/** The script's own lines, after the library it carries. */
function body(script: string): string[] {
  const parts = script.split(REMOTE_LIBRARY);
  expect(parts).toHaveLength(2);
  return parts[1]!.split('\n');
}

/** The index of the one line that starts with `prefix`. */
function lineAt(lines: string[], prefix: string): number {
  const hits = lines.flatMap((l, i) => (l.startsWith(prefix) ? [i] : []));
  expect(hits, `one line starting with ${prefix}`).toHaveLength(1);
  return hits[0]!;
}

function parsesAsSh(script: string): void {
  const r = spawnSync('dash', ['-n'], { input: script, encoding: 'utf8' });
  expect(`${r.stderr}exit ${r.status}`).toBe('exit 0');
}

describe('the activation script with processes and jobs', () => {
  // New code on a server that runs everything, and still runs a process and a job taken out.
  const deploy = planDeploy({ desired: d, facts: factsOf(d, [...RUNNING, ...GONE], { sourceHash: 'old', changed: FILES.worker }), code: code('new') });
  const script = activate(deploy);
  const lines = body(script);
  const partLines = lines.filter((l) => /^(parts_|hold_timers|record_parts)/.test(l));

  it('plans what the script is checked against', () => {
    expect(deploy.release?.copyFrom).toBeUndefined();
    expect(deploy.files.map((f) => f.file.path)).toEqual([FILES.worker]);
    expect(deploy.parts).toEqual(
      plan({ restart: [W1, W2, B1], stop: [M1, R], hold: [T, R], remove: [FILES.mailer, ...FILES.report], before: [W1, W2, B1, M1] }),
    );
  });

  it('holds the running timers before the first file is installed', () => {
    expect(lines[lineAt(lines, 'HELD_TIMERS=')]).toBe(`HELD_TIMERS='${T} ${R}'`);
    // A failure after it is an abort, which starts them again.
    expect(lineAt(lines, 'HELD_TIMERS=')).toBeLessThan(lineAt(lines, "hold_timers || abort 'hold the timers'"));
    const firstFile = lines.findIndex((l) => l.startsWith('install_file '));
    expect(firstFile).toBeGreaterThan(0);
    expect(lineAt(lines, 'hold_timers ')).toBeLessThan(firstFile);
  });

  it('records the instances and timers with the release', () => {
    expect(lines[lineAt(lines, 'record_parts ')]).toBe(`record_parts /srv/blog/releases/${NEW} '${W1} ${W2} ${B1}' ${T}`);
    expect(lineAt(lines, 'record_config ')).toBeLessThan(lineAt(lines, 'record_parts '));
  });

  it('touches the processes once the web and its static files answer, before the commit; removes and starts timers after it', () => {
    const order = [
      'health_ok ',
      'static_ok ',
      'PARTS_BEFORE=',
      'parts_stop ',
      'parts_run restart ',
      'parts_settle ',
      'commit',
      // The timers before the files: a file that cannot go must not leave them stopped.
      `parts_run start ${T}`,
      'parts_remove ',
      'prune_releases ',
    ].map((prefix) => lineAt(lines, prefix));
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it('carries the plan: what ran before, what stops, restarts, must stay up, goes and runs', () => {
    expect(partLines).toEqual([
      "hold_timers || abort 'hold the timers'",
      `record_parts /srv/blog/releases/${NEW} '${W1} ${W2} ${B1}' ${T}`,
      `parts_stop ${M1} ${R} || rollback_live 'stop processes'`,
      `parts_run restart ${W1} ${W2} ${B1} || rollback_live 'restart processes'`,
      `parts_settle 3 ${W1} ${W2} ${B1} || rollback_live 'processes'`,
      `parts_run start ${T} || after_failed 'start the timers'`,
      `parts_remove ${FILES.mailer} ${FILES.report.join(' ')} || after_failed 'remove unit files'`,
    ]);
    expect(lines[lineAt(lines, 'PARTS_BEFORE=')]).toBe(`PARTS_BEFORE='${W1} ${W2} ${B1} ${M1}' PARTS_NEW=''`);
  });

  it.each([
    ['a first deploy', 'rollback_live', firstDeploy(), d],
    ['new configuration only', 'rollback_live', configOnly(), d],
    ['scale 3 -> 1 alone', 'fail', scaledDown(), plans.one],
  ])('%s: a failing process step is handled by %s', (_, handler, p, desired) => {
    const own = body(activate(p, desired));
    const steps = own.filter((l) => /^parts_(stop|run (enable|restart)|settle)|^parts_run start blog\.[a-z]+@/.test(l));
    expect(steps.length).toBeGreaterThan(0);
    for (const l of steps) expect(l).toMatch(new RegExp(`\\|\\| ${handler} '[^']+'$`));
    expect(own.includes('commit')).toBe(handler === 'rollback_live');
  });

  it('a first deploy enables and starts every instance, which are all new, and enables the timer before starting it after the commit', () => {
    const first = body(activate(firstDeploy()));
    expect(first.filter((l) => /^(parts_|hold_timers|HELD_TIMERS|PARTS_)/.test(l))).toEqual([
      `PARTS_BEFORE='' PARTS_NEW='${W1} ${W2} ${B1}'`,
      `parts_run enable ${W1} ${W2} ${B1} ${T} || rollback_live 'enable processes'`,
      `parts_run start ${W1} ${W2} ${B1} || rollback_live 'start processes'`,
      `parts_settle 3 ${W1} ${W2} ${B1} || rollback_live 'processes'`,
      `parts_run start ${T} || after_failed 'start the timers'`,
    ]);
    expect(lineAt(first, 'commit')).toBeLessThan(lineAt(first, `parts_run start ${T}`));
  });

  it("scaled down alone: no release and nothing held; the extra instances stop, and the live release's record follows", () => {
    const p = scaledDown();
    expect(p.release).toBeNull();
    const own = body(activate(p, plans.one));
    expect(own.filter((l) => /^(parts_|hold_timers|HELD_TIMERS|record_parts|commit)/.test(l))).toEqual([
      `parts_stop ${W2} ${W3} || fail 'stop processes'`,
      `parts_run start ${T} || after_failed 'start the timers'`,
      `record_parts /srv/blog/current '${W1} ${B1}' ${T}`,
    ]);
  });

  it.each([
    ['new code, with a process and a job gone', () => script],
    ['a first deploy', () => activate(firstDeploy())],
    ['new configuration only', () => activate(configOnly())],
    ['scale 3 -> 1 alone', () => activate(scaledDown(), plans.one)],
  ])('%s: parses as sh', (_, build) => {
    parsesAsSh(build());
  });
});

describe('the rollback script with processes and jobs', () => {
  const script = rollbackScript(LIVE, { ...ctx, audit: { ...ctx.audit!, command: `rollback prod ${NEW} -> ${LIVE}` } }, health);
  const lines = body(script);

  it("holds the app's timers before switching, and puts the release's processes and timers back after the commit", () => {
    expect(lines[lineAt(lines, 'hold_app_timers')]).toBe('hold_app_timers blog');
    expect(lineAt(lines, 'restore_config ')).toBeLessThan(lineAt(lines, 'hold_app_timers'));
    expect(lineAt(lines, 'hold_app_timers')).toBeLessThan(lineAt(lines, 'switch_current '));
    expect(lines[lineAt(lines, 'sync_parts ')]).toBe(`sync_parts /srv/blog/releases/${LIVE} blog 3 || after_failed 'processes of the release'`);
    expect(lineAt(lines, 'commit')).toBeLessThan(lineAt(lines, 'sync_parts '));
    expect(lineAt(lines, 'static_ok ')).toBeLessThan(lineAt(lines, 'commit'));
  });

  it('parses as sh', () => {
    parsesAsSh(script);
  });
});
