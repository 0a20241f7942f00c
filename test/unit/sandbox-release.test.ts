/**
 * Which Debian release a sandbox runs: one image recipe per release, cached under a name of its
 * own, and `stack sandbox up --release` checked before anything boots. Pure code and the CLI's
 * usage errors; no root, no containers.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { DEFAULT_RELEASE, isRelease, nspawnEnvironment, parseRelease, RELEASES, releaseLabel, type Release } from '../../src/sandbox/releases.js';
import { PREFETCH, recipe, recipeHash, ROOTFS_CACHE, rootfsPath } from '../../src/sandbox/rootfs.js';
import { stack } from '../helpers/cli.js';

const releases = Object.keys(RELEASES) as Release[];

describe('root filesystem recipe per release', () => {
  it.each(releases)('%s: debootstraps its own suite', (release) => {
    expect(recipe(release).suite).toBe(release);
    expect(rootfsPath(release)).toBe(path.join(ROOTFS_CACHE, `rootfs-${recipeHash(release)}`));
    expect(recipeHash(release)).toMatch(/^[0-9a-f]{12}$/);
  });

  it('gives each release a cache of its own', () => {
    const paths = releases.map(rootfsPath);
    expect(new Set(paths).size).toBe(releases.length);
  });

  it('differs between releases only in the suite: the same packages, units and files', () => {
    const { suite: _b, ...bookworm } = recipe('bookworm');
    const { suite: _t, ...trixie } = recipe('trixie');
    expect(trixie).toEqual(bookworm);
    expect(recipe('trixie').prefetch).toEqual(PREFETCH);
  });

  it('is deterministic: the same release always names the same cache', () => {
    expect(recipeHash('trixie')).toBe(recipeHash('trixie'));
    expect(rootfsPath('bookworm')).toBe(rootfsPath('bookworm'));
  });

  it('prefetches what setup installs and what the test apps ask for', () => {
    for (const pkg of ['nginx', 'python3-venv', 'gunicorn', 'uwsgi-plugin-python3', 'python3-django', 'build-essential', 'python3-dev']) {
      expect(PREFETCH).toContain(pkg);
    }
  });
});

describe('release names', () => {
  it('defaults to Debian 13 (trixie), the current stable release', () => {
    expect(DEFAULT_RELEASE).toBe('trixie');
    expect(releaseLabel('trixie')).toBe('Debian 13 (trixie)');
    expect(releaseLabel('bookworm')).toBe('Debian 12 (bookworm)');
  });

  it.each([
    ['bookworm', true],
    ['trixie', true],
    ['sid', false],
    ['Trixie', false],
    ['13', false],
    ['', false],
    ['constructor', false],
    ['toString', false],
  ] as const)('%j is a release: %s', (name, ok) => {
    expect(isRelease(name)).toBe(ok);
    if (ok) expect(parseRelease(name)).toBe(name);
    else expect(() => parseRelease(name)).toThrow(UsageError);
  });

  it('names the choices when a release is unknown', () => {
    const err = (() => {
      try {
        parseRelease('bullseye');
      } catch (e) {
        return e as UsageError;
      }
      throw new Error('no error');
    })();
    expect(err.message).toBe('--release: "bullseye" is not a Debian release a sandbox can run');
    expect(err.hint).toBe('use one of bookworm (12), trixie (13) (trixie when left out)');
    expect(err.exitCode).toBe(2);
  });
});

describe('how each release boots', () => {
  it('gives trixie (systemd 257) cgroup2 only, and leaves bookworm on the host layout', () => {
    expect(nspawnEnvironment('trixie')).toEqual({ SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' });
    expect(nspawnEnvironment('bookworm')).toEqual({});
  });
});

describe('stack sandbox up --release', () => {
  it('lists the releases and the default in --help', () => {
    const r = stack(['sandbox', 'up', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout.replace(/\s+/g, ' ')).toContain('--release <release> Debian release to run: bookworm (12), trixie (13) (default: "trixie")');
  });

  it('refuses an unknown release with a usage error, before booting anything', () => {
    const r = stack(['sandbox', 'up', 'relcheck', '--release', 'buster']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/--release: "buster" is not a Debian release a sandbox can run/);
    expect(r.stderr).toMatch(/bookworm \(12\), trixie \(13\)/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
