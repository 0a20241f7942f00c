/**
 * The remote shell library (src/remote/sh/*.sh), run here under dash in temporary folders: the
 * same functions the root scripts run on servers, in milliseconds, plus shellcheck over them.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const SH = path.join(ROOT, 'src/remote/sh');
const LIBRARY = ['lib.sh', 'release.sh'].map((f) => path.join(SH, f));

/** Runs `body` under dash with the library loaded, in `cwd`. */
function dash(body: string, cwd: string, input?: string): { code: number | null; stdout: string; stderr: string } {
  const script = `${LIBRARY.map((f) => `. '${f}'`).join('\n')}\naudit() { :; }\n${body}`;
  const r = spawnSync('dash', ['-c', script], { cwd, input, encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function scratch(): string {
  return mkdtempSync(path.join(tmpdir(), 'stack-sh-'));
}

const mode = (p: string) => (statSync(p).mode & 0o7777).toString(8).padStart(4, '0');

describe('shellcheck', () => {
  it('finds nothing in any remote script', () => {
    const files = readdirSync(SH)
      .filter((f) => f.endsWith('.sh'))
      .map((f) => path.join(SH, f));
    expect(files.length).toBeGreaterThanOrEqual(2);
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
    const r = spawnSync('dash', ['-c', `{ printf start; sleep 4; } | dash -c '. ${LIBRARY[0]}; . ${LIBRARY[1]}; receive upload 1; echo "status $?"'`], {
      cwd: d,
      encoding: 'utf8',
      timeout: 20_000,
    });
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
