/**
 * The app's code as shipped: the files of the source directory (git's view when it is a work
 * tree, so .gitignore is honoured), a content hash that says whether a new release is needed,
 * and a reproducible tarball streamed to the server.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { $ } from 'zx';
import { StackError, UsageError } from '../errors.js';

/** Never shipped, even outside git: local environments, caches and stack's own folder. */
const ALWAYS_EXCLUDED = new Set(['.git', '.venv', 'venv', '__pycache__', 'node_modules', '.stack', '.mypy_cache', '.pytest_cache']);

export interface SourceTree {
  dir: string;
  files: string[];
  /** sha256 over every file's path, executable bit and content. */
  hash: string;
}

export async function readSource(dir: string): Promise<SourceTree> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UsageError(`app.source ${dir} is not a directory`, { hint: 'point app.source at the directory of your app, relative to the inventory' });
  }
  const git = await $({ quiet: true, nothrow: true, cwd: dir })`git ls-files -z --cached --others --exclude-standard .`;
  let files: string[];
  if (git.exitCode === 0 && (await $({ quiet: true, nothrow: true, cwd: dir })`git rev-parse --show-prefix`).exitCode === 0) {
    files = git.stdout.split('\0').filter((f) => f && existsSync(path.join(dir, f)) && !f.split('/').some((p) => ALWAYS_EXCLUDED.has(p)));
  } else {
    files = walk(dir, '');
  }
  files = files.filter((f) => !f.endsWith('.pyc')).sort();
  const hash = createHash('sha256');
  for (const f of files) {
    const full = path.join(dir, f);
    const exec = statSync(full).mode & 0o111 ? 'x' : '-';
    hash.update(`${f}\0${exec}\0${createHash('sha256').update(readFileSync(full)).digest('hex')}\n`);
  }
  return { dir, files, hash: hash.digest('hex') };
}

function walk(root: string, rel: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    if (ALWAYS_EXCLUDED.has(entry.name)) continue;
    const p = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(root, p));
    else if (entry.isFile()) out.push(p);
  }
  return out;
}

/**
 * A gzipped tar of the tree, with fixed owners and times so the same tree packs the same.
 * `done` settles when tar has finished; a tar failure rejects it with a clear error.
 */
export function packSource(tree: SourceTree): { stream: Readable; done: Promise<void> } {
  const tar = $({ quiet: true, nothrow: true, cwd: tree.dir, input: tree.files.join('\0') })`tar --create --gzip --no-recursion --null --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --files-from=-`;
  // zx's own stdout is not a plain Readable until the process runs; a PassThrough is.
  const stream = new PassThrough();
  void tar.pipe(stream);
  const done = (async () => {
    const r = await tar;
    if (r.exitCode !== 0) throw new StackError(`could not pack ${tree.dir}: ${r.stderr.trim()}`);
  })();
  return { stream, done };
}

/** Lines of a requirements file that ask for something (not blank, not comments). */
export function hasRequirements(text: string): boolean {
  return text.split('\n').some((l) => l.trim() && !l.trim().startsWith('#'));
}
