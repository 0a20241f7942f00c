/**
 * A package index for a sandbox that has no internet: wheels built here from test/fixtures/pip
 * (no download, no build backend), written out as a PEP 503 simple index (static pages) and
 * served by `python3 -m http.server` on the host's end of the sandbox's veth pair, on a free
 * port. A process of its own: the tests run the CLI synchronously, which would stall a server in
 * their own event loop. Its log says what pip asked for.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ROOT } from './cli.js';

export interface PackageIndex {
  /** The simple index's URL, e.g. http://169.254.7.1:40123/simple/. */
  url: string;
  /** host:port, for pip's --trusted-host (the index is plain http). */
  host: string;
  /** The paths asked for so far, in order. */
  readonly requests: string[];
  close(): Promise<void>;
}

/** Builds the wheel of stackhello at `version` into `dir` with test/fixtures/pip/make_wheel.py. */
export function buildWheel(version: string, dir: string): string {
  const r = spawnSync('python3', [path.join(ROOT, 'test/fixtures/pip/make_wheel.py'), version, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`make_wheel.py ${version}: ${r.stderr}`);
  return r.stdout.trim();
}

const htmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
const page = (title: string, links: [string, string][]) =>
  `<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0"><title>${htmlEscape(title)}</title></head><body>\n${links
    .map(([href, text]) => `<a href="${htmlEscape(href)}">${htmlEscape(text)}</a><br>`)
    .join('\n')}\n</body></html>\n`;

/** PEP 503's normalized project name. */
const normalize = (name: string) => name.toLowerCase().replace(/[-_.]+/g, '-');

/** The index's tree in `dir`: simple/index.html, simple/PROJECT/index.html, files/WHEEL. */
function writeIndex(dir: string, wheels: string[]): void {
  const projects = new Map<string, string[]>();
  for (const w of wheels) {
    const project = normalize(w.split('-')[0]!);
    projects.set(project, [...(projects.get(project) ?? []), w]);
  }
  mkdirSync(path.join(dir, 'simple'), { recursive: true });
  writeFileSync(
    path.join(dir, 'simple/index.html'),
    page(
      'Simple index',
      [...projects.keys()].map((p) => [`${p}/`, p]),
    ),
  );
  for (const [project, files] of projects) {
    mkdirSync(path.join(dir, 'simple', project));
    const links = files.map((w): [string, string] => {
      const sha = createHash('sha256')
        .update(readFileSync(path.join(dir, 'files', w)))
        .digest('hex');
      return [`/files/${w}#sha256=${sha}`, w];
    });
    writeFileSync(path.join(dir, 'simple', project, 'index.html'), page(`Links for ${project}`, links));
  }
}

/**
 * Serves stackhello at each of `versions` from `address` (the sandbox's hostSideAddress). The
 * server (stopped by its pid) and the files go away with close(), or when this process exits.
 */
export async function startPackageIndex(address: string, versions: string[]): Promise<PackageIndex> {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-index-'));
  const files = path.join(dir, 'files');
  for (const v of versions) buildWheel(v, files);
  writeIndex(dir, readdirSync(files));
  // Its log goes straight to a file: read at any time, whatever this process is busy with.
  const log = path.join(dir, 'requests.log');
  const logFd = openSync(log, 'a');
  const child: ChildProcess = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', address, '--directory', dir], {
    stdio: ['ignore', 'pipe', logFd],
  });
  closeSync(logFd);
  const stop = () => child.kill();
  process.on('exit', stop);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the package index did not start: ${out}${readFileSync(log, 'utf8')}`)), 10_000);
    child.once('exit', (code) => reject(new Error(`the package index exited (${code}): ${readFileSync(log, 'utf8')}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = out.match(/ port (\d+) /);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  return {
    url: `http://${address}:${port}/simple/`,
    host: `${address}:${port}`,
    get requests() {
      return [...readFileSync(log, 'utf8').matchAll(/"GET (\S+) HTTP/g)].map((m) => m[1]!);
    },
    close: async () => {
      process.off('exit', stop);
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill();
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
