/**
 * The entry point: parses arguments, loads the one command asked for (lazily, so `--help` stays
 * fast), prints the result it returns through the one output (src/ui/output.ts), and maps every
 * error to one line and an exit code. Only this file sets the exit code or calls process.exit.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { EXIT, StackError, UsageError } from './errors.js';
import { DEFAULT_RELEASE, releaseChoices } from './sandbox/releases.js';
import { createOutput } from './ui/output.js';
import type { CommandResult } from './ui/results.js';
import type { GlobalOptions } from './commands/options.js';

export type { GlobalOptions };

/** The commands whose result has a JSON form, as the usage error lists them. */
const JSON_COMMANDS = 'deploy --dry-run, setup --dry-run, status, releases, certs, lock status, audit, db backups';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command('stack')
    .description('Render and deploy a complete single-server Python web stack (nginx, gunicorn or uWSGI, systemd) from one inventory file.')
    .option('-i, --inventory <file>', 'inventory file', 'inventory.yml')
    .option('--debug', 'show stack traces and extra detail on errors', false)
    .option('--no-color', 'plain output (NO_COLOR is honoured too)')
    .option('--connect-timeout <seconds>', 'give up on a server that does not answer SSH within this time (default 10, or ConnectTimeout from ~/.ssh/config)')
    .option('--limit <hosts>', 'only these hosts of the environment: addresses or roles (web, app, worker, db), comma-separated')
    .option('--parallel <n>', 'how many hosts at once (default: all of them)')
    .addOption(
      new Option(
        '-q, --quiet',
        "only results, warnings and errors: no step-by-step progress or informational notes, and a dry run shows each host's count of changes instead of its diffs",
      ).conflicts('verbose'),
    )
    .option('-v, --verbose', "more detail: every step's duration (on a pipe too), each host's SSH round trips and time, the steps each host ran")
    .option('--json', `print the result as one JSON document on stdout (${JSON_COMMANDS}); progress stays on stderr`)
    .version(version(), '-V, --version', 'print the version')
    .showHelpAfterError('(run `stack --help` for usage)')
    // Subcommands inherit this: commander throws instead of exiting, and main picks the code.
    .exitOverride()
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 failure, 2 usage or inventory error, 3 changes pending (with --exit-code), 130 interrupted.

Start with \`stack init\` to write an inventory, then \`stack render ENV\` to see every file it makes.`,
    );

  program
    .command('init')
    .description('write a commented inventory.yml by answering a few questions (or from flags with --yes)')
    .option('--name <name>', 'app name: names the unit, the system user and /srv/<name>')
    .option('--source <dir>', 'local directory of the app to ship')
    .option('--wsgi <module:callable>', 'WSGI entry point, e.g. blog.wsgi:application')
    .addOption(new Option('--gateway <server>', 'gateway server').choices(['gunicorn', 'uwsgi']))
    .option('--domains <list>', 'comma-separated domains; the first is canonical')
    .addOption(new Option('--ssl <mode>', 'certificates').choices(['none', 'letsencrypt', 'self-signed']))
    .option('--email <address>', "email for Let's Encrypt")
    .option('--env <name>', 'environment name', undefined)
    .option('--host <address>', 'server address')
    .option('--user <name>', 'SSH user on the server')
    .option('--port <number>', 'SSH port')
    .option(
      '--generate-secrets',
      'write a random value for each signing key the app reads (e.g. SECRET_KEY) into .stack/secrets.<env>, mode 600 (default with --yes)',
    )
    .option('--no-generate-secrets', 'generate no secret values; put them in .stack/secrets.<env> yourself')
    .option('-y, --yes', 'take the defaults for every question not given as a flag; never prompt', false)
    .option('--force', 'overwrite an existing inventory', false)
    .action(async (options, cmd: Command) => {
      const { runInit } = await import('./commands/init.js');
      await runInit(options, globals(cmd, false));
    });

  program
    .command('render')
    .description('generate every configuration file for an environment locally; no server needed')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .option('-o, --out <dir>', 'write files under DIR/<host>/<remote path> instead of printing them')
    .option('--only <roles>', 'only these roles, comma-separated (web, app)')
    .option('--check', 'also check the files with the real tools: nginx -t and systemd-analyze verify', false)
    .action(async (env: string | undefined, options, cmd: Command) => {
      const { runRender } = await import('./commands/render.js');
      await runRender(env, options, globals(cmd, false));
    });

  program
    .command('export')
    .description('write an Ansible playbook, role, inventory and variables that do what setup + deploy do for an environment')
    .argument('<format>', 'ansible')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .requiredOption('-o, --out <dir>', 'an empty folder to write into (ansible-playbook -i DIR/inventory.yml DIR/site.yml)')
    .option('--force', 'write into a folder that is not empty (replaces what an earlier export wrote there)', false)
    .action(async (format: string, env: string | undefined, options, cmd: Command) => {
      const { runExport } = await import('./commands/export.js');
      await runExport(format, env, options, globals(cmd, false));
    });

  program
    .command('setup')
    .description('first provisioning of the servers: packages, the app user, directories, certificates, firewall, units (safe to run again)')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .option('--dry-run', 'connect and show what would change, change nothing', false)
    .action(async (env: string | undefined, options, cmd: Command) => {
      const { runDeploy } = await import('./commands/deploy.js');
      const g = globals(cmd, options.dryRun === true);
      finish(g, await runDeploy(env, options, g, 'setup'));
    });

  program
    .command('deploy')
    .description('ship the app and its whole stack to every host of an environment, then check its health through nginx')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .option('--dry-run', 'connect and gather facts, print a diff of every file and the steps that would run; change nothing', false)
    .option('--exit-code', 'with --dry-run: exit 3 when changes are pending (for drift checks in CI)', false)
    .option('--wait', 'wait for another deploy to finish instead of failing on its lock', false)
    .action(async (env: string | undefined, options, cmd: Command) => {
      const { runDeploy } = await import('./commands/deploy.js');
      const g = globals(cmd, options.dryRun === true);
      finish(g, await runDeploy(env, options, g));
    });

  program
    .command('trust')
    .description("pin each host's SSH key in the inventory after showing its fingerprint")
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .option('-y, --yes', 'pin without asking (compare the printed fingerprints yourself)', false)
    .option('--replace', 'replace a key that is already pinned (after a server was rebuilt)', false)
    .action(async (env: string | undefined, options, cmd: Command) => {
      const { runTrust } = await import('./commands/trust.js');
      await runTrust(env, options, globals(cmd, false));
    });

  program
    .command('releases')
    .description('list the releases on each host, the live one marked')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .action(async (env: string | undefined, _options, cmd: Command) => {
      const { runReleases } = await import('./commands/releases.js');
      const g = globals(cmd, true);
      finish(g, await runReleases(env, g));
    });

  program
    .command('certs')
    .description("each domain's certificate as nginx presents it: issuer, expiry, days left (exit 1 if any is not ok)")
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .action(async (env: string | undefined, _options, cmd: Command) => {
      const { runCerts } = await import('./commands/certs.js');
      const g = globals(cmd, true);
      finish(g, await runCerts(env, g));
    });

  program
    .command('rollback')
    .description('go back to an earlier release (the previous one by default): code and configuration together, health-checked')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .argument('[release]', 'release id, as `stack releases` shows it')
    .option('--wait', 'wait for another deploy to finish instead of failing on its lock', false)
    .option('--dry-run', 'show what the rollback would restore (diffs, secrets redacted) and change nothing', false)
    .option('--restore-db', 'a release since ran hooks (a migration): restore the database backup taken right before them too')
    .option('--keep-db', 'a release since ran hooks (a migration): roll back code and configuration only, the database as it is')
    .action(async (env: string | undefined, release: string | undefined, options, cmd: Command) => {
      const { runRollback } = await import('./commands/rollback.js');
      await runRollback(env, release, options, globals(cmd, false));
    });

  const db = program.command('db').description("the app's PostgreSQL database (database: in the inventory): backups, restores, psql");
  db.command('backup')
    .description('back the database up now, check the dump by restoring it into a scratch database, and print its id')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .option('--wait', 'wait for a deploy to finish instead of failing on its lock', false)
    .action(async (env: string | undefined, options, cmd: Command) => {
      const { runDbBackup } = await import('./commands/db.js');
      await runDbBackup(env, options, globals(cmd, false));
    });
  db.command('backups')
    .description('list the backups (size, age, how made, how checked) and the last failure; exit 1 when the last backup failed')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .action(async (env: string | undefined, _options, cmd: Command) => {
      const { runDbBackups } = await import('./commands/db.js');
      const g = globals(cmd, true);
      finish(g, await runDbBackups(env, g));
    });
  db.command('restore')
    .description('restore a backup: the app stops, the backup goes into a fresh database that replaces the live one, the app starts and is health-checked')
    .argument('<env>', 'environment from the inventory')
    .argument('<id>', 'backup id, as `stack db backups` shows it')
    .option('-y, --yes', 'restore without asking', false)
    .option('--wait', 'wait for a deploy to finish instead of failing on its lock', false)
    .action(async (env: string, id: string, options, cmd: Command) => {
      const { runDbRestore } = await import('./commands/db.js');
      await runDbRestore(env, id, options, globals(cmd, false));
    });
  db.command('pull')
    .description('download a backup (the newest by default) into FILE, readable by you alone')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .argument('[file]', 'where to write it (default: APP-ENV-ID.dump here)')
    .option('--backup <id>', 'which backup (default: the newest)')
    .option('--host <address>', 'which host, when the environment has several')
    .option('--force', 'replace FILE if it exists', false)
    .action(async (env: string | undefined, file: string | undefined, options, cmd: Command) => {
      const { runDbPull } = await import('./commands/db.js');
      await runDbPull(env, file, options, globals(cmd, false));
    });
  db.command('psql')
    .description("psql as the app's own role (interactive on a terminal; pass -c SQL after -- for one statement)")
    .argument('<env>', 'environment from the inventory')
    .argument('[args...]', 'arguments for psql, after --')
    .option('--host <address>', 'which host, when the environment has several')
    .action(async (env: string, args: string[], options, cmd: Command) => {
      const { runDbPsql } = await import('./commands/db.js');
      process.exitCode = await runDbPsql(env, args, options, globals(cmd, false));
    });

  const schedule = program.command('schedule').description("the app's scheduled jobs (schedule: in the inventory): their last and next runs, a run now");
  schedule
    .command('list')
    .description("each job's schedule, last run and its result, and next run, per host (exit 1 when a last run failed or a timer is not scheduled)")
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .action(async (env: string | undefined, _options, cmd: Command) => {
      const { runScheduleList } = await import('./commands/schedule.js');
      process.exitCode = await runScheduleList(env, globals(cmd, false));
    });
  schedule
    .command('run')
    .description('run a job now through its unit, as its timer does (no deploy lock), and show its output and result (exit 1 when it fails)')
    .argument('<env>', 'environment from the inventory')
    .argument('<job>', 'the job, by its name under schedule:')
    .option('--host <address>', 'the host to run it on, when the environment has several')
    .option('-n, --lines <n>', "how many of the last lines of the run's output to show", '50')
    .action(async (env: string, job: string, options, cmd: Command) => {
      const { runScheduleRun } = await import('./commands/schedule.js');
      await runScheduleRun(env, job, options, globals(cmd, false));
    });

  const lock = program.command('lock').description('the deploy lock that keeps two deploys from running at once');
  for (const action of ['status', 'release'] as const) {
    lock
      .command(action)
      .description(action === 'status' ? 'who holds the deploy lock, if anyone' : 'remove a lock left behind by a deploy that is no longer running')
      .argument('[env]', 'environment from the inventory (optional when there is only one)')
      .action(async (env: string | undefined, _options, cmd: Command) => {
        const { runLock } = await import('./commands/lock.js');
        const g = globals(cmd, action === 'status');
        finish(g, await runLock(action, env, g));
      });
  }

  program
    .command('audit')
    .description('who deployed or rolled back what, when, and how it ended (from the log on each host)')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .option('-n, --lines <n>', 'how many entries', '20')
    .action(async (env: string | undefined, options, cmd: Command) => {
      const { runAudit } = await import('./commands/lock.js');
      const g = globals(cmd, true);
      finish(g, await runAudit(env, options, g));
    });

  program
    .command('run')
    .description("run a command in the live release as the app's user, with its environment and virtualenv (stack run prod -- python manage.py migrate)")
    .argument('<env>', 'environment from the inventory')
    .argument('<command...>', 'the command and its arguments, after --')
    .option('--host <address>', 'the host to run on, when the environment has several')
    .option('-t, --tty', 'an interactive session on a terminal (the default when stdin is a terminal): shell, createsuperuser, dbshell')
    .action(async (env: string, command: string[], options, cmd: Command) => {
      const { runRun } = await import('./commands/run.js');
      process.exitCode = await runRun(env, command, options, globals(cmd, false));
    });
  program
    .command('logs')
    .description("the app's logs: its units' journal and nginx's access and error logs, merged by time")
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .argument('[process...]', 'only these: app or web (the gateway and its socket), nginx, a process of processes: (all its instances), a job of schedule:')
    .option('-f, --follow', 'keep showing new lines until Ctrl-C (one host: --host when there are several)', false)
    .option('-n, --lines <n>', 'how many of the last lines', '50')
    .option('--since <time>', 'only lines since then: 30s, 15m, 2h, 3d ago, or a UTC date and time (2026-12-01 14:30)')
    .option('--grep <regex>', 'only lines matching this extended regular expression (grep -E)')
    .option('--host <address>', 'the host to follow, when the environment has several')
    .action(async (env: string | undefined, processes: string[], options, cmd: Command) => {
      const { runLogs } = await import('./commands/logs.js');
      await runLogs(env, processes, options, globals(cmd, false));
    });
  program
    .command('status')
    .description('per host: live release, units, health, certificates, disk, lock, last deploy, maintenance, drift (exit 1 if unhealthy)')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .action(async (env: string | undefined, _options, cmd: Command) => {
      const { runStatus } = await import('./commands/status.js');
      const g = globals(cmd, true);
      finish(g, await runStatus(env, g));
    });
  program
    .command('restart')
    .description('restart the app as a deploy does: the web (no connection refused, health-checked through nginx), then its processes')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .argument('[process]', 'only this: app or web (the gateway), or a process of processes: (all its instances); default: all of them, the web first')
    .option('--wait', 'wait for a deploy to finish instead of failing on its lock', false)
    .action(async (env: string | undefined, processName: string | undefined, options, cmd: Command) => {
      const { runRestart } = await import('./commands/restart.js');
      await runRestart(env, processName, options, globals(cmd, false));
    });
  program
    .command('maintenance')
    .description('answer every request with a 503 maintenance page (on), or serve the app again (off); deploys keep it on')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .argument('[state]', 'on or off')
    .option('--message <text>', 'what the page says')
    .action(async (env: string | undefined, state: string | undefined, options, cmd: Command) => {
      const { runMaintenance } = await import('./commands/maintenance.js');
      // `stack maintenance on` when the inventory has one environment.
      const [e, s] = state === undefined ? [undefined, env] : [env, state];
      if (s !== 'on' && s !== 'off')
        throw new UsageError(`stack maintenance: say on or off${s ? `, not "${s}"` : ''}`, {
          hint: 'e.g. stack maintenance prod on --message "Back at 14:00 UTC"',
        });
      await runMaintenance(e, s, options, globals(cmd, false));
    });
  program
    .command('ssh')
    .description('an interactive shell on a server, with the host key stack pinned and its connection settings')
    .argument('[env]', 'environment from the inventory (optional when there is only one)')
    .argument('[command...]', 'a command to run instead of a shell, after --')
    .option('--host <address>', 'the host, when the environment has several')
    .action(async (env: string | undefined, command: string[], options, cmd: Command) => {
      const { runSsh } = await import('./commands/ssh.js');
      process.exitCode = await runSsh(env, options, command, globals(cmd, false));
    });
  const sandbox = program.command('sandbox').description('throwaway local Debian servers (systemd-nspawn) to rehearse deploys on; needs root and Linux');
  sandbox
    .command('up')
    .description('boot a pristine sandbox server and print how to reach it')
    .argument('[name]', 'sandbox name', 'sandbox')
    .option('--release <release>', `Debian release to run: ${releaseChoices()}`, DEFAULT_RELEASE)
    .option('--write-env <env>', 'add (or update) this environment in the inventory, pointing at the sandbox')
    .action(async (name: string, options, cmd: Command) => {
      const { runSandboxUp } = await import('./commands/sandbox.js');
      await runSandboxUp(name, options, globals(cmd, false));
    });
  sandbox
    .command('down')
    .description('stop a sandbox server; everything written on it is gone')
    .argument('[name]', 'sandbox name', 'sandbox')
    .action(async (name: string, _options, cmd: Command) => {
      const { runSandboxDown } = await import('./commands/sandbox.js');
      await runSandboxDown(name, globals(cmd, false));
    });
  sandbox
    .command('list')
    .description('list running sandbox servers')
    .action(async (_options, cmd: Command) => {
      const { runSandboxList } = await import('./commands/sandbox.js');
      await runSandboxList(globals(cmd, false));
    });

  return program;
}

/** The global options with the one output made from them; `json`: this command has a JSON form. */
function globals(cmd: Command, json: boolean): GlobalOptions {
  const opts = cmd.optsWithGlobals() as Omit<GlobalOptions, 'output'>;
  if (opts.json && !json) {
    throw new UsageError(`--json is not available for \`${commandPath(cmd)}\``, { hint: `--json works with: ${JSON_COMMANDS}` });
  }
  const level = opts.quiet ? 'quiet' : opts.verbose ? 'verbose' : 'normal';
  return { ...opts, output: createOutput({ level, json: opts.json === true, debug: opts.debug }) };
}

/** `lock status`, `deploy`: the words a person typed to reach this command. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** A command's result printed, and its exit code (certificates not ok, changes pending) set: here only. */
function finish(g: GlobalOptions, result: CommandResult): void {
  g.output.result(result);
  if (result.exitCode) process.exitCode = result.exitCode;
}

export async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  // A command that handles Ctrl-C itself (run, logs -f, ssh: it belongs to the remote side)
  // adds its own listener; then this one stands back.
  process.on('SIGINT', () => {
    if (process.listenerCount('SIGINT') === 1) process.exit(EXIT.interrupted);
  });
  // Last resort: a failure nobody awaited still ends as one line, not a crash dump.
  process.on('unhandledRejection', (err) => {
    void report(err, debug).then((code) => process.exit(code));
  });
  // A closed pipe (`stack render | head`) is the reader's choice, not an error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  process.exitCode = await run(argv);
}

/**
 * One command from its arguments to its exit code, without touching the process's handlers:
 * what `main` runs, and what tests of the CLI's behaviour call in process.
 */
export async function run(argv: string[]): Promise<number> {
  if (argv.includes('--no-color')) process.env.NO_COLOR = '1';
  process.exitCode = undefined;
  const program = buildProgram();
  try {
    const { expandAlias } = await import('./commands/aliases.js');
    await program.parseAsync(await expandAlias(argv), { from: 'user' });
    return Number(process.exitCode ?? EXIT.ok);
  } catch (err) {
    return report(err, argv.includes('--debug'));
  }
}

async function report(err: unknown, debug: boolean): Promise<number> {
  if (err instanceof CommanderError) {
    // Commander has printed its own message already.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT.ok;
    return EXIT.usage;
  }
  if ((err as { name?: string })?.name === 'ExitPromptError') return EXIT.interrupted;
  const pc = (await import('picocolors')).default;
  if (err instanceof StackError) {
    process.stderr.write(`${pc.red('error:')} ${err.message}\n`);
    if (err.hint) process.stderr.write(`${pc.dim('hint:')} ${err.hint}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  // Not one of ours: a bug. Still one line, unless --debug asks for the trace.
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${pc.red('error:')} ${message}\n`);
  if (debug && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  else process.stderr.write(`${pc.dim('hint:')} run again with --debug for details\n`);
  return EXIT.failure;
}
