/**
 * Facts: each one's script (src/remote/sh/facts.sh plus the calls built in src/facts/*.ts) run
 * here under dash against a fixture tree in a temporary folder, and its parser fed the output;
 * then the parsers alone over tables of records, the odd ones included. No root, no server.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { auditFact, parseAudit } from '../../src/facts/audit.js';
import { factScript, type Fact } from '../../src/facts/fact.js';
import { hostFact, parseFacts } from '../../src/facts/host.js';
import { lockFact, lockRequest, parseLock } from '../../src/facts/lock.js';
import { parseReleases, previousRelease, releasesFact } from '../../src/facts/releases.js';
import { restoreFact } from '../../src/facts/restore.js';
import { sha256 } from '../../src/plan/plan.js';
import type { DesiredState } from '../../src/state/desired.js';
import type { Layout } from '../../src/views/layout.js';
import { ROOT } from '../helpers/cli.js';

/** Runs the facts' one script under dash, as a server would, and returns its raw result. */
function run(...facts: Fact<unknown>[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('dash', ['-c', factScript(...facts)], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ask<T>(fact: Fact<T>): T {
  const r = run(fact);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return fact.parse(r.stdout);
}

function scratch(): string {
  return mkdtempSync(path.join(tmpdir(), 'stack-facts-'));
}

function layoutIn(root: string): Layout {
  return { app: 'blog', current: `${root}/current`, releases: `${root}/releases`, venvs: `${root}/venvs` } as Layout;
}

/** The parts of a desired state the host fact reads, with paths in `root`. */
function desiredIn(root: string, parts: { links?: { path: string }[]; removes?: { path: string }[]; dirs?: { path: string }[] }): DesiredState {
  return {
    links: [],
    removes: [],
    dirs: [],
    users: [],
    memberships: [],
    services: [],
    packages: [],
    ...parts,
    layout: layoutIn(root),
  } as unknown as DesiredState;
}

function write(file: string, content: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}

const manifest = (id: string) => JSON.stringify({ id, source_hash: `src-${id}`, created: '2026-12-01T00:00:00.000Z', by: 'dev@laptop' });

describe('releases', () => {
  it('lists each release with its manifest and recorded configuration, the live one marked', () => {
    const root = scratch();
    const { releases } = layoutIn(root);
    write(`${releases}/20261201T000001.000Z/.stack-release.json`, manifest('20261201T000001.000Z'));
    mkdirSync(`${releases}/20261201T000001.000Z/.stack/config`, { recursive: true });
    write(`${releases}/20261201T000002.000Z/.stack-release.json`, manifest('20261201T000002.000Z'));
    mkdirSync(`${releases}/20261201T000003.000Z`);
    write(`${releases}/.20261201T000004.000Z.upload`, 'partial');
    symlinkSync('releases/20261201T000002.000Z', `${root}/current`);
    const list = ask(releasesFact(layoutIn(root)));
    expect(list.map((r) => [r.id, r.manifest?.source_hash ?? null, r.hasConfig, r.live])).toEqual([
      ['20261201T000001.000Z', 'src-20261201T000001.000Z', true, false],
      ['20261201T000002.000Z', 'src-20261201T000002.000Z', false, true],
      ['20261201T000003.000Z', null, false, false],
    ]);
    expect(previousRelease(list)?.id).toBe('20261201T000001.000Z');
  });

  it('says there are none on a server that never had a deploy', () => {
    expect(ask(releasesFact(layoutIn(scratch())))).toEqual([]);
  });

  it.each([
    ['a manifest that is not JSON is incomplete', `release\tr1\t${Buffer.from('{').toString('base64')}\t1\nlive\tr1\n`, [['r1', null, true, true]]],
    [
      'old second-precision ids sort with new ones',
      'release\t20261201T000001Z\t-\t0\nrelease\t20261201T000000.500Z\t-\t0\nlive\t\n',
      [
        ['20261201T000000.500Z', null, false, false],
        ['20261201T000001Z', null, false, false],
      ],
    ],
    ['a record without an id is skipped', 'release\t\t-\t0\nlive\t-\n', []],
  ])('%s', (_name, output, want) => {
    expect(parseReleases(output).map((r) => [r.id, r.manifest, r.hasConfig, r.live])).toEqual(want);
  });
});

describe('what a rollback would restore', () => {
  it('names changed files (with both contents), changed attributes and moved links, never a secret', () => {
    const root = scratch();
    const { releases } = layoutIn(root);
    const rel = `${releases}/r1`;
    const live = `${root}/etc/app`;
    write(`${live}/site.conf`, 'listen 8001;\n');
    write(`${live}/same.conf`, 'same\n');
    write(`${live}/key.pem`, 'LIVE KEY\n');
    write(`${rel}/.stack/config${live}/site.conf`, 'listen 8000;\n');
    write(`${rel}/.stack/config${live}/same.conf`, 'same\n');
    write(`${rel}/.stack/config${live}/key.pem`, 'OLD KEY\n');
    write(`${rel}/.stack/config${live}/gone.conf`, 'was there\n');
    symlinkSync('site.conf', `${live}/enabled.conf`);
    write(`${rel}/.stack/links`, `${live}/enabled.conf other.conf\n`);
    symlinkSync('releases/r2', `${root}/current`);
    const same = spawnSync('stat', ['-c', '%a', `${live}/same.conf`], { encoding: 'utf8' }).stdout.trim();
    const plan = ask(restoreFact(layoutIn(root), 'r1', [`${live}/key.pem`], (_p, text) => text.replace('8000', '[port]')));
    const byPath = new Map(plan.files.map((f) => [f.path.slice(live.length + 1), f]));
    expect([...byPath.keys()].sort()).toEqual(['gone.conf', 'key.pem', 'site.conf', ...(same === '644' ? [] : ['same.conf'])].sort());
    expect(byPath.get('site.conf')).toMatchObject({ contentChanged: true, before: 'listen 8001;\n', after: 'listen [port];\n' });
    expect(byPath.get('gone.conf')).toMatchObject({ contentChanged: true, live: null, before: null, after: 'was there\n' });
    expect(byPath.get('key.pem')).toMatchObject({ contentChanged: true, before: null, after: null });
    expect(byPath.get('site.conf')!.attributes).toMatch(/^\d+:root:/);
    expect(plan.links).toEqual([
      { path: `${live}/enabled.conf`, now: 'site.conf', target: 'other.conf' },
      { path: `${root}/current`, now: 'releases/r2', target: 'releases/r1' },
    ]);
  });

  it('fails, saying why, for a release without recorded configuration', () => {
    const root = scratch();
    mkdirSync(`${root}/releases/r1`, { recursive: true });
    const r = run(restoreFact(layoutIn(root), 'r1', [], (_p, t) => t));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no recorded configuration');
  });
});

describe('the deploy lock', () => {
  const request = (dir: string, token: string) => ({
    ...lockRequest('blog', { dryRun: false, by: 'dev@laptop', command: 'deploy prod', token, since: new Date('2026-12-01T00:00:00Z') }),
    dir,
  });

  it('is taken by exactly one: the second sees the first as holder', () => {
    const dir = `${scratch()}/lib/blog.lock`;
    expect(ask(lockFact(request(dir, 'one')))).toEqual({ state: 'acquired' });
    const second = ask(lockFact(request(dir, 'two')));
    expect(second).toMatchObject({ state: 'held', scriptRunning: false, holder: { token: 'one', who: 'dev@laptop', command: 'deploy prod' } });
    expect(second.state === 'held' && second.age).toBeGreaterThanOrEqual(0);
  });

  it('reports without taking, and dates the last sign of life', () => {
    const dir = `${scratch()}/blog.lock`;
    expect(ask(lockFact({ ...request(dir, 'x'), mode: 'report' }))).toEqual({ state: 'free' });
    ask(lockFact(request(dir, 'x')));
    write(`${dir}/active`, '');
    utimesSync(`${dir}/active`, new Date(Date.now() - 700_000), new Date(Date.now() - 700_000));
    const held = ask(lockFact({ ...request(dir, 'y'), mode: 'report' }));
    expect(held.state === 'held' && held.age).toBeGreaterThanOrEqual(699);
  });

  it('is an error, not another holder, when it cannot be made', () => {
    const parent = `${scratch()}/file`;
    writeFileSync(parent, 'not a folder');
    const state = ask(lockFact(request(`${parent}/blog.lock`, 'x')));
    expect(state.state).toBe('error');
    expect(state.state === 'error' && state.message).toMatch(/Not a directory.*MiB free there/);
  });

  it.each([
    ['', { state: 'free' }],
    ['lock\tfree\n', { state: 'free' }],
    ['lock\tacquired\n', { state: 'acquired' }],
    ['lock\theld\t\t0\t12\n', { state: 'held', holder: null, scriptRunning: false, age: 12 }],
    ['lock\theld\tbm90IGluZm8=\t1\tx\n', { state: 'held', holder: null, scriptRunning: true, age: null }],
    ['lock\terror\tdisk full\n', { state: 'error', message: 'disk full' }],
  ])('%j parses', (output, want) => {
    expect(parseLock(output)).toEqual(want);
  });
});

describe('host facts', () => {
  it('hashes files, sends differing content only when not secret, and reads links, dirs and releases', () => {
    const root = scratch();
    write(`${root}/same.conf`, 'same\n');
    write(`${root}/changed.conf`, 'old\n');
    write(`${root}/key.pem`, 'KEY\n');
    mkdirSync(`${root}/releases/r1`, { recursive: true });
    write(`${root}/releases/r1/.stack-release.json`, manifest('r1'));
    write(`${root}/releases/r1/.stack-files`, 'app.py\n');
    symlinkSync('releases/r1', `${root}/current`);
    symlinkSync('same.conf', `${root}/link`);
    const desired = desiredIn(root, {
      links: [{ path: `${root}/link` }, { path: `${root}/nolink` }],
      removes: [{ path: `${root}/link` }],
      dirs: [{ path: `${root}/releases` }, { path: `${root}/missing` }],
    });
    const files = new Map([
      [`${root}/same.conf`, sha256('same\n')],
      [`${root}/changed.conf`, sha256('new\n')],
      [`${root}/key.pem`, sha256('OTHER\n')],
      [`${root}/absent.conf`, sha256('x')],
    ]);
    const facts = ask(hostFact(desired, { files, probes: [`${root}/absent.conf`], secret: new Set([`${root}/key.pem`]), shippedHash: sha256('other.py\n') }));
    expect(facts.files.get(`${root}/same.conf`)).toMatchObject({ exists: true, sha256: sha256('same\n') });
    expect(facts.files.get(`${root}/same.conf`)!.content).toBeUndefined();
    expect(facts.files.get(`${root}/changed.conf`)).toMatchObject({ exists: true, content: 'old\n' });
    expect(facts.files.get(`${root}/key.pem`)).toMatchObject({ exists: true, sha256: sha256('KEY\n') });
    expect(facts.files.get(`${root}/key.pem`)!.content).toBeUndefined();
    expect(facts.files.get(`${root}/absent.conf`)).toEqual({ exists: false });
    expect(facts.links).toEqual(
      new Map([
        [`${root}/link`, 'same.conf'],
        [`${root}/nolink`, null],
      ]),
    );
    expect(facts.present).toEqual(new Set([`${root}/link`]));
    expect(facts.dirs.get(`${root}/missing`)).toBeNull();
    expect(facts.dirs.get(`${root}/releases`)).toMatchObject({ mode: expect.stringMatching(/^0\d{3}$/) });
    expect(facts.currentRelease).toBe('r1');
    expect(facts.manifest?.source_hash).toBe('src-r1');
    expect(facts.releases).toEqual(['r1']);
    expect(facts.shipped).toEqual(['app.py']);
    expect(facts.freeKib).toBeGreaterThan(0);
    expect(facts.cpus).toBeGreaterThan(0);
  });

  it('leaves out the shipped list when it is the one about to ship', () => {
    const root = scratch();
    mkdirSync(`${root}/releases/r1`, { recursive: true });
    write(`${root}/releases/r1/.stack-files`, 'app.py\n');
    symlinkSync('releases/r1', `${root}/current`);
    const desired = desiredIn(root, {});
    expect(ask(hostFact(desired, { files: new Map(), probes: [], shippedHash: sha256('app.py\n') })).shipped).toBeNull();
  });

  it("names the virtualenv new code needs on this server's Python, as the release script will, and says whether one is sealed", () => {
    const root = scratch();
    const desired = desiredIn(root, {});
    const digest = 'd'.repeat(64);
    const facts = ask(hostFact(desired, { files: new Map(), probes: [], venvDigest: digest }));
    // The same function the release script runs (src/remote/sh/venv.sh), on the same Python.
    const library = ['venv.sh'].map((f) => `. '${path.join(ROOT, 'src/remote/sh', f)}'`).join('\n');
    const key = spawnSync('dash', ['-c', `${library}\nvenv_key ${digest}`], { encoding: 'utf8' }).stdout.trim();
    expect(facts.venv).toEqual({ key, ready: false, live: null });
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    // The live release links to another one.
    const other = 'b'.repeat(64);
    mkdirSync(`${root}/releases/r1`, { recursive: true });
    symlinkSync(`../../venvs/${other}`, `${root}/releases/r1/.venv`);
    symlinkSync('releases/r1', `${root}/current`);
    expect(ask(hostFact(desired, { files: new Map(), probes: [], venvDigest: digest })).venv).toEqual({ key, ready: false, live: other });
    // Sealed: root's, with root's mark (only root can make one that counts).
    if (process.getuid?.() === 0) {
      write(`${root}/venvs/${key}/.stack-venv`, `${key}\n`);
      expect(ask(hostFact(desired, { files: new Map(), probes: [], venvDigest: digest })).venv).toEqual({ key, ready: true, live: other });
    }
    // Not asked (setup): not there.
    expect(ask(hostFact(desired, { files: new Map(), probes: [] })).venv).toBeNull();
  });

  it('reads a virtualenv record, and none when python3 does not run', () => {
    const key = 'a'.repeat(64);
    expect(parseFacts(`venv\t${key}\tready\t${key}\n`).venv).toEqual({ key, ready: true, live: key });
    expect(parseFacts(`venv\t${key}\tabsent\t-\n`).venv).toEqual({ key, ready: false, live: null });
    expect(parseFacts('venv\t-\t-\t-\n').venv).toEqual({ key: null, ready: false, live: null });
  });

  it('parses the records of a server without nginx or releases', () => {
    const facts = parseFacts('nginx\t\ncpus\t\nos\tdebian 12\ncurrent\t-\nreleases\t\nfree\tnot a number\n');
    expect(facts).toMatchObject({
      nginxVersion: null,
      cpus: null,
      os: 'debian 12',
      currentRelease: null,
      releases: [],
      freeKib: null,
      lock: { state: 'free' },
    });
  });
});

describe('the audit log', () => {
  it('reads the last entries; a line that is not an entry comes back as it was', () => {
    const file = `${scratch()}/blog.log`;
    const entry = (n: number) => JSON.stringify({ time: `2026-12-01T00:00:0${n}Z`, who: 'dev', command: 'deploy prod', release: null, result: 'ok', step: '' });
    writeFileSync(file, `${entry(1)}\n${entry(2)}\nedited by hand\t!\n${entry(3)}\n`);
    const rows = ask(auditFact(file, 3));
    expect(rows).toEqual([JSON.parse(entry(2)), { raw: 'edited by hand\t!' }, JSON.parse(entry(3))]);
  });

  it('is empty when there is no log yet', () => {
    expect(ask(auditFact(`${scratch()}/none.log`, 20))).toEqual([]);
  });

  it.each([
    [
      'audit\t{"time":"t","who":"w","command":"c","release":"r","result":"failed","step":"nginx -t"}\n',
      [{ time: 't', who: 'w', command: 'c', release: 'r', result: 'failed', step: 'nginx -t' }],
    ],
    ['audit\t[1,2]\n', [{ raw: '[1,2]' }]],
    ['audit\tnull\n', [{ raw: 'null' }]],
    ['other\tline\n', []],
  ])('%j parses', (output, want) => {
    expect(parseAudit(output)).toEqual(want);
  });
});
