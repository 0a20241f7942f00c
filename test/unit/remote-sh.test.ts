/**
 * The remote shell library (src/remote/sh/*.sh), run here under dash in temporary folders: the
 * same functions the root scripts run on servers, in milliseconds, plus shellcheck over them.
 * Commands that would change the system (systemctl, apt-get, useradd, chown to root...) are
 * stand-ins from a folder put first on PATH, which record how they were called.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REMOTE_LIBRARY } from '../../src/apply/scripts.js';
import { ROOT } from '../helpers/cli.js';
import { temporaryFolders } from '../helpers/temporary.js';

const SH = path.join(ROOT, 'src/remote/sh');
const LIBRARY = ['lib.sh', 'lock.sh', 'provision.sh', 'venv.sh', 'release.sh', 'activate.sh', 'certs.sh', 'maintenance.sh'].map((f) => path.join(SH, f));

const temporary = temporaryFolders();

interface ShResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** What the stand-ins were called with, one "NAME ARGS" line each. */
  calls: string[];
  /** Their folder (a stand-in may leave files there). */
  stubDir: string;
}

/**
 * Runs `body` under dash with the library loaded, in `cwd`. `stubs` are stand-in commands
 * (name -> shell body, run after the call is recorded); `env` adds variables.
 */
function sh(body: string, cwd: string, o: { input?: string; stubs?: Record<string, string>; env?: Record<string, string> } = {}): ShResult {
  const bin = temporary('stack-stubs-');
  const log = path.join(bin, '.calls');
  writeFileSync(log, '');
  for (const [name, code] of Object.entries(o.stubs ?? {})) {
    writeFileSync(path.join(bin, name), `#!/bin/sh\nprintf '%s\\n' "${name} $*" >> "$STUB_LOG"\n${code}\n`, { mode: 0o755 });
  }
  const script = `${LIBRARY.map((f) => `. '${f}'`).join('\n')}\naudit() { :; }\n${body}`;
  const r = spawnSync('dash', ['-c', script], {
    cwd,
    input: o.input,
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, STUB_LOG: log, STUB_DIR: bin, ...o.env },
  });
  const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, calls, stubDir: bin };
}

/** Runs `body` under dash with the library loaded, in `cwd`. */
function dash(body: string, cwd: string, input?: string): { code: number | null; stdout: string; stderr: string } {
  return sh(body, cwd, { input });
}

function scratch(): string {
  return temporary('stack-sh-');
}

const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8).padStart(4, '0');
const b64 = (text: string) => Buffer.from(text).toString('base64');

/** Stand-ins for owners only root may give: the mode still changes, the owner is recorded. */
const OWNERS = { chown: 'exit 0', chgrp: 'exit 0' };
/** `install -d` as mkdir: options that need root are recorded, not applied. */
const INSTALL_DIR = { install: 'for a; do d=$a; done; mkdir -p "$d"' };
/** systemctl and journalctl as a server without services: each call recorded. */
const SERVICES = { systemctl: 'exit 0', journalctl: 'echo "journal of $2"', sleep: 'exit 0' };
/** nginx's workers: none before the reload, one after (reload_nginx waits for new ones). */
const WORKERS = { pgrep: 'if [ -f "$STUB_DIR/.workers" ]; then echo 7; else : > "$STUB_DIR/.workers"; fi' };

describe('shellcheck', () => {
  it('finds nothing in any remote script', () => {
    const files = readdirSync(SH)
      .filter((f) => f.endsWith('.sh'))
      .map((f) => path.join(SH, f));
    expect(files.length).toBeGreaterThanOrEqual(LIBRARY.length + 1);
    const r = spawnSync('shellcheck', ['-s', 'sh', '-S', 'warning', ...files], { encoding: 'utf8' });
    expect(r.error, 'shellcheck must be installed (scripts/ensure-deps.sh does)').toBeUndefined();
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('the undo log', () => {
  it('puts back changed files and links and removes created ones, newest first', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'a.conf'), 'one\n');
    symlinkSync('a.conf', path.join(d, 'link'));
    const r = dash(
      [
        'TMPD=$(mktemp -d) && undo_init',
        'remember a.conf && echo two > a.conf',
        'remember link && ln -sfn b.conf link',
        'remember b.conf && echo new > b.conf',
        'remember a.conf && echo three > a.conf',
        'undo',
      ].join('\n'),
      d,
    );
    expect(r.stderr).toBe('');
    expect(readFileSync(path.join(d, 'a.conf'), 'utf8')).toBe('one\n');
    expect(readlinkSync(path.join(d, 'link'))).toBe('a.conf');
    expect(existsSync(path.join(d, 'b.conf'))).toBe(false);
    expect(readdirSync(d).filter((f) => f.includes('stack-bak'))).toEqual([]);
  });

  it('keeps the changes and drops the copies on commit', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'a.conf'), 'one\n');
    const r = dash('TMPD=$(mktemp -d) && undo_init && remember a.conf && echo two > a.conf && commit', d);
    expect(r.code).toBe(0);
    expect(readFileSync(path.join(d, 'a.conf'), 'utf8')).toBe('two\n');
    expect(readdirSync(d)).toEqual(['a.conf']);
  });

  it('abort undoes, removes the new release and fails with the step named', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'a.conf'), 'one\n');
    mkdirSync(path.join(d, 'rel'));
    const r = dash("TMPD=$(mktemp -d) && undo_init && NEWREL=$PWD/rel && remember a.conf && echo two > a.conf && abort 'nginx -t'; echo not reached", d);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('@@fail nginx -t\n');
    expect(readFileSync(path.join(d, 'a.conf'), 'utf8')).toBe('one\n');
    expect(existsSync(path.join(d, 'rel'))).toBe(false);
  });
});

describe('switch_current', () => {
  it('points the link at the release in one rename, and undo points it back', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'releases/r1'), { recursive: true });
    mkdirSync(path.join(d, 'releases/r2'));
    symlinkSync('releases/r1', path.join(d, 'current'));
    const r = dash('TMPD=$(mktemp -d) && undo_init && switch_current "$PWD/current" r2 && readlink current && undo && readlink current', d);
    expect(r.stdout).toBe('releases/r2\nreleases/r1\n');
    expect(readdirSync(d).sort()).toEqual(['current', 'releases']);
  });
});

// Restored files become root's: only root can do that, as on a server (CI runs as root).
describe.skipIf(process.getuid?.() !== 0)('restore_config', () => {
  it('puts back recorded files (root-owned, no write for others) and links, each remembered', () => {
    const d = scratch();
    const rel = path.join(d, 'rel');
    const live = path.join(d, 'live');
    mkdirSync(path.join(rel, `.stack/config${live}`), { recursive: true });
    mkdirSync(live, { recursive: true });
    writeFileSync(path.join(rel, `.stack/config${live}/site.conf`), 'recorded\n', { mode: 0o666 });
    writeFileSync(path.join(live, 'site.conf'), 'live\n');
    writeFileSync(path.join(rel, '.stack/links'), `${live}/enabled.conf ${live}/site.conf\n`);
    const r = dash(`TMPD=$(mktemp -d) && undo_init && restore_config "${rel}" && cat "${live}/site.conf" && readlink "${live}/enabled.conf"`, d);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`@@step restored ${live}/site.conf\nrecorded\n${live}/site.conf\n`);
    expect(mode(path.join(live, 'site.conf'))).toBe('0644');
    expect(statSync(path.join(live, 'site.conf')).uid).toBe(0);
  });
});

describe('receive', () => {
  it('copies its input whole', () => {
    const d = scratch();
    const data = 'x'.repeat(300_000);
    const r = dash('receive upload 5; echo "status $?"', d, data);
    expect(r.stdout).toBe('status 0\n');
    expect(readFileSync(path.join(d, 'upload'), 'utf8')).toBe(data);
  });

  it('gives up with status 2 when nothing arrives for the idle time, although the input stays open', () => {
    const d = scratch();
    // The writer holds the pipe open for 4 s and sends nothing after its first bytes.
    const r = spawnSync(
      'dash',
      ['-c', `{ printf start; sleep 4; } | dash -c '. ${path.join(SH, 'lib.sh')}; . ${path.join(SH, 'release.sh')}; receive upload 1; echo "status $?"'`],
      {
        cwd: d,
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    expect(r.stdout).toBe('status 2\n');
    expect(readFileSync(path.join(d, 'upload'), 'utf8')).toBe('start');
  });
});

describe('no_space_note', () => {
  it('names a full disk when the log says so', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'log'), 'OSError: [Errno 28] No space left on device\n');
    const r = dash('no_space_note . log', d);
    expect(r.stderr).toMatch(/^No space left on device: \d+ MiB free on the filesystem of \.$/m);
  });

  it('says nothing otherwise', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'log'), 'ERROR: No matching distribution found for nothing\n');
    expect(dash('no_space_note . log', d).stderr).toBe('');
  });
});

// Sealing changes owners: only root can, as on a server (CI runs as root).
describe.skipIf(process.getuid?.() !== 0)('seal', () => {
  it('gives the group what the owner could read, others only the static folder, and follows no link', () => {
    const d = scratch();
    const rel = path.join(d, 'rel');
    const outside = path.join(d, 'outside.txt');
    writeFileSync(outside, 'not part of the release\n');
    chmodSync(outside, 0o666);
    mkdirSync(path.join(rel, 'app'), { recursive: true });
    mkdirSync(path.join(rel, 'web/static/css'), { recursive: true });
    mkdirSync(path.join(rel, '.stack'), { mode: 0o700 });
    const files: [string, number][] = [
      ['app/code.py', 0o600],
      ['app/run.sh', 0o4755],
      ['app/settings.py', 0o664],
      ['web/static/css/site.css', 0o644],
      ['web/static/private.txt', 0o600],
      ['.stack/env', 0o600],
    ];
    for (const [f, m] of files) {
      writeFileSync(path.join(rel, f), f);
      chmodSync(path.join(rel, f), m);
    }
    chmodSync(path.join(rel, 'web/static/css'), 0o700);
    symlinkSync(outside, path.join(rel, 'app/link'));
    symlinkSync(outside, path.join(rel, 'web/static/link'));
    const r = dash(`seal "$PWD/rel" nogroup web/static`, d);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const owner = (p: string) =>
      `${lstatSync(path.join(rel, p)).uid}:${spawnSync('stat', ['-c', '%G', path.join(rel, p)], { encoding: 'utf8' }).stdout.trim()}`;
    expect(owner('app/code.py')).toBe('0:nogroup');
    expect(mode(path.join(rel, 'app/code.py'))).toBe('0640');
    expect(mode(path.join(rel, 'app/run.sh'))).toBe('0750');
    expect(mode(path.join(rel, 'app/settings.py'))).toBe('0640');
    expect(mode(path.join(rel, 'app'))).toBe('0750');
    expect(mode(path.join(rel, 'web/static/css/site.css'))).toBe('0644');
    expect(mode(path.join(rel, 'web/static/private.txt'))).toBe('0640');
    expect(mode(path.join(rel, 'web/static/css'))).toBe('0751');
    expect(mode(path.join(rel, 'web'))).toMatch(/^07.1$/);
    expect(mode(rel)).toMatch(/^07.1$/);
    // The recorded configuration keeps its owner and mode; what links point at is untouched.
    expect(mode(path.join(rel, '.stack'))).toBe('0700');
    expect(mode(path.join(rel, '.stack/env'))).toBe('0600');
    expect(owner('.stack')).toBe('0:root');
    expect(mode(outside)).toBe('0666');
    expect(readdirSync(d).sort()).toEqual(['outside.txt', 'rel']);
  });
});

describe('the library the scripts carry', () => {
  it('is every file loaded here, and never sets the EXIT trap (a script marks its own lines with it)', () => {
    for (const f of LIBRARY) expect(REMOTE_LIBRARY).toContain(readFileSync(f, 'utf8'));
    expect(REMOTE_LIBRARY).not.toContain('trap on_exit EXIT');
  });
});

describe('begin_script and on_exit', () => {
  const mktemp = { mktemp: 'mkdir "$PWD/tmpd" && echo "$PWD/tmpd"' };

  it('makes variables compulsory, files private, a private temporary folder, removed at the end', () => {
    const d = scratch();
    const r = sh('begin_script; LOCK_TOKEN_FILE=\'\'; trap on_exit EXIT; umask; echo "$TMPD"; touch "$TMPD/x"; echo "$unset_variable"; echo not reached', d, {
      stubs: mktemp,
    });
    expect(r.calls).toEqual(['mktemp -d -p /run stack.XXXXXXXX']);
    expect(r.stdout).toBe(`0077\n${d}/tmpd\n`);
    expect(r.stderr).toMatch(/unset_variable: parameter not set/);
    expect(r.code).not.toBe(0);
    expect(existsSync(path.join(d, 'tmpd'))).toBe(false);
  });

  it('stops at once when there is no temporary folder', () => {
    const r = sh('begin_script; echo not reached', scratch(), { stubs: { mktemp: 'exit 1' } });
    expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'cannot make a temporary folder in /run\n' });
  });

  // What becomes of the lock when a script ends, by LOCK_RELEASE and exit status.
  it.each([
    ['yes', 0, 'gone'],
    ['yes', 1, 'gone'],
    ['on-failure', 0, 'kept'],
    ['on-failure', 1, 'gone'],
    ['no', 0, 'kept'],
    ['no', 1, 'kept'],
  ] as const)('LOCK_RELEASE=%s, exit %i: the lock is %s', (release, status, outcome) => {
    const d = scratch();
    mkdirSync(path.join(d, 'app.lock'));
    writeFileSync(path.join(d, 'app.lock/token'), 'mine');
    const r = sh(
      `begin_script; LOCK_TOKEN_FILE="$PWD/app.lock/token" LOCK_TOKEN=mine LOCK_RELEASE=${release}; hold_lock; trap on_exit EXIT; cat app.lock/script.pid; echo $$; exit ${status}`,
      d,
      { stubs: mktemp },
    );
    expect(r.code).toBe(status);
    const [pid, self] = r.stdout.trim().split('\n');
    expect(pid).toBe(self);
    expect(existsSync(path.join(d, 'app.lock')) ? 'kept' : 'gone').toBe(outcome);
    if (outcome === 'kept') {
      // Marked alive, no longer running.
      expect(readdirSync(path.join(d, 'app.lock')).sort()).toEqual(['active', 'token']);
    }
    expect(existsSync(path.join(d, 'tmpd'))).toBe(false);
  });

  it('leaves a lock another deploy took over alone, and hold_lock refuses to go on under it', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'app.lock'));
    writeFileSync(path.join(d, 'app.lock/token'), 'theirs');
    const r = sh('LOCK_TOKEN_FILE="$PWD/app.lock/token" LOCK_TOKEN=mine LOCK_RELEASE=yes; hold_lock; echo not reached', d);
    expect(r).toMatchObject({ code: 1, stdout: '@@fail deploy lock\n', stderr: 'the deploy lock is no longer ours: another deploy took it over\n' });
    const ended = sh('TMPD=$(mktemp -d); LOCK_TOKEN_FILE="$PWD/app.lock/token" LOCK_TOKEN=mine LOCK_RELEASE=yes; trap on_exit EXIT; exit 1', d);
    expect(ended.code).toBe(1);
    expect(readdirSync(path.join(d, 'app.lock'))).toEqual(['token']);
  });
});

describe('the lock scripts', () => {
  it('release_lock gives back only our own lock', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'app.lock'));
    writeFileSync(path.join(d, 'app.lock/token'), 'mine');
    expect(sh('release_lock "$PWD/app.lock/token" theirs', d).code).toBe(0);
    expect(existsSync(path.join(d, 'app.lock'))).toBe(true);
    expect(sh('release_lock "$PWD/app.lock/token" mine', d).code).toBe(0);
    expect(existsSync(path.join(d, 'app.lock'))).toBe(false);
  });

  it('clear_lock removes a holder-less lock only while it still has no holder', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'app.lock'));
    writeFileSync(path.join(d, 'app.lock/token'), 'new');
    sh(`clear_lock "$PWD/app.lock/token" ''`, d);
    expect(existsSync(path.join(d, 'app.lock'))).toBe(true);
    sh('clear_lock "$PWD/app.lock/token" old', d);
    expect(existsSync(path.join(d, 'app.lock'))).toBe(true);
    sh('clear_lock "$PWD/app.lock/token" new', d);
    expect(existsSync(path.join(d, 'app.lock'))).toBe(false);
    mkdirSync(path.join(d, 'app.lock'));
    sh(`clear_lock "$PWD/app.lock/token" ''`, d);
    expect(existsSync(path.join(d, 'app.lock'))).toBe(false);
  });
});

describe('audit', () => {
  it('appends one JSON line per script end, the step kept a valid JSON string', () => {
    const d = scratch();
    const env = { AUDIT_FILE: `${d}/log/app.log`, AUDIT_WHO: '"dev@laptop"', AUDIT_COMMAND: '"deploy \\"prod\\""', AUDIT_RELEASE: 'null' };
    // The test's own audit() stand-in is put back by loading lib.sh again.
    const r = sh(`. '${path.join(SH, 'lib.sh')}'; audit ok ''; audit failed 'hook echo "a\\b"'`, d, { env });
    expect(r.stderr).toBe('');
    const lines = readFileSync(path.join(d, 'log/app.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/), who: 'dev@laptop', command: 'deploy "prod"', release: null, result: 'ok', step: '' },
      expect.objectContaining({ result: 'failed', step: 'hook echo ab' }),
    ]);
    expect(mode(path.join(d, 'log/app.log'))).toBe('0640');
  });

  it('writes nothing without an audit file', () => {
    const d = scratch();
    expect(sh(`. '${path.join(SH, 'lib.sh')}'; AUDIT_FILE=''; audit ok ''; echo $?`, d).stdout).toBe('0\n');
    expect(readdirSync(d)).toEqual([]);
  });

  it('after_failed records the step and says the new release stays live', () => {
    const r = sh(`audit() { echo "audit $*"; }; after_failed 'hook migrate'; echo not reached`, scratch());
    expect(r).toMatchObject({ code: 1, stdout: 'audit failed hook migrate\n@@fail hook migrate (the new release stays live)\n' });
  });
});

describe('health', () => {
  const config = {
    HEALTH_URL: 'http://blog.example.com/health',
    HEALTH_RESOLVE: 'blog.example.com:80:127.0.0.1',
    HEALTH_STATUS: '200',
    HEALTH_TIMEOUT: '5',
    HEALTH_RETRIES: '3',
    HEALTH_UNIT: 'blog.service',
    HEALTH_PATH: '/health',
  };
  const systemd = { systemctl: 'if [ "$1" = show ]; then echo 0; elif [ "$1" = is-failed ]; then exit 1; fi', journalctl: 'echo Traceback', sleep: 'exit 0' };

  it('health_ok reports the answer', () => {
    const r = sh('health_ok; echo "status $?"', scratch(), { env: config, stubs: { ...systemd, curl: 'printf 200' } });
    expect(r.stdout).toBe('@@health 200\nstatus 0\n');
    expect(r.calls.find((c) => c.startsWith('curl'))).toBe(
      'curl -s -k -o /dev/null -w %{http_code} --max-time 5 --resolve blog.example.com:80:127.0.0.1 http://blog.example.com/health',
    );
  });

  it('health_ok fails with the answer, what was wanted and the journal', () => {
    const r = sh('health_ok; echo "status $?"', scratch(), { env: config, stubs: { ...systemd, curl: 'printf 500' } });
    expect(r.stdout).toBe('@@health 500\nstatus 1\n');
    expect(r.stderr).toBe("GET /health through nginx answered 500, not 200; last lines of the app's journal:\nTraceback\n");
    expect(r.calls.filter((c) => c.startsWith('curl'))).toHaveLength(3);
    expect(r.calls).toContain('journalctl -u blog.service -n 80 --no-pager -o cat');
  });
});

describe('static_ok', () => {
  const config = {
    HEALTH_RESOLVE: 'blog.example.com:443:127.0.0.1',
    HEALTH_TIMEOUT: '5',
    STATIC_URL: 'https://blog.example.com/assets/',
  };
  function staticDir(files: string[]): string {
    const d = scratch();
    for (const f of files) {
      mkdirSync(path.dirname(path.join(d, 'static', f)), { recursive: true });
      writeFileSync(path.join(d, 'static', f), 'x');
    }
    return path.join(d, 'static');
  }

  it('asks nginx for one file of the static folder under its URL', () => {
    const dir = staticDir(['.hidden/skip.css', 'admin/css/base.css']);
    const r = sh('static_ok; echo "status $?"', scratch(), { env: { ...config, STATIC_DIR: dir }, stubs: { curl: 'printf 200' } });
    expect(r.stdout).toBe('@@step static file GET /assets/admin/css/base.css\nstatus 0\n');
    expect(r.calls).toEqual([
      'curl -s -k -o /dev/null -w %{http_code} --max-time 5 --resolve blog.example.com:443:127.0.0.1 https://blog.example.com/assets/admin/css/base.css',
    ]);
  });

  it.each([
    ['403', 'nginx may not read it'],
    ['404', 'nginx does not find it where the site maps /assets/app.js: check app.static.path'],
    ['502', 'see the nginx error log'],
  ])('fails on %s, saying why', (code, why) => {
    const dir = staticDir(['app.js']);
    const r = sh('static_ok; echo "status $?"', scratch(), { env: { ...config, STATIC_DIR: dir }, stubs: { curl: `printf ${code}` } });
    expect(r.stdout).toMatch(/status 1\n$/);
    expect(r.stderr).toContain(`GET /assets/app.js through nginx answered ${code}, not 200: ${why}`);
  });

  it('notes an empty static folder and passes; checks nothing without one', () => {
    const dir = staticDir([]);
    mkdirSync(dir);
    const r = sh('static_ok; echo "status $?"', scratch(), { env: { ...config, STATIC_DIR: dir }, stubs: { curl: 'printf 403' } });
    expect(r.stdout).toMatch(/^@@note the static folder .* is empty.*\nstatus 0\n$/);
    expect(r.calls).toEqual([]);
    const none = sh('static_ok; echo "status $?"', scratch(), { env: config, stubs: { curl: 'printf 403' } });
    expect(none.stdout).toBe('status 0\n');
  });
});

describe('rollback_live and undo_rollback', () => {
  function changed(d: string): string {
    writeFileSync(path.join(d, 'site.conf'), 'old\n');
    mkdirSync(path.join(d, 'rel'));
    return 'TMPD=$(mktemp -d) && undo_init && NEWREL=$PWD/rel && remember site.conf && echo new > site.conf';
  }
  const stubs = { ...SERVICES, ...WORKERS, curl: 'printf 200' };

  it('puts the previous release and configuration back, reloads, and reports its health', () => {
    const d = scratch();
    const env = { LIVE_UNIT: 'blog.service', LIVE_RESTART: '1', HEALTH_URL: 'http://x/health', HEALTH_RESOLVE: 'x:80:127.0.0.1', HEALTH_STATUS: '200' };
    const r = sh(`${changed(d)}; HEALTH_TIMEOUT=5 HEALTH_RETRIES=1 HEALTH_UNIT=blog.service; rollback_live 'restart blog'; echo not reached`, d, {
      env,
      stubs,
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('@@rolledback 200\n@@fail restart blog\n');
    expect(r.stderr).toBe('rolling back to the previous release and its configuration\n');
    expect(readFileSync(path.join(d, 'site.conf'), 'utf8')).toBe('old\n');
    expect(existsSync(path.join(d, 'rel'))).toBe(false);
    expect(r.calls.filter((c) => c.startsWith('systemctl ') && !c.startsWith('systemctl show'))).toEqual([
      'systemctl daemon-reload',
      'systemctl restart blog.service',
      'systemctl reload-or-restart nginx',
    ]);
  });

  it('restarts the app only when the deploy restarted it, and checks health only with a health check', () => {
    const d = scratch();
    const r = sh(`${changed(d)}; rollback_live 'reload nginx'`, d, { env: { LIVE_UNIT: 'blog.service', LIVE_RESTART: '0' }, stubs });
    expect(r.stdout).toBe('@@fail reload nginx\n');
    expect(r.calls.filter((c) => c.startsWith('systemctl '))).toEqual(['systemctl daemon-reload', 'systemctl reload-or-restart nginx']);
  });

  it('after a failed first deploy, stops and disables the app instead of restarting it forever', () => {
    const d = scratch();
    const first = 'TMPD=$(mktemp -d) && undo_init && remember current && ln -s rel current';
    const env = {
      LIVE_UNIT: 'blog.service',
      LIVE_RESTART: '1',
      LIVE_CURRENT: path.join(d, 'current'),
      LIVE_UNITS: 'blog.socket blog.service',
      HEALTH_URL: 'http://x/health',
      HEALTH_RESOLVE: 'x:80:127.0.0.1',
      HEALTH_STATUS: '200',
    };
    const r = sh(`${first}; HEALTH_TIMEOUT=5 HEALTH_RETRIES=1 HEALTH_UNIT=blog.service; rollback_live 'health check'`, d, {
      env,
      stubs: { ...stubs, systemctl: 'if [ "$1" = show ]; then echo 0; elif [ "$1" = is-failed ]; then exit 1; fi', curl: 'printf 404' },
    });
    expect(r.stdout).toBe('@@rolledback none 404\n@@fail health check\n');
    expect(r.calls.filter((c) => c.startsWith('curl'))).toHaveLength(1);
    expect(existsSync(path.join(d, 'current'))).toBe(false);
    expect(r.calls).toContain('systemctl disable --now --quiet blog.socket blog.service');
    expect(r.calls).toContain('systemctl reset-failed blog.socket blog.service');
    // With a previous release in place nothing is disabled.
    symlinkSync('rel', path.join(d, 'current'));
    const again = sh(`TMPD=$(mktemp -d) && undo_init; rollback_live 'health check'`, d, { env: { ...env, HEALTH_URL: '' }, stubs });
    expect(again.stdout).toBe('@@fail health check\n');
    expect(again.calls.some((c) => c.startsWith('systemctl disable'))).toBe(false);
  });

  it('undo_rollback puts back what was live before the rollback, restarting the app', () => {
    const d = scratch();
    const r = sh(`${changed(d)}; undo_rollback 'health check'`, d, { env: { LIVE_UNIT: 'blog.service' }, stubs });
    expect(r).toMatchObject({ code: 1, stdout: '@@fail health check\n', stderr: 'putting back what was live before the rollback\n' });
    expect(readFileSync(path.join(d, 'site.conf'), 'utf8')).toBe('old\n');
    expect(r.calls).toContain('systemctl restart blog.service');
  });
});

describe('handlers and services', () => {
  it("run_handler runs the role's shell text, a library function included", () => {
    const r = sh('reload_nginx() { echo reloaded; }; run_handler reload_nginx && run_handler \'systemctl restart "blog.service"\'', scratch(), {
      stubs: { systemctl: 'exit 0' },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('reloaded\n');
    expect(r.calls).toEqual(['systemctl restart blog.service']);
  });

  it("run_handler shows why a handler failed, and the unit's journal when it names one", () => {
    const stubs = { systemctl: 'echo "Job for $2 failed." >&2; exit 1', journalctl: 'echo "ImportError: boom"' };
    const withUnit = sh('TMPD=$(mktemp -d); run_handler \'systemctl restart blog.service\' blog.service; echo "status $?"', scratch(), { stubs });
    expect(withUnit.stdout).toBe('status 1\n');
    expect(withUnit.stderr).toBe('Job for blog.service failed.\nImportError: boom\n');
    expect(withUnit.calls).toContain('journalctl -u blog.service -n 80 --no-pager -o cat');
    const without = sh('TMPD=$(mktemp -d); run_handler \'systemctl restart blog.socket\'; echo "status $?"', scratch(), { stubs });
    expect(without.stderr).toBe('Job for blog.socket failed.\n');
  });

  it('start_service shows the journal of a service that does not start; enable_service enables quietly', () => {
    const r = sh('enable_service blog.socket && start_service blog.service; echo "status $?"', scratch(), {
      stubs: { systemctl: '[ "$1" = enable ]', journalctl: 'echo "it crashed"' },
    });
    expect(r.stdout).toBe('status 1\n');
    expect(r.stderr).toBe('it crashed\n');
    expect(r.calls).toEqual(['systemctl enable --quiet blog.socket', 'systemctl start blog.service', 'journalctl -u blog.service -n 80 --no-pager -o cat']);
  });
});

describe('provisioning', () => {
  it('install_packages updates the package lists once when an install fails, then tries again', () => {
    const stubs = { 'apt-get': 'if [ "$1" = update ]; then : > "$STUB_DIR/.updated"; else [ -f "$STUB_DIR/.updated" ]; fi' };
    const r = sh('TMPD=$(mktemp -d); install_packages nginx curl; echo "status $?"', scratch(), { stubs });
    expect(r.stdout).toBe('status 0\n');
    expect(r.calls).toEqual([
      'apt-get install -y -q --no-install-recommends nginx curl',
      'apt-get update -q',
      'apt-get install -y -q --no-install-recommends nginx curl',
    ]);
  });

  it("install_packages fails with apt's last lines", () => {
    const stubs = { 'apt-get': 'echo "E: Unable to locate package nope"; [ "$1" = update ]' };
    const r = sh('TMPD=$(mktemp -d); install_packages nope; echo "status $?"', scratch(), { stubs });
    expect(r.stdout).toBe('status 1\n');
    // What the first try, the update and the second try said.
    expect(r.stderr).toBe('E: Unable to locate package nope\n'.repeat(3));
  });

  it('make_user makes a system user only when there is none', () => {
    const missing = sh('make_user blog /srv/blog', scratch(), { stubs: { getent: 'exit 2', useradd: 'exit 0' } });
    expect(missing.calls).toEqual(['getent passwd blog', 'useradd --system --user-group --home-dir /srv/blog --no-create-home --shell /usr/sbin/nologin blog']);
    const there = sh('make_user blog /srv/blog', scratch(), { stubs: { getent: 'exit 0', useradd: 'exit 1' } });
    expect(there).toMatchObject({ code: 0, calls: ['getent passwd blog'] });
    expect(sh('make_user blog /srv/blog', scratch(), { stubs: { getent: 'exit 2', useradd: 'exit 9' } }).code).not.toBe(0);
  });

  it('join_group, leave_group and make_dir pass the plan on, and their failure', () => {
    const r = sh('join_group www-data blog && leave_group www-data app && make_dir /srv/blog 0750 root blog', scratch(), {
      stubs: { usermod: 'exit 0', gpasswd: 'echo "Removing user"', install: 'exit 0' },
    });
    expect(r).toMatchObject({ code: 0, stdout: '' });
    expect(r.calls).toEqual(['usermod -aG blog www-data', 'gpasswd -d www-data app', 'install -d -m 0750 -o root -g blog /srv/blog']);
    expect(sh('make_dir /srv/blog 0750 root blog', scratch(), { stubs: { install: 'exit 1' } }).code).toBe(1);
  });

  it('self_signed_cert makes a certificate for the names once, and keeps it', () => {
    const d = scratch();
    const cert = `${d}/ssl/cert.pem`;
    const key = `${d}/ssl/key.pem`;
    const make = `self_signed_cert '${cert}' '${key}' /CN=blog.test DNS:blog.test,IP:192.0.2.1`;
    const r = sh(make, d, { stubs: INSTALL_DIR });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(mode(key)).toBe('0600');
    expect(mode(cert)).toBe('0644');
    const text = spawnSync('openssl', ['x509', '-in', cert, '-noout', '-subject', '-ext', 'subjectAltName'], { encoding: 'utf8' }).stdout;
    expect(text).toMatch(/CN ?= ?blog\.test/);
    expect(text).toMatch(/DNS:blog\.test, IP Address:192\.0\.2\.1/);
    const first = readFileSync(cert, 'utf8');
    expect(sh(make, d, { stubs: { ...INSTALL_DIR, openssl: 'exit 1' } }).code).toBe(0);
    expect(readFileSync(cert, 'utf8')).toBe(first);
    expect(readdirSync(path.join(d, 'ssl')).sort()).toEqual(['cert.pem', 'key.pem']);
  });

  it('open_firewall opens SSH, HTTP and HTTPS when ufw is there, and does nothing otherwise', () => {
    const d = scratch();
    const r = sh('open_firewall 2222; echo "status $?"', d, { stubs: { ufw: 'exit 0' } });
    expect(r.stdout).toBe('@@step firewall: allow 2222, 80 and 443/tcp\nstatus 0\n');
    expect(r.calls).toEqual(['ufw allow 2222/tcp', 'ufw allow 80/tcp', 'ufw allow 443/tcp']);
    expect(sh('open_firewall 22; echo "status $?"', d, { stubs: { ufw: 'exit 1' } }).stdout).toMatch(/status 1\n$/);
    // Only the stand-ins' folder on PATH: no ufw.
    const none = sh('PATH=$STUB_DIR; open_firewall 22; echo "status $?"', d);
    expect(none.stdout).toBe('status 0\n');
  });

  it('seal_releases converts every release there, links included, and names the one it cannot seal', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'releases/r1'), { recursive: true });
    mkdirSync(path.join(d, 'releases/r2'));
    symlinkSync('/nonexistent', path.join(d, 'releases/r3'));
    symlinkSync('releases/r2', path.join(d, 'current'));
    const convert = `convert_release() { echo "convert $*"; [ "\${1##*/}" != "\${FAIL:-}" ]; }`;
    const r = sh(`${convert}; seal_releases "$PWD/current" "$PWD/releases" blog static`, d, { stubs: OWNERS });
    expect(r.stdout).toBe(`convert ${d}/releases/r1 blog static\nconvert ${d}/releases/r2 blog static\nconvert ${d}/releases/r3 blog static\n`);
    expect(r.calls).toEqual([`chown -h root:root ${d}/current`]);
    const failed = sh(`${convert}; FAIL=r2; seal_releases "$PWD/current" "$PWD/releases" blog ''`, d, { stubs: OWNERS });
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(new RegExp(`convert ${d}/releases/r2 blog \n@@fail seal ${d}/releases/r2\n$`));
    // Nothing to seal in an empty folder (the glob stays a pattern).
    mkdirSync(path.join(d, 'empty'));
    expect(sh(`${convert}; seal_releases "$PWD/none" "$PWD/empty" blog ''`, d).stdout).toBe('');
  });

  it('socket_group changes the group of a live socket only', () => {
    const d = scratch();
    spawnSync('python3', ['-c', 'import socket; socket.socket(socket.AF_UNIX).bind("app.sock")'], { cwd: d });
    writeFileSync(path.join(d, 'plain'), '');
    const r = sh('socket_group "$PWD/app.sock" www-data && socket_group "$PWD/plain" www-data && socket_group "$PWD/none" www-data', d, { stubs: OWNERS });
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([`chgrp www-data ${d}/app.sock`]);
  });
});

describe('receiving and building a release', () => {
  it('receive_release makes the release folder for the build user and takes the upload', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'releases/r1/old'), { recursive: true });
    const r = sh('receive_release "$PWD/releases/r1" "$PWD/releases/.r1.upload" blog-build 5', d, { input: 'tarball', stubs: INSTALL_DIR });
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([`install -d -m 0750 -o blog-build -g blog-build ${d}/releases/r1`]);
    expect(readdirSync(path.join(d, 'releases/r1'))).toEqual([]);
    expect(readFileSync(path.join(d, 'releases/.r1.upload'), 'utf8')).toBe('tarball');
  });

  it('receive_release says why the upload failed and leaves no partial upload', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'releases'));
    const run = (status: number) =>
      sh(`receive() { echo partial > "$1"; return ${status}; }; receive_release "$PWD/releases/r1" "$PWD/releases/.r1.upload" blog-build 30`, d, {
        stubs: INSTALL_DIR,
      });
    const silent = run(2);
    expect(silent).toMatchObject({ code: 1, stdout: '@@fail receive release\n', stderr: 'nothing arrived for 30 s: the connection to the client was lost\n' });
    expect(existsSync(path.join(d, 'releases/.r1.upload'))).toBe(false);
    expect(run(1)).toMatchObject({ code: 1, stdout: '@@fail receive release\n' });
    const noDir = sh('receive_release "$PWD/releases/r1" "$PWD/releases/.r1.upload" blog-build 30', d, { stubs: { install: 'exit 1' } });
    expect(noDir).toMatchObject({ code: 1, stdout: '@@fail create release directory\n' });
  });

  it('unpack_release unpacks the tarball, removes it, and hands the release to the build user', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'src/app'), { recursive: true });
    writeFileSync(path.join(d, 'src/app/main.py'), 'print(1)\n');
    spawnSync('tar', ['-czf', path.join(d, 'upload.tgz'), '-C', path.join(d, 'src'), '.']);
    mkdirSync(path.join(d, 'releases/r1'), { recursive: true });
    const r = sh('TMPD=$(mktemp -d); unpack_release "$PWD/upload.tgz" "$PWD/releases/r1" blog-build', d, { stubs: OWNERS });
    expect(r.code).toBe(0);
    expect(readFileSync(path.join(d, 'releases/r1/app/main.py'), 'utf8')).toBe('print(1)\n');
    expect(existsSync(path.join(d, 'upload.tgz'))).toBe(false);
    expect(r.calls).toEqual([`chown -R -h -P blog-build:blog-build ${d}/releases/r1`]);
  });

  it("unpack_release fails with tar's complaint on a broken tarball", () => {
    const d = scratch();
    writeFileSync(path.join(d, 'upload.tgz'), 'not a tarball');
    mkdirSync(path.join(d, 'releases/r1'), { recursive: true });
    const r = sh('TMPD=$(mktemp -d); unpack_release "$PWD/upload.tgz" "$PWD/releases/r1" blog-build', d, { stubs: OWNERS });
    expect(r).toMatchObject({ code: 1, stdout: '@@fail unpack release\n' });
    expect(r.stderr).toMatch(/gzip|tar/);
    expect(existsSync(path.join(d, 'upload.tgz'))).toBe(false);
  });

  it("build_step keeps a step's output in the build log and shows its last lines when it fails", () => {
    const d = scratch();
    const r = sh(
      'TMPD=$(mktemp -d); build_step "$PWD" 2 sh -c "echo one; echo two" && build_step "$PWD" 2 sh -c "echo three; echo four; exit 3"; echo "status $?"; build_optional false; echo "optional $?"',
      d,
    );
    expect(r.stdout).toBe('status 1\noptional 0\n');
    expect(r.stderr).toBe('three\nfour\n');
  });

  it('mark_built and is_built: activation goes on only with the release whose build finished', () => {
    const d = scratch();
    const r = sh(
      'mark_built "$PWD/built" r2 && is_built "$PWD/built" r2 && echo r2; is_built "$PWD/built" r1 || echo not-r1; is_built "$PWD/none" r2 || echo none',
      d,
    );
    expect(r.stdout).toBe('r2\nnot-r1\nnone\n');
  });

  it('seal_release stops the build, drops any earlier record and seals', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'releases/r1/.stack'), { recursive: true });
    writeFileSync(path.join(d, 'releases/r1/.stack-release.json'), '{}');
    writeFileSync(path.join(d, 'releases/r1/app.py'), '');
    const r = sh('seal() { echo "seal $*"; }; seal_release "$PWD/releases/r1" blog static blog-build', d, { stubs: { pkill: 'exit 1' } });
    expect(r).toMatchObject({ code: 0, stdout: `seal ${d}/releases/r1 blog static\n`, calls: ['pkill -KILL -u blog-build'] });
    expect(readdirSync(path.join(d, 'releases/r1'))).toEqual(['app.py']);
    expect(sh('seal() { return 1; }; seal_release "$PWD/releases/r1" blog "" blog-build', d, { stubs: { pkill: 'exit 1' } }).code).toBe(1);
  });

  it('write_file and write_manifest write the release record', () => {
    const d = scratch();
    const r = sh(`write_file "$PWD/list" root:blog 0640 <<'END'\n${b64('a.py\nb.py\n')}\nEND\nwrite_manifest "$PWD" blog '{"id":"r1"}'`, d, { stubs: OWNERS });
    expect(r.code).toBe(0);
    expect(readFileSync(path.join(d, 'list'), 'utf8')).toBe('a.py\nb.py\n');
    expect(mode(path.join(d, 'list'))).toBe('0640');
    expect(readFileSync(path.join(d, '.stack-release.json'), 'utf8')).toBe('{"id":"r1"}\n');
    expect(mode(path.join(d, '.stack-release.json'))).toBe('0640');
    expect(r.calls).toEqual([`chown root:blog ${d}/list`, `chown root:blog ${d}/.stack-release.json.new`]);
    expect(readdirSync(d).sort()).toEqual(['.stack-release.json', 'list']);
  });

  it('copy_release links the code of a release into a new one, without its record', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'releases/r1/.stack/config'), { recursive: true });
    writeFileSync(path.join(d, 'releases/r1/.stack-release.json'), '{}');
    writeFileSync(path.join(d, 'releases/r1/app.py'), 'code');
    const r = sh('copy_release "$PWD/releases/r1" "$PWD/releases/r2"', d);
    expect(r.code).toBe(0);
    expect(readdirSync(path.join(d, 'releases/r2'))).toEqual(['app.py']);
    expect(statSync(path.join(d, 'releases/r2/app.py')).ino).toBe(statSync(path.join(d, 'releases/r1/app.py')).ino);
    expect(sh('copy_release "$PWD/releases/none" "$PWD/releases/r3"', d).code).toBe(1);
    expect(readdirSync(path.join(d, 'releases')).sort()).toEqual(['r1', 'r2']);
  });

  it('has_manifest and has_record tell a complete release, and one that can be rolled back to', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'a/.stack/config'), { recursive: true });
    writeFileSync(path.join(d, 'a/.stack-release.json'), '{}');
    mkdirSync(path.join(d, 'b'));
    writeFileSync(path.join(d, 'b/.stack-release.json'), '{}');
    const r = sh('for r in a b c; do has_manifest $r && echo "$r complete"; has_record $r && echo "$r recorded"; done', d);
    expect(r.stdout).toBe('a complete\na recorded\nb complete\n');
  });
});

describe('activation', () => {
  const undo = 'TMPD=$(mktemp -d) && undo_init';

  it('install_file puts a file in place with its mode in one rename, and undo puts the old one back', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'env'), 'OLD=1\n');
    const r = sh(`${undo}\ninstall_file "$PWD/env" 0600 root:blog <<'STACK_FILE_1'\n${b64('NEW=2\n')}\nSTACK_FILE_1\ncat env; undo; cat env`, d, {
      stubs: OWNERS,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('NEW=2\nOLD=1\n');
    expect(r.calls).toEqual([`chown root:blog ${d}/env.stack-new.${r.calls[0]!.split('.').at(-1)}`]);
    expect(readdirSync(d)).toEqual(['env']);
  });

  it('install_file creates missing folders, and aborts naming what failed, with nothing left over', () => {
    const d = scratch();
    const ok = sh(`${undo}\ninstall_file "$PWD/etc/app/site.conf" 0644 root:root <<'T'\n${b64('x')}\nT`, d, { stubs: OWNERS });
    expect(ok.code).toBe(0);
    expect(mode(path.join(d, 'etc/app/site.conf'))).toBe('0644');
    const bad = sh(`${undo}\ninstall_file "$PWD/etc/app/site.conf" 0644 nobody:nobody <<'T'\n${b64('y')}\nT\necho not reached`, d, {
      stubs: { chown: 'exit 1' },
    });
    expect(bad).toMatchObject({ code: 1, stdout: `@@fail set attributes of ${d}/etc/app/site.conf\n` });
    expect(readFileSync(path.join(d, 'etc/app/site.conf'), 'utf8')).toBe('x');
    expect(readdirSync(path.join(d, 'etc/app'))).toEqual(['site.conf']);
  });

  it('set_attributes, install_link and remove_file are remembered, and undone', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'a'), 'a');
    chmodSync(path.join(d, 'a'), 0o644);
    writeFileSync(path.join(d, 'gone'), 'g');
    symlinkSync('a', path.join(d, 'link'));
    const r = sh(
      `${undo} && set_attributes "$PWD/a" 0600 root:root && install_link "$PWD/link" gone && install_link "$PWD/new-link" a && remove_file "$PWD/gone" && stat -c %a a && readlink link new-link && ! [ -e gone ] && undo`,
      d,
      { stubs: OWNERS },
    );
    expect(r.stdout).toBe('600\ngone\na\n');
    expect(mode(path.join(d, 'a'))).toBe('0644');
    expect(readlinkSync(path.join(d, 'link'))).toBe('a');
    expect(readFileSync(path.join(d, 'gone'), 'utf8')).toBe('g');
    expect(readdirSync(d).sort()).toEqual(['a', 'gone', 'link']);
  });

  it.each([
    ['nothing said', '', '', 0],
    ['an unknown key', "/etc/systemd/system/blog.service:7: Unknown key name 'Foo' in section 'Service', ignoring.", '', 1],
    [
      'the missing interpreter before the first release',
      'blog.service: Command /srv/blog/current/.venv/bin/gunicorn is not executable: No such file or directory',
      '/srv/blog/current',
      0,
    ],
    [
      'the missing interpreter and an unknown key',
      "blog.service: Command /srv/blog/current/.venv/bin/gunicorn is not executable\n/etc/systemd/system/blog.service:7: Unknown key name 'Foo'",
      '/srv/blog/current',
      1,
    ],
  ] as const)('verify_unit: %s', (_, said, current, status) => {
    const d = scratch();
    writeFileSync(path.join(d, 'said'), said);
    const r = sh(`${undo}; verify_unit /etc/systemd/system/blog.service ${current}; echo "status $?"; ls "$TMPD"`, d, {
      stubs: { 'systemd-analyze': `cat "${d}/said" >&2` },
    });
    expect(r.stdout).toBe(`status ${status}\nundo\n`);
    expect(r.stderr).toBe(status ? said : '');
    expect(r.calls).toEqual(['systemd-analyze verify /etc/systemd/system/blog.service']);
  });

  it('record_config keeps a copy of each managed file there is, and the links, with the release', () => {
    const d = scratch();
    mkdirSync(path.join(d, 'etc/nginx'), { recursive: true });
    writeFileSync(path.join(d, 'etc/nginx/site.conf'), 'site');
    mkdirSync(path.join(d, 'rel/.stack/config/stale'), { recursive: true });
    const r = sh(
      'record_config "$PWD/rel" "$PWD/etc/nginx/site.conf" "$PWD/etc/missing.conf" && record_link "$PWD/rel" /etc/nginx/sites-enabled/site.conf /etc/nginx/site.conf',
      d,
      { stubs: INSTALL_DIR },
    );
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([`install -d -m 0700 -o root -g root ${d}/rel/.stack`]);
    expect(readFileSync(path.join(d, `rel/.stack/config${d}/etc/nginx/site.conf`), 'utf8')).toBe('site');
    expect(existsSync(path.join(d, 'rel/.stack/config/stale'))).toBe(false);
    expect(existsSync(path.join(d, `rel/.stack/config${d}/etc/missing.conf`))).toBe(false);
    expect(readFileSync(path.join(d, 'rel/.stack/links'), 'utf8')).toBe('/etc/nginx/sites-enabled/site.conf /etc/nginx/site.conf\n');
  });

  it('run_hook is silent when the hook succeeds and shows the last 40 lines of its output when it fails', () => {
    const ok = sh('TMPD=$(mktemp -d); run_hook sh -c "echo migrated"; echo "status $?"', scratch());
    expect(ok).toMatchObject({ stdout: 'status 0\n', stderr: '' });
    const failed = sh('TMPD=$(mktemp -d); run_hook sh -c "seq 50; echo boom >&2; exit 2"; echo "status $?"', scratch());
    expect(failed.stdout).toBe('status 1\n');
    expect(failed.stderr.split('\n').slice(0, -1)).toEqual([...Array.from({ length: 39 }, (_, i) => String(i + 12)), 'boom']);
  });

  it('prune_releases keeps the newest, the new and the busy ones, and drops those never live first', () => {
    const d = scratch();
    const releases = path.join(d, 'releases');
    for (const r of ['r1', 'r2', 'r3', 'r4', 'r5', 'r6']) {
      mkdirSync(path.join(releases, r, '.stack/config'), { recursive: true });
      writeFileSync(path.join(releases, r, '.stack-release.json'), '{}');
    }
    // r7 never went live (no recorded configuration), r8 is not complete yet but live.
    mkdirSync(path.join(releases, 'r7'));
    writeFileSync(path.join(releases, 'r7/.stack-release.json'), '{}');
    mkdirSync(path.join(releases, 'r8'));
    symlinkSync('releases/r8', path.join(d, 'current'));
    // A process of the app still works in r2.
    const body =
      '(cd releases/r2/.stack && exec sleep 5) & busy=$!; sleep 0.2; export BUSY=$busy; prune_releases "$PWD/releases" 3 r6 "$PWD/current" blog; pwd; kill $busy';
    const r = sh(body, d, { stubs: { pgrep: 'echo "$BUSY"' } });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('/\n');
    expect(r.calls).toEqual(['pgrep -u blog']);
    // The newest three (r8, r6, r5) and r2 for its process: r7 went first and took no place among them.
    expect(readdirSync(releases).sort()).toEqual(['r2', 'r5', 'r6', 'r8']);
  });

  it('prune_releases removes nothing when the releases folder is not there', () => {
    const d = scratch();
    writeFileSync(path.join(d, 'keep'), '');
    const r = sh('prune_releases "$PWD/none" 1 r1 "$PWD/current" blog; ls', d, { stubs: { pgrep: 'exit 1' } });
    expect(r.stdout).toBe('keep\n');
  });
});

describe("certificates (certbot's webroot method)", () => {
  const marker = 'STACK_DOMAINS';
  const standIn = `server { listen 80; server_name ${marker}; }\n`;
  /**
   * curl as nginx answering the challenge path: for the domains in SERVED, and for any domain
   * the stand-in block names once it is there (unless NO_STAND_IN: a conf.d nginx does not read).
   */
  const curl = [
    'for a; do url=$a; done',
    `domain=\${url#http://}; domain=\${domain%%/*}; probe=\${url##*/}`,
    'case " $SERVED " in *" $domain "*) cat "$CHALLENGES/$probe"; exit 0 ;; esac',
    `if [ -z "\${NO_STAND_IN:-}" ] && grep -q " $domain" "$STAND_IN" 2>/dev/null; then cat "$CHALLENGES/$probe"; fi`,
  ].join('\n');
  // certbot keeps what the stand-in block was while it ran.
  const certbot = `cp "$STAND_IN" "$STUB_DIR/.stand-in" 2>/dev/null; [ -z "\${CERTBOT_FAILS:-}" ] || { echo "Saving debug log to /var/log/x"; echo "Connection refused"; exit 1; }`;
  const nginx = `[ -z "\${NGINX_FAILS:-}" ] || { echo "nginx: [emerg] bad" >&2; exit 1; }`;
  const stubs = { curl, certbot, nginx, ...SERVICES, ...WORKERS };

  function obtain(served: string, env: Record<string, string> = {}) {
    const d = scratch();
    const paths = { CHALLENGES: `${d}/acme/.well-known/acme-challenge`, STAND_IN: `${d}/conf.d/acme.conf` };
    mkdirSync(path.join(d, 'conf.d'));
    const body = [
      'TMPD=$(mktemp -d)',
      'audit() { echo "audit $*"; }',
      `acme_answer "$CHALLENGES" "$STAND_IN" ${marker} a.test b.test c.test <<'STACK_STAND_IN'`,
      b64(standIn),
      'STACK_STAND_IN',
      'obtain_certificate certbot certonly -d a.test -d b.test -d c.test',
      'echo done',
    ].join('\n');
    const r = sh(body, d, { stubs, env: { SERVED: served, ...paths, ...env } });
    const kept = path.join(r.stubDir, '.stand-in');
    return {
      ...r,
      dir: d,
      /** The stand-in block while certbot ran, if there was one. */
      standIn: existsSync(kept) ? readFileSync(kept, 'utf8') : null,
      left: readdirSync(path.join(d, 'conf.d')),
      probes: readdirSync(paths.CHALLENGES),
      nginx: r.calls.filter((c) => c.startsWith('nginx') || c.startsWith('systemctl')),
    };
  }

  it('asks nothing more of nginx when it answers for every domain, and leaves nothing behind', () => {
    const r = obtain('a.test b.test c.test');
    expect(r.stdout).toBe('done\n');
    expect(r.standIn).toBeNull();
    expect(r.nginx).toEqual([]);
    expect(r.calls.filter((c) => c.startsWith('curl'))).toHaveLength(3);
    expect(r.calls.at(-1)).toBe('certbot certonly -d a.test -d b.test -d c.test');
    expect(r.left).toEqual([]);
    expect(r.probes).toEqual([]);
  });

  it('puts a stand-in block up for the domains nginx does not answer while certbot runs, then takes it down', () => {
    const r = obtain('a.test');
    expect(r.stdout).toBe('done\n');
    expect(r.standIn).toBe('server { listen 80; server_name  b.test c.test; }\n');
    expect(r.nginx).toEqual(['nginx -t -q', 'systemctl reload-or-restart nginx', 'nginx -t -q', 'systemctl reload-or-restart nginx']);
    expect(r.left).toEqual([]);
    expect(r.probes).toEqual([]);
  });

  it("fails with certbot's last words, and takes the stand-in down", () => {
    const r = obtain('a.test', { CERTBOT_FAILS: '1' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('audit failed obtain certificate\n@@fail obtain certificate\n');
    expect(r.stderr).toBe('Connection refused\n');
    expect(r.left).toEqual([]);
    expect(r.probes).toEqual([]);
  });

  it('fails when even the stand-in block does not answer, naming the domain and the file', () => {
    const r = obtain('a.test', { NO_STAND_IN: '1' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('audit failed ACME stand-in\n@@fail ACME stand-in\n');
    expect(r.stderr).toBe(
      `nginx does not answer /.well-known/acme-challenge/ for b.test, even with ${r.dir}/conf.d/acme.conf (does nginx.conf include conf.d?)\n`,
    );
    expect(r.calls.some((c) => c.startsWith('certbot'))).toBe(false);
    expect(r.left).toEqual([]);
  });

  it('fails when nginx rejects the stand-in block, with its complaint', () => {
    const r = obtain('a.test', { NGINX_FAILS: '1' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('audit failed nginx -t (ACME stand-in)\n@@fail nginx -t (ACME stand-in)\n');
    expect(r.stderr).toBe('nginx: [emerg] bad\n');
    expect(r.left).toEqual([]);
  });
});

describe('shared virtualenvs', () => {
  /** python3 as a stand-in whose fingerprint is the text of $STUB_DIR/python (or that fails). */
  const PYTHON = { python3: 'if [ -f "$STUB_DIR/python" ]; then cat "$STUB_DIR/python"; else exit 1; fi' };
  /** stat -c %U as if root owned everything but the paths listed in $STUB_DIR/owners ("PATH OWNER" lines). */
  const STAT = {
    stat: 'for a; do f=$a; done; [ -e "$f" ] || exit 1; o=$(grep -F "$f " "$STUB_DIR/owners" 2>/dev/null | cut -d" " -f2); [ -n "$o" ] || o=root; echo "$o"',
  };
  const sha = (text: string) => createHash('sha256').update(text).digest('hex');
  const DIGEST = 'd'.repeat(64);

  /** A scratch folder with a fake python3 printing `fingerprint`. */
  function venvSh(body: string, d: string, fingerprint: string | null, o: { input?: string; owners?: string; stubs?: Record<string, string> } = {}) {
    const setup = [
      // JSON's \n, as printf %b reads it.
      fingerprint === null ? '' : `printf '%b\\n' ${JSON.stringify(fingerprint)} > "$STUB_DIR/python"`,
      o.owners ? `printf '%b\\n' ${JSON.stringify(o.owners)} > "$STUB_DIR/owners"` : '',
    ].join('\n');
    return sh(`${setup}\n${body}`, d, { input: o.input, stubs: { ...PYTHON, ...STAT, ...o.stubs } });
  }

  it("python_fingerprint runs the server's python3: its version, platform and system packages", () => {
    const r = sh('python_fingerprint', scratch());
    expect(r.code).toBe(0);
    const version = spawnSync('python3', ['-c', 'import sys; print(sys.version)'], { encoding: 'utf8' }).stdout.trim();
    expect(r.stdout.split('\n')[0]).toBe(version);
    expect(r.stdout.split('\n')[1]).toMatch(/^linux-\S+ cpython-3\d+$/);
  });

  it('venv_key names the digest on this Python: another Python or digest, another name; none without python3', () => {
    const d = scratch();
    const key = venvSh(`venv_key ${DIGEST}`, d, '3.11.2 (main)\nlinux-x86_64 cpython-311');
    expect(key).toMatchObject({ code: 0, stdout: `${sha(`stack-venv 1\n${DIGEST}\n3.11.2 (main)\nlinux-x86_64 cpython-311\n`)}\n` });
    expect(venvSh(`venv_key ${DIGEST}`, d, '3.11.4 (main)\nlinux-x86_64 cpython-311').stdout).not.toBe(key.stdout);
    expect(venvSh(`venv_key ${'e'.repeat(64)}`, d, '3.11.2 (main)\nlinux-x86_64 cpython-311').stdout).not.toBe(key.stdout);
    expect(venvSh(`venv_key ${DIGEST} || echo "failed $?"`, d, null).stdout).toBe('failed 1\n');
  });

  it("venv_ready: only a folder root owns, with root's own mark", () => {
    const d = scratch();
    for (const v of ['sealed', 'unsealed', 'no-mark', 'build-mark']) mkdirSync(path.join(d, v));
    for (const v of ['sealed', 'unsealed', 'build-mark']) writeFileSync(path.join(d, v, '.stack-venv'), 'k\n');
    symlinkSync('sealed', path.join(d, 'link'));
    const owners = `${d}/unsealed blog-build\n${d}/build-mark/.stack-venv blog-build`;
    const r = venvSh('for v in sealed unsealed no-mark build-mark link none; do venv_ready "$PWD/$v" && echo "$v"; done; true', d, null, { owners });
    expect(r.stdout).toBe('sealed\n');
  });

  it('receive_index takes the first line of stdin into a private file and leaves the tarball', () => {
    const d = scratch();
    const r = sh('umask 077; TMPD=$(mktemp -d); receive_index 5 && cat > "$PWD/upload" && cat "$INDEX_FILE" && stat -c %a "$INDEX_FILE"', d, {
      input: 'https://pypi.test/simple/\nTARBALL\nmore',
    });
    expect(r).toMatchObject({ code: 0, stdout: 'https://pypi.test/simple/\n600\n' });
    expect(readFileSync(path.join(d, 'upload'), 'utf8')).toBe('TARBALL\nmore');
    expect(sh('TMPD=$(mktemp -d); receive_index 5', d, { input: '' })).toMatchObject({ code: 1, stdout: '@@fail receive the package index\n' });
    // A client that went silent before the line arrived.
    const silent = sh('TMPD=$(mktemp -d); sleep 2 | receive_index 1', d);
    expect(silent).toMatchObject({ code: 1, stdout: '@@fail receive the package index\n' });
  });

  it('use_venv links the release to a sealed virtualenv and builds nothing', () => {
    const d = scratch();
    const fingerprint = '3.11.2\nlinux-x86_64 cpython-311';
    const key = sha(`stack-venv 1\n${DIGEST}\n${fingerprint}\n`);
    mkdirSync(path.join(d, `venvs/${key}/bin`), { recursive: true });
    writeFileSync(path.join(d, `venvs/${key}/.stack-venv`), `${key}\n`);
    mkdirSync(path.join(d, 'releases/r2/.venv'), { recursive: true });
    const r = venvSh(`use_venv "$PWD/releases/r2" "$PWD/venvs" ${DIGEST} blog-build && echo "build=$VENV_BUILD venv=$VENV"`, d, fingerprint, {
      stubs: INSTALL_DIR,
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`@@step virtualenv ${key.slice(0, 12)} reused (requirements and Python unchanged)\nbuild=0 venv=${d}/venvs/${key}\n`);
    // Relative: from releases/ID to venvs/KEY, wherever /srv/NAME is mounted.
    expect(readlinkSync(path.join(d, 'releases/r2/.venv'))).toBe(`../../venvs/${key}`);
    expect(existsSync(path.join(d, `venvs/${key}/bin`))).toBe(true);
    expect(r.calls.filter((c) => c.startsWith('install'))).toEqual([]);
  });

  it('use_venv makes an empty folder for the build user where none is sealed, removing what a cut build left', () => {
    const d = scratch();
    const fingerprint = '3.11.2\nlinux-x86_64 cpython-311';
    const key = sha(`stack-venv 1\n${DIGEST}\n${fingerprint}\n`);
    mkdirSync(path.join(d, `venvs/${key}/lib`), { recursive: true });
    writeFileSync(path.join(d, `venvs/${key}/.stack-venv`), 'planted\n');
    mkdirSync(path.join(d, 'releases/r2'), { recursive: true });
    const r = venvSh(`use_venv "$PWD/releases/r2" "$PWD/venvs" ${DIGEST} blog-build && echo "build=$VENV_BUILD"`, d, fingerprint, {
      owners: `${d}/venvs/${key} blog-build`,
      stubs: INSTALL_DIR,
    });
    expect(r).toMatchObject({ code: 0, stdout: 'build=1\n' });
    expect(r.calls.filter((c) => c.startsWith('install'))).toEqual([`install -d -m 0755 -o blog-build -g blog-build ${d}/venvs/${key}`]);
    expect(readdirSync(path.join(d, `venvs/${key}`))).toEqual([]);
    expect(readlinkSync(path.join(d, 'releases/r2/.venv'))).toBe(`../../venvs/${key}`);
    const noPython = venvSh(`use_venv "$PWD/releases/r2" "$PWD/venvs" ${DIGEST} blog-build || echo "status $?"`, d, null);
    expect(noPython).toMatchObject({ stdout: 'status 1\n', stderr: 'python3 does not run on the server\n' });
  });

  it('venv_build_step runs only when a virtualenv is being built, with the index on stdin when asked', () => {
    const d = scratch();
    const body = (build: number) =>
      [
        `TMPD=$(mktemp -d); VENV_BUILD=${build}; INDEX_FILE=$TMPD/index; echo https://pypi.test/simple/ > "$INDEX_FILE"`,
        `venv_build_step "$PWD" 5 'pip install' index sh -c 'read -r url && echo "got $url" > "$0/pip.out"' "$PWD"`,
        `venv_build_step "$PWD" 5 'create virtualenv' - sh -c 'cat > "$0/venv.out"' "$PWD"`,
        'echo done',
      ].join('\n');
    const skipped = sh(body(0), d);
    expect(skipped).toMatchObject({ code: 0, stdout: 'done\n' });
    expect(existsSync(path.join(d, 'pip.out'))).toBe(false);
    const built = sh(body(1), d);
    expect(built).toMatchObject({ code: 0, stdout: '@@step pip install\n@@step create virtualenv\ndone\n' });
    expect(readFileSync(path.join(d, 'pip.out'), 'utf8')).toBe('got https://pypi.test/simple/\n');
    // Only the step that asks for the index gets it.
    expect(readFileSync(path.join(d, 'venv.out'), 'utf8')).toBe('');
    const failed = sh(
      `TMPD=$(mktemp -d); VENV_BUILD=1; venv_build_step "$PWD" 1 'pip install' - sh -c 'echo one; echo "No matching distribution"; exit 1'; echo never`,
      d,
    );
    expect(failed).toMatchObject({ code: 1, stdout: '@@step pip install\n@@fail pip install\n', stderr: 'No matching distribution\n' });
  });

  it("seal_venv stops the build, makes it root's and readable by all, writable by none, then marks it", () => {
    const d = scratch();
    const v = path.join(d, 'venvs/k1');
    mkdirSync(path.join(v, 'bin'), { recursive: true });
    writeFileSync(path.join(v, 'bin/python3.11'), '', { mode: 0o4775 });
    writeFileSync(path.join(v, 'pyvenv.cfg'), 'home = /usr/bin\n', { mode: 0o664 });
    writeFileSync(path.join(v, '.stack-venv'), 'planted by the build\n');
    symlinkSync('/usr/bin/python3', path.join(v, 'bin/python'));
    chmodSync(path.join(v, 'bin'), 0o775);
    const r = sh('umask 077; seal_venv "$PWD/venvs/k1" blog-build', d, { stubs: { ...OWNERS, pkill: 'exit 1' } });
    expect(r).toMatchObject({ code: 0, stdout: '' });
    expect(r.calls).toEqual(['pkill -KILL -u blog-build', `chown -R -h -P root:root ${v}`]);
    expect(mode(path.join(v, 'bin/python3.11'))).toBe('0755');
    expect(mode(path.join(v, 'pyvenv.cfg'))).toBe('0644');
    expect(mode(path.join(v, 'bin'))).toBe('0755');
    expect(readFileSync(path.join(v, '.stack-venv'), 'utf8')).toBe('k1\n');
    expect(mode(path.join(v, '.stack-venv'))).toBe('0644');
    expect(sh('seal_venv "$PWD/venvs/k1" blog-build', d, { stubs: { chown: 'exit 1', pkill: 'exit 1' } }).code).toBe(1);
  });

  it('finish_venv seals only a virtualenv this script built', () => {
    const d = scratch();
    const seal = 'seal_venv() { echo "seal $*"; }';
    expect(sh(`${seal}; VENV_BUILD=0 VENV=/v; finish_venv blog-build`, d).stdout).toBe('');
    expect(sh(`${seal}; VENV_BUILD=1 VENV=/v; finish_venv blog-build`, d).stdout).toBe('@@step seal the virtualenv\nseal /v blog-build\n');
  });

  it("check_venv: the release's link leads into the virtualenvs, to a sealed one; or it has its own", () => {
    const d = scratch();
    mkdirSync(path.join(d, 'venvs/ready'), { recursive: true });
    writeFileSync(path.join(d, 'venvs/ready/.stack-venv'), 'ready\n');
    mkdirSync(path.join(d, 'venvs/partial'));
    mkdirSync(path.join(d, 'elsewhere/ready'), { recursive: true });
    writeFileSync(path.join(d, 'elsewhere/ready/.stack-venv'), 'ready\n');
    const release = (name: string, target: string | null) => {
      mkdirSync(path.join(d, 'releases', name), { recursive: true });
      if (target === 'own') mkdirSync(path.join(d, 'releases', name, '.venv'));
      else if (target) symlinkSync(target, path.join(d, 'releases', name, '.venv'));
    };
    release('linked', '../../venvs/ready');
    release('own', 'own');
    release('partial', '../../venvs/partial');
    release('outside', '../../elsewhere/ready');
    release('dangling', '../../venvs/gone');
    release('none', null);
    const r = sh('for r in linked own partial outside dangling none; do check_venv "$PWD/releases/$r" "$PWD/venvs" && echo "$r"; done; true', d, {
      stubs: { stat: `for a; do f=$a; done; case $f in *partial/.stack-venv) echo blog-build;; *) echo root;; esac` },
    });
    expect(r.stdout).toBe('linked\nown\n');
  });

  it('prune_venvs keeps the virtualenvs a release links to and removes the rest', () => {
    const d = scratch();
    for (const v of ['a', 'b', 'c', 'partial']) mkdirSync(path.join(d, 'venvs', v), { recursive: true });
    for (const r of ['r1', 'r2', 'r3']) mkdirSync(path.join(d, 'releases', r), { recursive: true });
    symlinkSync('../../venvs/a', path.join(d, 'releases/r1/.venv'));
    symlinkSync('../../venvs/b', path.join(d, 'releases/r2/.venv'));
    // A release from before virtualenvs were shared.
    mkdirSync(path.join(d, 'releases/r3/.venv'));
    const r = sh('prune_venvs "$PWD/venvs" "$PWD/releases"', d);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(readdirSync(path.join(d, 'venvs')).sort()).toEqual(['a', 'b']);
    // Nothing there yet: nothing to do.
    expect(sh('prune_venvs "$PWD/none" "$PWD/releases"', d).code).toBe(0);
  });
});
