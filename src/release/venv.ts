/**
 * What a release's virtualenv is made of, as far as the client knows it: the requirements (with
 * every file they pull in), the package index, and, when the requirements install something from
 * the source itself, the code. Its hash (the digest) plus the server's Python (see
 * src/remote/sh/venv.sh) names a virtualenv on the server, /srv/NAME/venvs/KEY: a release whose
 * digest and Python are those of a sealed virtualenv there links to it instead of building one.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { UsageError } from '../errors.js';
import type { Secret } from '../secrets/secret.js';

/** Raised when what goes into the digest changes meaning, so no old virtualenv is taken for a new one. */
const FORMAT = 1;

/** Bounds the includes followed (-r, -c): a loop of requirements files is an error, not a hang. */
const MAX_INCLUDES = 50;

export interface VenvInputs {
  /** Every requirements file pip reads (the one named, then the ones it includes), in reading order; empty without requirements. */
  files: { path: string; text: string }[];
  /** The package index URL when one is configured: hashed, never shown (it may hold a token). */
  index: string | null;
  /** The source's hash when the requirements install from the source: that virtualenv follows the code. */
  code: string | null;
}

/** What the virtualenv of new code is made of, as the plan carries it. */
export interface VenvVersion {
  /** venvDigest of the requirements, the package index and, when they install from the source, the code. */
  digest: string;
  /** Where the package index's URL comes from ("app.index_url"), or null; the URL itself is never in a plan. */
  index: string | null;
  /** The requirements install from the source, so each new code needs a virtualenv of its own. */
  followsCode: boolean;
}

/** The package index pip uses, its URL kept secret whichever way it came. */
export interface PackageIndex {
  url: Secret;
  /** Where it was set, as the plan says it: "app.index_url" or "secret STACK_INDEX_URL". */
  from: string;
}

/**
 * The virtualenv of the code in `dir`: its requirements file (null: nothing for pip to do, so
 * every such release shares one virtualenv of the system's packages) read with what it includes.
 */
export function venvVersion(
  dir: string,
  source: { hash: string; fileList: readonly string[] },
  requirements: string | null,
  index: PackageIndex | null,
): VenvVersion {
  const read = requirements ? readRequirements(dir, requirements, source.fileList) : { files: [], local: false };
  const url = index ? index.url.reveal() : null;
  return {
    digest: venvDigest({ files: read.files, index: url, code: read.local ? source.hash : null }),
    index: index ? index.from : null,
    followsCode: read.local,
  };
}

export function venvDigest(i: VenvInputs): string {
  return createHash('sha256')
    .update(JSON.stringify({ format: FORMAT, files: i.files.map((f) => [f.path, f.text]), index: i.index, code: i.code }))
    .digest('hex');
}

/** What pip is asked for, line by line: comments and line continuations resolved as pip does. */
export function requirementLines(text: string): string[] {
  return text
    .replace(/\\\r?\n/g, '')
    .split(/\r?\n/)
    .map((l) => l.replace(/(^|\s)#.*$/, '').trim())
    .filter(Boolean);
}

/** The file a line includes (`-r FILE`, `-rFILE`, `--requirement=FILE`, `-c FILE`...), or null. */
export function includedFile(line: string): string | null {
  const m = line.match(/^-[rc]\s*(\S+)$/) ?? line.match(/^--(?:requirement|constraint)(?:\s*=\s*|\s+)(\S+)$/);
  return m ? m[1]! : null;
}

const URL_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Whether a line installs from a path of the source rather than from an index: `.`, `./lib`,
 * `/abs`, `file:` URLs, `name @ file:...`, editable installs (`-e .`), and wheels found in a
 * folder (`--find-links ./wheels`). Such a virtualenv holds a copy of (or, editable, a link to)
 * something that may change with every release.
 */
export function installsLocalPath(line: string): boolean {
  const findLinks = line.match(/^(?:-f|--find-links)(?:\s*=\s*|\s*)(\S+)$/);
  if (findLinks) return !URL_SCHEME.test(findLinks[1]!) || findLinks[1]!.startsWith('file:');
  return /^(-e|--editable)(\s|=|$)/.test(line) || /^(\.|\/|~|file:)/.test(line) || /@\s*file:/.test(line);
}

/**
 * The requirements file `file` (relative to the source `dir`) and every file it includes, read
 * from the source. An include that does not ship is refused here: pip would fail on the server.
 */
export function readRequirements(dir: string, file: string, shipped: readonly string[]): { files: VenvInputs['files']; local: boolean } {
  const ships = new Set(shipped);
  const files: VenvInputs['files'] = [];
  let local = false;
  const pending = [file];
  while (pending.length > 0) {
    const rel = pending.shift()!;
    if (files.some((f) => f.path === rel)) continue;
    if (files.length >= MAX_INCLUDES) throw new UsageError(`app.requirements: more than ${MAX_INCLUDES} requirements files include each other`);
    const text = readFileSync(path.join(dir, rel), 'utf8');
    files.push({ path: rel, text });
    for (const line of requirementLines(text)) {
      const included = includedFile(line);
      if (included === null) {
        local ||= installsLocalPath(line);
        continue;
      }
      // A URL is pip's to fetch; its line is in the digest already.
      if (URL_SCHEME.test(included)) continue;
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), included));
      if (!ships.has(target)) {
        throw new UsageError(
          `app.requirements: ${rel} includes ${included}, which is not shipped (missing, outside app.source, untracked, ignored or in app.exclude)`,
          {
            hint: 'ship that file too, or remove the line',
          },
        );
      }
      pending.push(target);
    }
  }
  return { files, local };
}

/**
 * The upload's stdin when a package index is configured: its URL on the first line, then the
 * tarball. The URL may hold a token, so it never goes on a command line (which every user of the
 * server can read); the release script reads that line before the tarball (receive_index).
 */
export function indexThenTarball(index: string, tarball: Readable): Readable {
  const out = new PassThrough();
  out.write(`${index}\n`);
  tarball.on('error', (e) => out.destroy(e));
  tarball.pipe(out);
  return out;
}
