/**
 * Environment variable names an app must not set (in `env:` or `secrets:`): each already means
 * something to stack, systemd, the shell, the dynamic loader, Python or the gateway server, and a
 * value from the inventory would silently change which code runs or how the service is wired.
 * Variables that only tune Python (PYTHONWARNINGS, PYTHONUNBUFFERED, PYTHONDONTWRITEBYTECODE)
 * stay allowed: apps set them for good reasons, and they do not change where code is loaded from.
 */

const SYSTEMD_SETS = 'systemd sets it for the service';

const EXACT: Record<string, string> = {
  PATH: "stack sets it so that the release's virtualenv comes first",
  GCONV_PATH: 'glibc loads character-set modules from that folder into the processes of the app',
  PYTHONPATH: "Python would import modules from outside the release's virtualenv",
  PYTHONHOME: 'Python would look for its standard library somewhere else',
  PYTHONUSERBASE: "Python would import packages from that folder besides the release's virtualenv",
  PYTHONPLATLIBDIR: 'Python would look for its standard library somewhere else',
  PYTHONSTARTUP: 'Python runs that file at the start of interactive sessions (manage.py shell)',
  PYTHONINSPECT: 'Python would wait at an interactive prompt after a script ends, and a hook would hang',
  PYTHONEXECUTABLE: 'it changes what Python reports as its own executable (sys.executable)',
  PERL5LIB: 'Perl would load modules from there in every perl process the app or a hook starts',
  PERLLIB: 'Perl would load modules from there in every perl process the app or a hook starts',
  PERL5OPT: 'Perl would apply those options, module loads included, to every perl process',
  BASH_ENV: 'bash runs the file it names before every script, hooks included',
  ENV: 'the shell runs the file it names when it starts',
  SHELLOPTS: 'bash would switch on those options in every script',
  BASHOPTS: 'bash would switch on those options in every script',
  IFS: 'it changes how the shell splits words in every hook and script',
  HOME: `${SYSTEMD_SETS} from the app's user`,
  USER: `${SYSTEMD_SETS} from the app's user`,
  LOGNAME: `${SYSTEMD_SETS} from the app's user`,
  SHELL: `${SYSTEMD_SETS} from the app's user`,
  NOTIFY_SOCKET: `${SYSTEMD_SETS}: the gateway reports through it that it is ready (Type=notify)`,
  LISTEN_FDS: `${SYSTEMD_SETS} to hand the app its listening socket (socket activation)`,
  LISTEN_PID: `${SYSTEMD_SETS} to hand the app its listening socket (socket activation)`,
  LISTEN_FDNAMES: `${SYSTEMD_SETS} to hand the app its listening socket (socket activation)`,
  INVOCATION_ID: `${SYSTEMD_SETS}: it identifies each start in the journal`,
  JOURNAL_STREAM: `${SYSTEMD_SETS}: it tells the app that its output goes to the journal`,
  WATCHDOG_PID: `${SYSTEMD_SETS} (watchdog)`,
  WATCHDOG_USEC: `${SYSTEMD_SETS} (watchdog)`,
  MAINPID: SYSTEMD_SETS,
  MANAGERPID: SYSTEMD_SETS,
  RUNTIME_DIRECTORY: SYSTEMD_SETS,
  STATE_DIRECTORY: SYSTEMD_SETS,
  CACHE_DIRECTORY: SYSTEMD_SETS,
  LOGS_DIRECTORY: SYSTEMD_SETS,
  CONFIGURATION_DIRECTORY: SYSTEMD_SETS,
  CREDENTIALS_DIRECTORY: SYSTEMD_SETS,
  GUNICORN_CMD_ARGS: 'gunicorn reads command-line options from it, which would override the settings stack writes',
};

const PREFIXES: [string, string][] = [
  ['LD_', 'the dynamic loader reads LD_* variables and would load other libraries into every process of the app'],
  ['SYSTEMD_', 'systemd and its tools read SYSTEMD_* variables'],
  ['STACK_', 'stack sets STACK_* variables itself (STACK_APP, STACK_ENV, STACK_RELEASE, STACK_DOMAINS, STACK_URL)'],
  ['UWSGI_', 'uWSGI reads every UWSGI_* variable as an option, which would override the settings stack writes'],
];

/** Why `name` cannot be set from the inventory, or undefined when it can. */
export function reservedEnvReason(name: string): string | undefined {
  if (Object.hasOwn(EXACT, name)) return EXACT[name];
  return PREFIXES.find(([prefix]) => name.startsWith(prefix))?.[1];
}
