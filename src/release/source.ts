/**
 * The app's code as shipped: the files of the source directory, a content hash that says whether
 * a new release is needed, and a reproducible tarball streamed to the server.
 *
 * Which files ship:
 * - in a git work tree, the files git tracks (never untracked ones: those are reported, so the
 *   caller can warn);
 * - outside git, every file of the directory except what its .gitignore files (root and nested)
 *   and .git/info/exclude ignore, with git's semantics;
 * - in both, never stack's own folder, git's, local environments and caches, the inventory file,
 *   nor what `app.exclude` lists (gitignore patterns relative to the source root).
 *
 * Symbolic links ship as links when they resolve, inside the shipped tree, to something shipped;
 * any other is refused, so the server never gets a link that dangles or leads out of the release.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readFileSync, readdirSync, readlinkSync, realpathSync, type Stats, statSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { StackError, UsageError } from '../errors.js';
import { type LocalResult, runLocal } from '../local.js';
import { gitMatcher, ignoreFileText, rebaseIgnoreRules } from './gitignore.js';

/** Never shipped, at any depth, whatever git or .gitignore say: git's and stack's folders, local environments and caches. */
export const ALWAYS_EXCLUDED: readonly string[] = ['.git', '.stack', '.venv', 'venv', '__pycache__', '*.pyc', 'node_modules', '.mypy_cache', '.pytest_cache'];

/** How to fix a symbolic link that cannot be shipped. */
const LINK_HINT = 'make it point inside the source, replace it with the file, or list it in app.exclude';

/** Links followed while resolving one link before it counts as a loop (Linux's limit). */
const MAX_LINK_HOPS = 40;

export interface SourceLink {
  /** Path of the link, relative to the source directory. */
  path: string;
  /** The link's target as stored (always relative, and resolving inside the shipped tree). */
  target: string;
}

export interface SourceTree {
  dir: string;
  /** `git`: the files git tracks; `walk`: the directory walked, its .gitignore files honoured. */
  listing: 'git' | 'walk';
  /** Regular files, relative to `dir`, sorted. */
  files: string[];
  /** Symbolic links, shipped as links, sorted by path. */
  links: SourceLink[];
  /** Every shipped path (files and links), sorted: what the release holds. */
  fileList: string[];
  /** sha256 over every file's path, permission bits and content, and every link's path and target. */
  hash: string;
  /** Git mode: files neither tracked nor ignored (and not excluded), sorted; they are not shipped. Empty outside git. */
  untracked: string[];
  /** Total size of the regular files, in bytes. */
  bytes: number;
}

export interface ReadSourceOptions {
  /** gitignore-style patterns, relative to the source directory, never shipped (`app.exclude`). */
  exclude?: readonly string[];
  /** The inventory file (any path; made absolute): never shipped, wherever it is. */
  inventoryFile?: string;
}

type Keep = (rel: string, isDir: boolean) => boolean;

export async function readSource(dir: string, options: ReadSourceOptions = {}): Promise<SourceTree> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UsageError(`app.source ${dir} is not a directory`, { hint: 'point app.source at the directory of your app, relative to the inventory' });
  }
  const keep = keepFilter(dir, options);
  const git = await gitFiles(dir, keep);
  let listed: string[];
  try {
    listed = git ? git.tracked : walk(dir, keep);
  } catch (err) {
    throw fsError(dir, err);
  }

  const files: { path: string; mode: number }[] = [];
  const links: SourceLink[] = [];
  const notCheckedOut: string[] = [];
  for (const rel of listed) {
    const full = path.join(dir, rel);
    let st: Stats;
    try {
      st = lstatSync(full);
    } catch (err) {
      // A tracked file deleted in the work tree is not shipped.
      if (isCode(err, 'ENOENT') || isCode(err, 'ENOTDIR')) continue;
      throw fsError(dir, err);
    }
    if (st.isFile()) files.push({ path: rel, mode: st.mode & 0o7777 });
    else if (st.isSymbolicLink()) links.push({ path: rel, target: readlinkSync(full) });
    else if (st.isDirectory()) notCheckedOut.push(rel);
    // sockets, fifos and devices are not code: left out.
  }
  if (notCheckedOut.length > 0) {
    throw new UsageError(
      `app.source: git lists ${list(notCheckedOut)} as ${notCheckedOut.length === 1 ? 'a submodule that is' : 'submodules that are'} not checked out`,
      {
        hint: 'run git submodule update --init, or list them in app.exclude',
      },
    );
  }
  files.sort((a, b) => compare(a.path, b.path));
  links.sort((a, b) => compare(a.path, b.path));
  checkLinks(dir, files, links);

  const hash = createHash('sha256');
  let bytes = 0;
  const entries = [...files.map((f) => ({ path: f.path, file: f, link: undefined })), ...links.map((l) => ({ path: l.path, file: undefined, link: l }))].sort(
    (a, b) => compare(a.path, b.path),
  );
  for (const e of entries) {
    if (e.file) {
      let content: Buffer;
      try {
        content = readFileSync(path.join(dir, e.file.path));
      } catch (err) {
        throw fsError(dir, err);
      }
      bytes += content.length;
      hash.update(`f\0${e.file.path}\0${e.file.mode.toString(8)}\0${createHash('sha256').update(content).digest('hex')}\0`);
    } else {
      hash.update(`l\0${e.link!.path}\0${e.link!.target}\0`);
    }
  }
  return {
    dir,
    listing: git ? 'git' : 'walk',
    files: files.map((f) => f.path),
    links,
    fileList: entries.map((e) => e.path),
    hash: hash.digest('hex'),
    untracked: git ? git.untracked : [],
    bytes,
  };
}

/** What is never shipped: ALWAYS_EXCLUDED, the inventory file and `exclude`. A directory is tested as `dir/`. */
function keepFilter(dir: string, options: ReadSourceOptions): Keep {
  const always = gitMatcher(ALWAYS_EXCLUDED);
  const user = gitMatcher(options.exclude ?? []);
  const inventory = new Set<string>();
  if (options.inventoryFile) {
    const file = path.resolve(options.inventoryFile);
    const candidates: [string, string][] = [[path.resolve(dir), file]];
    try {
      candidates.push([realpathSync(dir), realpathSync(file)]);
    } catch {
      // the inventory file not existing (any more) leaves only its own path to compare
    }
    for (const [base, f] of candidates) {
      const rel = path.relative(base, f);
      if (rel && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel)) inventory.add(rel.split(path.sep).join('/'));
    }
  }
  return (rel, isDir) => {
    const p = isDir ? `${rel}/` : rel;
    return !inventory.has(rel) && !always.ignores(p) && !user.ignores(p);
  };
}

/** Git's view of the directory, or null when it is not in a git work tree. */
async function gitFiles(dir: string, keep: Keep): Promise<{ tracked: string[]; untracked: string[] } | null> {
  const inside = await git(dir, ['rev-parse', '--is-inside-work-tree']);
  if (inside.code !== 0 || inside.stdout.trim() !== 'true') return null;
  const [tracked, others] = await Promise.all([
    git(dir, ['ls-files', '-z', '--cached', '--recurse-submodules', '--', '.']),
    git(dir, ['ls-files', '-z', '--others', '--exclude-standard', '--', '.']),
  ]);
  for (const r of [tracked, others]) {
    if (r.code !== 0) throw new StackError(`git could not list the files of ${dir}: ${r.stderr.trim()}`);
  }
  const paths = (out: string) => [...new Set(out.split('\0'))].filter((f) => f && keep(f, false)).sort(compare);
  return { tracked: paths(tracked.stdout), untracked: paths(others.stdout) };
}

/** `git ARGS` in `dir`; a git that is not installed is a failed run. */
function git(dir: string, args: string[]): Promise<LocalResult> {
  return runLocal('git', args, { cwd: dir });
}

/** Files and links of the directory, without what .gitignore files, .git/info/exclude or `keep` leave out. */
function walk(dir: string, keep: Keep): string[] {
  const rules = gitMatcher();
  const exclude = path.join(dir, '.git', 'info', 'exclude');
  if (isFile(exclude)) rules.add(ignoreFileText(readFileSync(exclude, 'utf8')));
  const out: string[] = [];
  const visit = (rel: string) => {
    const abs = rel ? path.join(dir, rel) : dir;
    const entries = readdirSync(abs, { withFileTypes: true });
    // Like git, only a regular .gitignore file counts (a symlinked one is not followed).
    if (entries.some((e) => e.name === '.gitignore' && e.isFile())) {
      const text = readFileSync(path.join(abs, '.gitignore'), 'utf8');
      rules.add(rel ? rebaseIgnoreRules(text, rel) : ignoreFileText(text));
    }
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      const isDir = e.isDirectory();
      if (!keep(p, isDir) || rules.ignores(isDir ? `${p}/` : p)) continue;
      // A symlink to a directory is not a directory here: it ships as a link, never followed.
      if (isDir) visit(p);
      else if (e.isFile() || e.isSymbolicLink()) out.push(p);
    }
  };
  visit('');
  return out;
}

/**
 * Every link must resolve, as the server will resolve it in the unpacked release, to a shipped
 * file or directory without leaving the release: each of its steps is followed in the shipped
 * tree (links through links included). Anything else is refused in one error that names them all.
 */
function checkLinks(dir: string, files: readonly { path: string }[], links: readonly SourceLink[]): void {
  if (links.length === 0) return;
  const tree: Tree = { files: new Set(files.map((f) => f.path)), links: new Map(links.map((l) => [l.path, l.target])), dirs: new Set(['']) };
  for (const p of [...tree.files, ...tree.links.keys()]) {
    for (let i = p.lastIndexOf('/'); i > 0 && !tree.dirs.has(p.slice(0, i)); i = p.lastIndexOf('/', i - 1)) tree.dirs.add(p.slice(0, i));
  }
  const problems: string[] = [];
  for (const l of links) {
    const why = linkProblem(dir, l, tree);
    if (why) problems.push(`${l.path} -> ${l.target}: ${why}`);
  }
  if (problems.length === 0) return;
  const one = problems.length === 1;
  throw new UsageError(
    `app.source: ${one ? 'a symbolic link' : `${problems.length} symbolic links`} cannot be shipped:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    {
      hint: LINK_HINT,
    },
  );
}

interface Tree {
  files: Set<string>;
  links: Map<string, string>;
  /** Folders that exist once the release is unpacked (those holding a shipped path), and the root, ''. */
  dirs: Set<string>;
}

function linkProblem(dir: string, link: SourceLink, tree: Tree): string | null {
  if (link.target === '') return 'its target is empty';
  if (path.posix.isAbsolute(link.target)) return 'its target is an absolute path';
  const r = follow(link.path.split('/').slice(0, -1), link.target, tree, { left: MAX_LINK_HOPS });
  if (!('why' in r)) return null;
  switch (r.why) {
    case 'outside':
      return r.via ? `it leads outside the source directory (through the link ${r.via})` : 'it leads outside the source directory';
    case 'loop':
      return 'it is a loop of links';
    case 'missing':
      return existsSync(path.join(dir, r.at))
        ? `its target ${r.at} is not shipped (ignored, excluded or not tracked by git)`
        : `it is dangling: ${r.at} does not exist`;
  }
}

type Followed = { parts: string[] } | { why: 'outside'; via?: string } | { why: 'loop' } | { why: 'missing'; at: string };

/** Resolves `target` from the folder `from` (path segments) the way the kernel would, in the shipped tree only. */
function follow(from: readonly string[], target: string, tree: Tree, hops: { left: number }, via?: string): Followed {
  if (path.posix.isAbsolute(target)) return { why: 'outside', via };
  const parts = [...from];
  const steps = target.split('/');
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!;
    if (step === '' || step === '.') continue;
    if (step === '..') {
      if (parts.length === 0) return { why: 'outside', via };
      parts.pop();
      continue;
    }
    parts.push(step);
    const rel = parts.join('/');
    const next = tree.links.get(rel);
    if (next !== undefined) {
      if (--hops.left < 0) return { why: 'loop' };
      parts.pop();
      const r = follow(parts, next, tree, hops, rel);
      if ('why' in r) return r;
      parts.splice(0, parts.length, ...r.parts);
    } else if (tree.dirs.has(rel) || (tree.files.has(rel) && i === steps.length - 1)) {
    } else {
      // Not in the release (or a file used as a folder): name the whole path it was looking for.
      return { why: 'missing', at: path.posix.normalize([rel, ...steps.slice(i + 1)].join('/')).replace(/\/$/, '') };
    }
  }
  return { parts };
}

/**
 * A gzipped tar of the tree, with fixed owners and times so the same tree packs the same bytes.
 * Each file keeps its permission bits exactly; links are stored as links. `done` settles when tar
 * has finished; a tar failure rejects it with a clear error.
 */
export function packSource(tree: SourceTree): { stream: Readable; done: Promise<void>; stop: () => void } {
  const list = tree.fileList.join('\0');
  const tar = spawn(
    'tar',
    ['--create', '--gzip', '--format=gnu', '--no-recursion', '--null', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '--files-from=-'],
    { cwd: tree.dir, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const stream = new PassThrough();
  tar.stdout.pipe(stream);

  let stderr = '';
  tar.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // A tar that dies early closes its end; its exit status says why, not this EPIPE.
  tar.stdin.on('error', () => undefined);
  tar.stdin.end(list);
  const done = new Promise<void>((resolve, reject) => {
    let spawnError: Error | undefined;
    tar.on('error', (err) => {
      spawnError = err;
    });
    tar.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new StackError(`could not pack ${tree.dir}: ${(spawnError ? `${stderr}${spawnError.message}` : stderr).trim()}`));
      // Without a tar (not installed), the stream must still end, or its reader waits forever.
      if (spawnError) stream.end();
    });
  });
  // A reader that stops early (the connection was lost mid-upload) leaves tar blocked on a full
  // pipe, and a live child keeps this process from ever exiting: whoever packed stops it then.
  const stop = () => {
    if (tar.exitCode !== null || tar.signalCode !== null) return;
    tar.kill('SIGTERM');
    // Its output nobody reads would hold the pipe (and this process) open after it is gone.
    tar.stdout.destroy();
  };
  return { stream, done, stop };
}

/** What a new file list adds to and removes from the previous one (null: none known, everything is added). Both sorted. */
export function fileSetChanges(previous: readonly string[] | null, next: readonly string[]): { added: string[]; removed: string[] } {
  const before = new Set(previous ?? []);
  const after = new Set(next);
  return {
    added: [...after].filter((p) => !before.has(p)).sort(compare),
    removed: [...before].filter((p) => !after.has(p)).sort(compare),
  };
}

/**
 * The warning for files git neither tracks nor ignores, or null when there are none:
 * `not shipped: 3 untracked files (git add them, or list them in .gitignore): a, b, c`.
 */
export function untrackedWarning(untracked: readonly string[], shown = 5): string | null {
  if (untracked.length === 0) return null;
  const n = untracked.length;
  return `not shipped: ${n} untracked file${n === 1 ? '' : 's'} (git add ${n === 1 ? 'it' : 'them'}, or list ${n === 1 ? 'it' : 'them'} in .gitignore): ${list(untracked, shown)}`;
}

/** Lines of a requirements file that ask for something (not blank, not comments). */
export function hasRequirements(text: string): boolean {
  return text.split('\n').some((l) => l.trim() && !l.trim().startsWith('#'));
}

function list(items: readonly string[], shown = 5): string {
  return `${items.slice(0, shown).join(', ')}${items.length > shown ? `... (${items.length - shown} more)` : ''}`;
}

/** Code-unit order: the same on every machine, whatever its locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isCode(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

function fsError(dir: string, err: unknown): StackError {
  if (err instanceof StackError) return err;
  return new StackError(`could not read app.source ${dir}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}
