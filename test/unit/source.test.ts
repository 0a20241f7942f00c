/** What ships from app.source: real directories, real git, real tar. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { rebaseIgnoreRules } from '../../src/release/gitignore.js';
import { fileSetChanges, packSource, readSource, untrackedWarning, type SourceTree } from '../../src/release/source.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'stack-source-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let count = 0;

/** A fresh directory holding `files` (path → content; a trailing `/` makes an empty directory). */
function project(files: Record<string, string> = {}, name = `p${++count}`): string {
  const dir = path.join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const [rel, content] of Object.entries(files)) put(dir, rel, content);
  return dir;
}

function put(dir: string, rel: string, content = '', mode?: number): void {
  const file = path.join(dir, rel);
  if (rel.endsWith('/')) {
    mkdirSync(file, { recursive: true });
    return;
  }
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  if (mode !== undefined) chmodSync(file, mode);
}

function link(dir: string, rel: string, target: string): void {
  mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  symlinkSync(target, path.join(dir, rel));
}

function git(dir: string, ...args: string[]): string {
  return execFileSync('git', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function gitInit(dir: string): void {
  git(dir, 'init', '-q');
}

async function pack(tree: SourceTree): Promise<Buffer> {
  const { stream, done } = packSource(tree);
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise((resolve) => stream.on('end', resolve));
  await Promise.all([done, ended]);
  return Buffer.concat(chunks);
}

/** `tar -tvzf` of the packed tree, one line per entry. */
async function listing(tree: SourceTree): Promise<string[]> {
  const file = path.join(scratch, `pack-${++count}.tar.gz`);
  writeFileSync(file, await pack(tree));
  return execFileSync('tar', ['-tvzf', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC', LC_ALL: 'C' } })
    .trim()
    .split('\n');
}

async function refusal(promise: Promise<unknown>): Promise<UsageError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UsageError);
  return err as UsageError;
}

describe('in a git work tree', () => {
  it('ships the tracked files only and reports untracked ones, not ignored ones', async () => {
    const dir = project({
      'app.py': 'app',
      'pkg/views.py': 'views',
      '.gitignore': '*.log\n',
      'new.py': 'new',
      'pkg/new.html': 'x',
      'debug.log': 'log',
      'gone.py': 'gone',
    });
    gitInit(dir);
    git(dir, 'add', 'app.py', 'pkg/views.py', '.gitignore', 'gone.py');
    unlinkSync(path.join(dir, 'gone.py'));
    const tree = await readSource(dir);
    expect(tree.listing).toBe('git');
    expect(tree.files).toEqual(['.gitignore', 'app.py', 'pkg/views.py']);
    expect(tree.fileList).toEqual(tree.files);
    expect(tree.untracked).toEqual(['new.py', 'pkg/new.html']);
    expect(tree.bytes).toBe('*.log\n'.length + 'app'.length + 'views'.length);
    expect(untrackedWarning(tree.untracked)).toBe('not shipped: 2 untracked files (git add them, or list them in .gitignore): new.py, pkg/new.html');
  });

  it('a tracked file that .gitignore now matches still ships; a source below the repository root lists relative to itself', async () => {
    const repo = project({ 'README.md': 'r', 'web/app.py': 'a', 'web/local.cfg': 'c', 'web/todo.txt': 't' });
    gitInit(repo);
    git(repo, 'add', '.');
    put(repo, 'web/.gitignore', 'local.cfg\n');
    put(repo, 'other/new.py', 'n');
    const tree = await readSource(path.join(repo, 'web'));
    expect(tree.files).toEqual(['app.py', 'local.cfg', 'todo.txt']);
    expect(tree.untracked).toEqual(['.gitignore']);
  });

  it('never ships stack and git folders, caches, environments, node_modules or the inventory, even when tracked', async () => {
    const dir = project({
      'app.py': 'a',
      'inventory.yml': 'app: {}',
      '.stack/secrets.yml': 's',
      'pkg/__pycache__/m.cpython-311.pyc': 'c',
      'old.pyc': 'c',
      'venv/bin/python': 'p',
      'sub/.venv/lib/x.py': 'x',
      'front/node_modules/left-pad/index.js': 'l',
      '.mypy_cache/x': 'm',
    });
    gitInit(dir);
    git(dir, 'add', '-f', '.');
    put(dir, 'notes.pyc', 'untracked but excluded anyway');
    const tree = await readSource(dir, { inventoryFile: path.join(dir, 'inventory.yml') });
    expect(tree.files).toEqual(['app.py']);
    expect(tree.untracked).toEqual([]);
  });

  it('applies app.exclude to tracked and untracked files', async () => {
    const dir = project({ 'app.py': 'a', 'docs/index.md': 'd', 'docs/keep.md': 'k', 'data/a.csv': '1', 'x.log': 'l', 'tmp.txt': 't' });
    gitInit(dir);
    git(dir, 'add', 'app.py', 'docs', 'data', 'x.log');
    const tree = await readSource(dir, { exclude: ['docs/', '!docs/keep.md', '*.log', '/data', 'tmp.txt'] });
    // As in git, a file cannot be re-included once its folder is excluded.
    expect(tree.files).toEqual(['app.py']);
    expect(tree.untracked).toEqual([]);
  });

  it('ships a symlink to a directory as a link (it used to crash with EISDIR)', async () => {
    const dir = project({ 'assets/css/site.css': 'body{}', 'app.py': 'a' });
    link(dir, 'static', 'assets');
    gitInit(dir);
    git(dir, 'add', '.');
    const tree = await readSource(dir);
    expect(tree.files).toEqual(['app.py', 'assets/css/site.css']);
    expect(tree.links).toEqual([{ path: 'static', target: 'assets' }]);
    expect(tree.fileList).toEqual(['app.py', 'assets/css/site.css', 'static']);
    const lines = await listing(tree);
    expect(lines.some((l) => /^l/.test(l) && / static -> assets$/.test(l))).toBe(true);
    expect(lines).toHaveLength(3);
  });

  it('refuses a tracked link whose target is not tracked', async () => {
    const dir = project({ 'app.py': 'a', 'local/settings.py': 's' });
    link(dir, 'settings.py', 'local/settings.py');
    gitInit(dir);
    git(dir, 'add', 'app.py', 'settings.py');
    const err = await refusal(readSource(dir));
    expect(err.message).toContain('settings.py -> local/settings.py: its target local/settings.py is not shipped');
  });

  it('refuses a submodule that is not checked out', async () => {
    const dir = project({ 'app.py': 'a' });
    gitInit(dir);
    git(dir, 'add', '.');
    git(dir, 'update-index', '--add', '--cacheinfo', `160000,${'1'.repeat(40)},lib`);
    put(dir, 'lib/');
    const err = await refusal(readSource(dir));
    expect(err.message).toContain('lib');
    expect(err.hint).toContain('git submodule update --init');
  });
});

describe('outside git', () => {
  it('honours the root .gitignore: the local secrets of the attack stay home', async () => {
    const dir = project({ 'app.py': 'a', '.gitignore': '.env\nid_rsa\n*.sqlite3\n', '.env': 'SECRET=1', id_rsa: 'KEY', 'db.sqlite3': 'db' });
    const tree = await readSource(dir);
    expect(tree.listing).toBe('walk');
    expect(tree.files).toEqual(['.gitignore', 'app.py']);
    expect(tree.untracked).toEqual([]);
  });

  it('honours nested .gitignore files relative to their folder, negations, directory patterns and .git/info/exclude', async () => {
    const dir = project({
      '.gitignore': '*.env\n!keep.env\nbuild/\n/top.txt\n# a comment\n\nlogs\n',
      'keep.env': 'k',
      'drop.env': 'd',
      'top.txt': 'ignored at the root only',
      'sub/top.txt': 'shipped: /top.txt is anchored to the root',
      'build/out.js': 'x',
      'src/build/out.js': 'x (build/ matches at any depth)',
      'build.txt': 'a file, not the build directory',
      'logs/a.txt': 'x',
      'sub/.gitignore': '/only-here.txt\ndata/*.csv\n!important.env\nnested/\n',
      'sub/only-here.txt': 'x',
      'sub/deeper/only-here.txt': 'shipped: anchored to sub/',
      'sub/data/a.csv': 'x',
      'sub/data/a.json': 'shipped',
      'sub/important.env': 'shipped: the deeper file re-includes it',
      'sub/deeper/important.env': 'shipped too: no slash, any depth below sub/',
      'sub/nested/x': 'x',
      'other/only-here.txt': 'shipped: sub/.gitignore does not reach here',
      'other/important.env': 'ignored: the root rule',
      '.git/info/exclude': 'private/\n',
      'private/notes.md': 'x',
    });
    const tree = await readSource(dir);
    expect(tree.files).toEqual([
      '.gitignore',
      'build.txt',
      'keep.env',
      'other/only-here.txt',
      'sub/.gitignore',
      'sub/data/a.json',
      'sub/deeper/important.env',
      'sub/deeper/only-here.txt',
      'sub/important.env',
      'sub/top.txt',
    ]);
  });

  it('a deeper .gitignore can re-include a folder a shallower one ignores, as git does', async () => {
    const dir = project({ '.gitignore': 'a/b/\n', 'a/.gitignore': '!b/\n', 'a/b/x': 'x', 'c/b/y': 'y' });
    const tree = await readSource(dir);
    expect(tree.files).toEqual(['.gitignore', 'a/.gitignore', 'a/b/x', 'c/b/y']);
  });

  it('ships exactly what git would add, for a tree of tricky rules', async () => {
    const files: Record<string, string> = {
      '.gitignore': '*.tmp\n!/keep.tmp\n**/cache/\ndocs/**/*.pdf\n\\#literal\n\\!bang\ntrailing.txt   \nDEBUG\n',
      'keep.tmp': '1',
      'x.tmp': '1',
      'a/cache/c': '1',
      'docs/a/b/f.pdf': '1',
      'docs/f.pdf': '1',
      'docs/f.md': '1',
      '#literal': '1',
      '!bang': '1',
      'trailing.txt': '1',
      debug: 'case matters',
      DEBUG: '1',
      'w[e]ird*/.gitignore': 'x?\n/y\n[ab].txt\n!x1\n',
      'w[e]ird*/xa': '1',
      'w[e]ird*/x1': '1',
      'w[e]ird*/y': '1',
      'w[e]ird*/z/y': '1',
      'w[e]ird*/a.txt': '1',
      'w[e]ird*/c.txt': '1',
      'deep/er/.gitignore': '*\n!*/\n!*.py\n',
      'deep/er/m.py': '1',
      'deep/er/m.txt': '1',
      'deep/er/pkg/n.py': '1',
      'deep/er/pkg/n.cfg': '1',
      'deep/sibling.txt': '1',
      '...': 'odd name',
    };
    const dir = project(files);
    const walked = await readSource(dir);
    gitInit(dir);
    git(dir, 'add', '-A');
    const tracked = await readSource(dir);
    expect(tracked.listing).toBe('git');
    expect(walked.fileList).toEqual(tracked.fileList);
    expect(walked.files).toContain('deep/er/pkg/n.py');
    expect(walked.files).not.toContain('deep/er/pkg/n.cfg');
  });

  it('never ships stack and git folders, caches, environments, node_modules or the inventory', async () => {
    const dir = project({
      'app.py': 'a',
      'stack.yml': 'inventory',
      '.git/config': 'not a repository',
      '.stack/secrets.yml': 's',
      'pkg/__pycache__/m.cpython-311.pyc': 'c',
      'pkg/m.pyc': 'c',
      '.venv/bin/python': 'p',
      'sub/venv/bin/python': 'p',
      'node_modules/x/index.js': 'x',
      'front/node_modules/y/index.js': 'y',
    });
    const tree = await readSource(dir, { inventoryFile: path.join(dir, 'stack.yml') });
    expect(tree.files).toEqual(['app.py']);
  });

  it('finds the inventory file by a relative path, and ignores one outside the source', async () => {
    const dir = project({ 'app.py': 'a', 'inventory.yml': 'i' });
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect((await readSource(dir, { inventoryFile: 'inventory.yml' })).files).toEqual(['app.py']);
    } finally {
      process.chdir(cwd);
    }
    expect((await readSource(dir, { inventoryFile: path.join(scratch, 'inventory.yml') })).files).toEqual(['app.py', 'inventory.yml']);
  });

  it('applies app.exclude after .gitignore', async () => {
    const dir = project({
      '.gitignore': '*.env\n',
      'app.py': 'a',
      'a.env': 'x',
      'media/up.jpg': 'j',
      'src/media/keep.py': 'k',
      'fixtures/big.json': 'b',
      'fixtures/small.json': 's',
    });
    const tree = await readSource(dir, { exclude: ['/media/', 'fixtures/big.json', '!a.env'] });
    expect(tree.files).toEqual(['.gitignore', 'app.py', 'fixtures/small.json', 'src/media/keep.py']);
  });

  it('ships a symlink to a directory as a link, without walking into it', async () => {
    const dir = project({ 'assets/site.css': 'c', 'conf/app.ini': 'i' });
    link(dir, 'static', 'assets');
    link(dir, 'conf/current.ini', 'app.ini');
    link(dir, 'conf/up', '..');
    link(dir, 'site.css', 'conf/up/static/site.css');
    const tree = await readSource(dir);
    expect(tree.files).toEqual(['assets/site.css', 'conf/app.ini']);
    expect(tree.links).toEqual([
      { path: 'conf/current.ini', target: 'app.ini' },
      { path: 'conf/up', target: '..' },
      { path: 'site.css', target: 'conf/up/static/site.css' },
      { path: 'static', target: 'assets' },
    ]);
    const lines = await listing(tree);
    expect(lines.filter((l) => l.startsWith('l')).map((l) => l.replace(/^.* 00:00 /, ''))).toEqual([
      'conf/current.ini -> app.ini',
      'conf/up -> ..',
      'site.css -> conf/up/static/site.css',
      'static -> assets',
    ]);
    expect(lines).toHaveLength(6);
  });

  it('reads a source directory reached through a symlink', async () => {
    const dir = project({ 'app.py': 'a', 'lib/x.py': 'x' });
    link(dir, 'x', 'lib/x.py');
    const alias = path.join(scratch, `alias-${++count}`);
    symlinkSync(dir, alias);
    const tree = await readSource(alias);
    expect(tree.fileList).toEqual(['app.py', 'lib/x.py', 'x']);
  });
});

describe('symbolic links that cannot ship are refused, naming the link, its target and the fix', () => {
  const cases: [string, (dir: string) => void, string][] = [
    ['outside through ..', (d) => link(d, 'conf/shared.cfg', '../../shared.cfg'), 'conf/shared.cfg -> ../../shared.cfg: it leads outside the source directory'],
    ['absolute', (d) => link(d, 'key.pem', '/etc/ssl/private/key.pem'), 'key.pem -> /etc/ssl/private/key.pem: its target is an absolute path'],
    ['dangling', (d) => link(d, 'data/latest', 'v2'), 'data/latest -> v2: it is dangling: data/v2 does not exist'],
    ['out and back in by the folder name', (d) => link(d, 'again.py', `../${path.basename(d)}/app.py`), 'it leads outside the source directory'],
    [
      'a loop',
      (d) => {
        link(d, 'a', 'b');
        link(d, 'b', 'a');
      },
      'it is a loop of links',
    ],
    [
      'a target that is excluded',
      (d) => {
        put(d, '.gitignore', 'local/\n');
        put(d, 'local/s.py', 's');
        link(d, 's.py', 'local/s.py');
      },
      's.py -> local/s.py: its target local/s.py is not shipped',
    ],
    ['a file used as a folder', (d) => link(d, 'bad', 'app.py/x'), 'bad -> app.py/x: it is dangling: app.py/x does not exist'],
  ];
  for (const [name, make, expected] of cases) {
    it(name, async () => {
      const dir = project({ 'app.py': 'a' });
      make(dir);
      const err = await refusal(readSource(dir));
      expect(err.message).toContain(expected);
      expect(err.hint).toBe('make it point inside the source, replace it with the file, or list it in app.exclude');
    });
  }

  it('a link out through another link, both named in one error', async () => {
    const dir = project({ 'app.py': 'a' });
    link(dir, 'shared', '../..');
    link(dir, 'conf.py', 'shared/etc/conf.py');
    const err = await refusal(readSource(dir));
    expect(err.message).toContain('2 symbolic links cannot be shipped');
    expect(err.message).toContain('conf.py -> shared/etc/conf.py: it leads outside the source directory (through the link shared)');
    expect(err.message).toContain('shared -> ../..: it leads outside the source directory');
  });

  it('the same in a git work tree', async () => {
    const dir = project({ 'app.py': 'a' });
    link(dir, 'uploads', '/var/uploads');
    gitInit(dir);
    git(dir, 'add', '.');
    const err = await refusal(readSource(dir));
    expect(err.message).toContain('uploads -> /var/uploads: its target is an absolute path');
  });

  it('an excluded link is simply not shipped', async () => {
    const dir = project({ 'app.py': 'a' });
    link(dir, 'uploads', '/var/uploads');
    const tree = await readSource(dir, { exclude: ['uploads'] });
    expect(tree.fileList).toEqual(['app.py']);
  });
});

describe('the tarball', () => {
  it('keeps every permission bit, with owner 0/0 and a fixed time', async () => {
    const dir = project();
    put(dir, 'secret.cfg', 'k', 0o600);
    put(dir, 'manage.py', '#!/usr/bin/env python3', 0o755);
    put(dir, 'app.py', 'a', 0o644);
    put(dir, 'bin/run', 'r', 0o750);
    const lines = await listing(await readSource(dir));
    expect(lines).toEqual([
      '-rw-r--r-- 0/0               1 1970-01-01 00:00 app.py',
      '-rwxr-x--- 0/0               1 1970-01-01 00:00 bin/run',
      '-rwxr-xr-x 0/0              22 1970-01-01 00:00 manage.py',
      '-rw------- 0/0               1 1970-01-01 00:00 secret.cfg',
    ]);
  });

  it('stop() ends a tar whose reader went away: an upload cut short leaves nothing blocked', async () => {
    const dir = project();
    // Random bytes do not compress: far more than a pipe holds.
    put(dir, 'big.bin', randomBytes(4 * 1024 * 1024).toString('latin1'), 0o644);
    const { stream, done, stop } = packSource(await readSource(dir));
    await new Promise((r) => stream.once('data', r));
    // What a lost connection does to the upload: nobody reads any more.
    stream.pause();
    const settled = (ms: number) =>
      Promise.race([
        done.then(
          () => 'finished',
          () => 'stopped',
        ),
        new Promise((r) => setTimeout(() => r('still running'), ms)),
      ]);
    expect(await settled(1000)).toBe('still running');
    stop();
    expect(await settled(5000)).toBe('stopped');
  });

  it("the same tree packs to the same bytes, whatever the files' times", async () => {
    const dir = project({ 'app.py': 'a', 'pkg/m.py': 'm', 'z/y/x.txt': 'x' });
    link(dir, 'm.py', 'pkg/m.py');
    const first = await pack(await readSource(dir));
    utimesSync(path.join(dir, 'app.py'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    await new Promise((r) => setTimeout(r, 1100));
    const second = await pack(await readSource(dir));
    expect(second.equals(first)).toBe(true);
  });
});

describe('the hash', () => {
  it('changes with any permission bit, a link target or content, not with times', async () => {
    const dir = project({ 'app.py': 'a', 'one.py': '1', 'two.py': '2' });
    chmodSync(path.join(dir, 'app.py'), 0o644);
    link(dir, 'current.py', 'one.py');
    const base = (await readSource(dir)).hash;
    utimesSync(path.join(dir, 'app.py'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect((await readSource(dir)).hash).toBe(base);
    chmodSync(path.join(dir, 'app.py'), 0o600);
    const privateMode = (await readSource(dir)).hash;
    expect(privateMode).not.toBe(base);
    chmodSync(path.join(dir, 'app.py'), 0o644);
    expect((await readSource(dir)).hash).toBe(base);
    unlinkSync(path.join(dir, 'current.py'));
    link(dir, 'current.py', 'two.py');
    expect((await readSource(dir)).hash).not.toBe(base);
    unlinkSync(path.join(dir, 'current.py'));
    link(dir, 'current.py', 'one.py');
    expect((await readSource(dir)).hash).toBe(base);
    put(dir, 'one.py', '1!');
    expect((await readSource(dir)).hash).not.toBe(base);
  });

  it('is the same in and out of git for the same files', async () => {
    const dir = project({ 'app.py': 'a', 'pkg/m.py': 'm' });
    const walked = await readSource(dir);
    gitInit(dir);
    git(dir, 'add', '.');
    expect((await readSource(dir)).hash).toBe(walked.hash);
  });
});

describe('source directory', () => {
  it('must be a directory', async () => {
    const err = await refusal(readSource(path.join(scratch, 'missing')));
    expect(err.message).toContain('is not a directory');
  });
});

describe('fileSetChanges', () => {
  it('says what a release adds and removes, sorted', () => {
    expect(fileSetChanges(['b.py', 'a.py', 'old/x.py'], ['c.py', 'a.py', 'b.py', 'aa.py'])).toEqual({ added: ['aa.py', 'c.py'], removed: ['old/x.py'] });
    expect(fileSetChanges(['a'], ['a'])).toEqual({ added: [], removed: [] });
  });

  it('with no previous list, everything is added', () => {
    expect(fileSetChanges(null, ['b', 'a'])).toEqual({ added: ['a', 'b'], removed: [] });
  });
});

describe('untrackedWarning', () => {
  it('is null without untracked files, and shortens a long list', () => {
    expect(untrackedWarning([])).toBeNull();
    expect(untrackedWarning(['a.py'])).toBe('not shipped: 1 untracked file (git add it, or list it in .gitignore): a.py');
    expect(untrackedWarning(['a', 'b', 'c', 'd', 'e', 'f', 'g'], 3)).toBe(
      'not shipped: 7 untracked files (git add them, or list them in .gitignore): a, b, c... (4 more)',
    );
  });
});

describe('rebaseIgnoreRules', () => {
  it('anchors patterns with a slash to the folder, lets the others match at any depth below it', () => {
    expect(rebaseIgnoreRules('# c\n\n*.log\n!keep.log\n/top\na/b\nbuild/\n**/x\ntrail   \nesc\\ \n/\n', 'sub/d[1]')).toEqual([
      'sub/d\\[1\\]/**/*.log',
      '!sub/d\\[1\\]/**/keep.log',
      'sub/d\\[1\\]/top',
      'sub/d\\[1\\]/a/b',
      'sub/d\\[1\\]/**/build/',
      'sub/d\\[1\\]/**/x',
      'sub/d\\[1\\]/**/trail',
      'sub/d\\[1\\]/**/esc\\ ',
    ]);
  });
});
