/**
 * Shared virtualenvs, the pure halves: what goes into a virtualenv's digest (the requirements
 * with what they include, the index, the code when they install from it), and what the plan
 * says about reusing one. The shell halves are in remote-sh.test.ts and facts.test.ts.
 */
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { UsageError } from '../../src/errors.js';
import { parseFacts } from '../../src/facts/host.js';
import { planDeploy, type ReleasePlan } from '../../src/plan/plan.js';
import { describeVenv } from '../../src/plan/print.js';
import { includedFile, indexThenTarball, installsLocalPath, readRequirements, requirementLines, venvDigest, venvVersion } from '../../src/release/venv.js';
import { loadOptionalSecret } from '../../src/secrets/load.js';
import { Secret } from '../../src/secrets/secret.js';
import type { DesiredState } from '../../src/state/desired.js';
import { stackInProcess } from '../helpers/in-process.js';

function project(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-venv-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

const none = { files: [], index: null, code: null };

describe('the digest that names a virtualenv', () => {
  it('is the same for the same inputs, and changes with any of them', () => {
    const base = { files: [{ path: 'requirements.txt', text: 'stackhello==1.0\n' }], index: null, code: null };
    expect(venvDigest(base)).toBe(venvDigest({ ...base, files: [{ path: 'requirements.txt', text: 'stackhello==1.0\n' }] }));
    expect(venvDigest(base)).toMatch(/^[0-9a-f]{64}$/);
    const others = [
      none,
      { ...base, files: [{ path: 'requirements.txt', text: 'stackhello==1.1\n' }] },
      { ...base, files: [{ path: 'deps/requirements.txt', text: 'stackhello==1.0\n' }] },
      { ...base, files: [...base.files, { path: 'base.txt', text: '' }] },
      { ...base, index: 'https://pypi.test/simple/' },
      { ...base, index: 'https://pypi.test/other/' },
      { ...base, code: 'c'.repeat(64) },
    ];
    const digests = new Set([base, ...others].map(venvDigest));
    expect(digests.size).toBe(others.length + 1);
  });

  it.each([
    ['blanks and comments go', '# pinned\n\nstackhello==1.0  # why\n', ['stackhello==1.0']],
    ['a continued line is one', 'stackhello==1.0 \\\n  --hash=sha256:ab\n', ['stackhello==1.0   --hash=sha256:ab']],
    ['a # inside a URL stays', 'pkg @ https://h.test/p.whl#sha256=ab\n', ['pkg @ https://h.test/p.whl#sha256=ab']],
    ['CRLF', 'a==1\r\nb==2\r\n', ['a==1', 'b==2']],
  ])('requirement lines: %s', (_, input, want) => {
    expect(requirementLines(input)).toEqual(want);
  });

  it.each([
    ['-r base.txt', 'base.txt'],
    ['-rbase.txt', 'base.txt'],
    ['--requirement=deps/base.txt', 'deps/base.txt'],
    ['--requirement deps/base.txt', 'deps/base.txt'],
    ['-c constraints.txt', 'constraints.txt'],
    ['--constraint=c.txt', 'c.txt'],
    ['django==4.2', null],
    ['--index-url https://pypi.test/simple/', null],
    ['-e .', null],
  ])('included file of %j: %j', (line, want) => {
    expect(includedFile(line)).toBe(want);
  });

  it.each([
    ['.', true],
    ['./libs/shared', true],
    ['/opt/wheels/a.whl', true],
    ['file:///opt/a.whl', true],
    ['shared @ file:///srv/x', true],
    ['-e .', true],
    ['--editable=./lib', true],
    ['-f ./wheels', true],
    ['--find-links=wheels', true],
    ['--find-links https://h.test/wheels/', false],
    ['stackhello==1.0', false],
    ['pkg @ https://h.test/p.whl', false],
    ['--index-url https://pypi.test/simple/', false],
    ['--extra-index-url=https://pypi.test/simple/', false],
  ])('installs from a path: %j -> %s', (line, want) => {
    expect(installsLocalPath(line)).toBe(want);
  });
});

describe('reading the requirements', () => {
  it('follows -r and -c relative to the file that names them, once each', () => {
    const dir = project({
      'requirements.txt': '-r deps/base.txt\n-c constraints.txt\nstackhello==1.0\n',
      'deps/base.txt': '-r ../requirements.txt\n-r extra.txt\n',
      'deps/extra.txt': 'six\n',
      'constraints.txt': 'six<2\n',
    });
    const shipped = ['requirements.txt', 'deps/base.txt', 'deps/extra.txt', 'constraints.txt'];
    const r = readRequirements(dir, 'requirements.txt', shipped);
    expect(r.files.map((f) => f.path)).toEqual(['requirements.txt', 'deps/base.txt', 'constraints.txt', 'deps/extra.txt']);
    expect(r.local).toBe(false);
  });

  it('refuses an include that does not ship, naming it', () => {
    const dir = project({ 'requirements.txt': '-r secret-deps.txt\n', 'secret-deps.txt': 'x\n' });
    expect(() => readRequirements(dir, 'requirements.txt', ['requirements.txt'])).toThrow(UsageError);
    expect(() => readRequirements(dir, 'requirements.txt', ['requirements.txt'])).toThrow(/includes secret-deps\.txt, which is not shipped/);
  });

  it('says when the requirements install from the source', () => {
    const dir = project({ 'requirements.txt': 'stackhello==1.0\n-r more.txt\n', 'more.txt': '-e .\n' });
    expect(readRequirements(dir, 'requirements.txt', ['requirements.txt', 'more.txt']).local).toBe(true);
  });

  it('a virtualenv version: no requirements share one; the index and the code count only where they matter', () => {
    const dir = project({ 'requirements.txt': 'stackhello==1.0\n', 'local.txt': './libs/shared\n' });
    const source = { hash: 'c'.repeat(64), fileList: ['requirements.txt', 'local.txt'] };
    const bare = venvVersion(dir, source, null, null);
    expect(bare).toEqual({ digest: venvDigest(none), index: null, followsCode: false });
    expect(venvVersion(dir, { ...source, hash: 'e'.repeat(64) }, null, null).digest).toBe(bare.digest);
    const pinned = venvVersion(dir, source, 'requirements.txt', null);
    expect(pinned.digest).toBe(venvDigest({ files: [{ path: 'requirements.txt', text: 'stackhello==1.0\n' }], index: null, code: null }));
    // New code, same requirements: the same virtualenv.
    expect(venvVersion(dir, { ...source, hash: 'e'.repeat(64) }, 'requirements.txt', null).digest).toBe(pinned.digest);
    const indexed = venvVersion(dir, source, 'requirements.txt', { url: new Secret('app.index_url', 'https://pypi.test/simple/'), from: 'app.index_url' });
    expect(indexed.index).toBe('app.index_url');
    expect(indexed.digest).not.toBe(pinned.digest);
    // The URL is hashed, never carried.
    expect(JSON.stringify(indexed)).not.toContain('pypi.test');
    const local = venvVersion(dir, source, 'local.txt', null);
    expect(local.followsCode).toBe(true);
    expect(venvVersion(dir, { ...source, hash: 'e'.repeat(64) }, 'local.txt', null).digest).not.toBe(local.digest);
  });
});

describe('the index on the upload', () => {
  it('goes first, on a line of its own, then the tarball as it was', async () => {
    const stream = indexThenTarball('https://u:t@pypi.test/simple/', Readable.from([Buffer.from('TAR'), Buffer.from('BALL')]));
    expect(await text(stream)).toBe('https://u:t@pypi.test/simple/\nTARBALL');
  });
});

describe('the secret STACK_INDEX_URL', () => {
  it('comes from the environment first, then the secrets file; null when neither has it', () => {
    const dir = project({ '.stack/secrets.prod': 'STACK_INDEX_URL=https://u:t@pypi.test/simple/\n' });
    chmodSync(path.join(dir, '.stack/secrets.prod'), 0o600);
    expect(loadOptionalSecret('STACK_INDEX_URL', dir, 'prod', {})?.reveal()).toBe('https://u:t@pypi.test/simple/');
    expect(loadOptionalSecret('STACK_INDEX_URL', dir, 'prod', { STACK_INDEX_URL: 'https://env.test/' })?.reveal()).toBe('https://env.test/');
    expect(loadOptionalSecret('STACK_INDEX_URL', dir, 'staging', {})).toBeNull();
    expect(String(loadOptionalSecret('STACK_INDEX_URL', dir, 'prod', {}))).toBe('[REDACTED]');
  });
});

describe('the plan of a release: reuse or build', () => {
  const desired = {
    packages: [],
    users: [],
    memberships: [],
    dirs: [],
    files: [],
    links: [],
    removes: [],
    services: [],
    handlers: [],
    parts: { instances: [], timers: [] },
    layout: { web_user: 'www-data' },
    host: { address: '192.0.2.1' },
  } as unknown as DesiredState;
  const code = { id: 'r2', sourceHash: 'new', requirements: 'requirements.txt', venv: { digest: 'd'.repeat(64), index: null, followsCode: false } };
  const key = 'a'.repeat(64);
  const release = (facts: string): ReleasePlan => planDeploy({ desired, facts: parseFacts(facts), code })!.release!;

  it.each([
    ['a sealed one is there: reused', `venv\t${key}\tready`, { key, reuse: true }, `reused (requirements and Python unchanged, ${key.slice(0, 12)})`],
    [
      'none yet: built, then pip',
      `venv\t${key}\tabsent`,
      { key, reuse: false },
      'built (none on the server for these requirements and this Python), then pip install -r requirements.txt',
    ],
    ['no Python yet', 'venv\t-\t-', { key: null, reuse: false }, 'built (Python is not installed on the server yet), then pip install -r requirements.txt'],
  ])('%s', (_, facts, plan, said) => {
    const r = release(facts);
    expect(r.venvPlan).toEqual(plan);
    expect(describeVenv(r, r.venvPlan!)).toBe(said);
  });

  it("ships the live release's code again when only its virtualenv must change (another index or Python)", () => {
    const manifest = Buffer.from(JSON.stringify({ id: 'r1', source_hash: 'new', created: '', by: '' })).toString('base64');
    const live = `current\treleases/r1\nmanifest\t${manifest}\nreleases\tr1\n`;
    const other = 'b'.repeat(64);
    // The live release links to the virtualenv this code needs: nothing to do.
    expect(planDeploy({ desired, facts: parseFacts(`${live}venv\t${key}\tready\t${key}`), code }).release).toBeNull();
    // A release made before virtualenvs were shared keeps its own.
    expect(planDeploy({ desired, facts: parseFacts(`${live}venv\t${key}\tabsent\t-`), code }).release).toBeNull();
    const stale = planDeploy({ desired, facts: parseFacts(`${live}venv\t${key}\tabsent\t${other}`), code }).release!;
    expect(stale).toMatchObject({ id: 'r2', venvPlan: { key, reuse: false, sameCode: true } });
    expect(stale.copyFrom).toBeUndefined();
    expect(describeVenv(stale, stale.venvPlan!)).toBe(
      "built (the code is the live release's, but its virtualenv was made for another package index or Python), then pip install -r requirements.txt",
    );
    const back = planDeploy({ desired, facts: parseFacts(`${live}venv\t${key}\tready\t${other}`), code }).release!;
    expect(describeVenv(back, back.venvPlan!)).toBe(`the sealed one for this package index and Python, ${key.slice(0, 12)} (the code is the live release's)`);
  });

  it('names where the index comes from, and why code that installs itself gets its own', () => {
    const r = planDeploy({
      desired,
      facts: parseFacts(`venv\t${key}\tabsent`),
      code: { ...code, venv: { ...code.venv, index: 'secret STACK_INDEX_URL', followsCode: true } },
    }).release!;
    expect(describeVenv(r, r.venvPlan!)).toBe(
      'built (the requirements install from the source, so it follows the code), then pip install -r requirements.txt from the index in secret STACK_INDEX_URL',
    );
  });
});

describe('the package index in the inventory and the secret', () => {
  function inventoryProject(indexUrl?: string): string {
    const dir = project({ 'app/hello/__init__.py': '', 'app/hello/wsgi.py': 'application = None\n', 'app/requirements.txt': 'stackhello==1.0\n' });
    const app = {
      name: 'hello',
      source: 'app',
      wsgi: 'hello.wsgi:application',
      requirements: 'requirements.txt',
      ...(indexUrl ? { index_url: indexUrl } : {}),
    };
    // 192.0.2.0/24 is for documentation: nothing answers there, and nothing here gets that far.
    const inventory = { app, environments: { prod: { domains: ['hello.test'], hosts: [{ address: '192.0.2.1', user: 'deploy' }] } } };
    writeFileSync(path.join(dir, 'inventory.yml'), stringify(inventory));
    return dir;
  }

  it('refuses credentials in app.index_url without repeating them, and names the secret to use', async () => {
    const dir = inventoryProject('https://stack:pa55word-in-git@pypi.test/simple/');
    const r = await stackInProcess(['deploy', 'prod', '--dry-run', '-i', path.join(dir, 'inventory.yml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/app\.index_url: .*holds credentials, which do not belong in the inventory: give the whole URL as the secret STACK_INDEX_URL/);
    expect(r.stdout + r.stderr).not.toContain('pa55word-in-git');
  });

  it('refuses a STACK_INDEX_URL that is no URL, without showing it', async () => {
    const dir = inventoryProject();
    process.env.STACK_INDEX_URL = 'not a url tok3n-never-shown';
    try {
      const r = await stackInProcess(['deploy', 'prod', '--dry-run', '-i', path.join(dir, 'inventory.yml')]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('the secret STACK_INDEX_URL is not an http or https URL');
      expect(r.stdout + r.stderr).not.toContain('tok3n-never-shown');
    } finally {
      delete process.env.STACK_INDEX_URL;
    }
  });
});
