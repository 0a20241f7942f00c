/** The Debian releases a sandbox can run, and how each one boots under systemd-nspawn. */
import { UsageError } from '../errors.js';

export const RELEASES = {
  bookworm: {
    version: '12',
    /** systemd 252 runs on whatever cgroup layout the host gives it. */
    unifiedCgroup: false,
  },
  trixie: {
    version: '13',
    /**
     * systemd 257 treats cgroup v1 as obsolete: given a hybrid host's v1 hierarchies it still
     * boots, but marks itself tainted ("cgroupsv1"), and later systemd refuses to. Real trixie
     * servers have cgroup2 only, so the container gets just that.
     */
    unifiedCgroup: true,
  },
} as const;

export type Release = keyof typeof RELEASES;

/** Debian's current stable release. */
export const DEFAULT_RELEASE: Release = 'trixie';

export function isRelease(name: string): name is Release {
  return Object.hasOwn(RELEASES, name);
}

/** The release a name stands for; the error lists the choices. */
export function parseRelease(name: string, option = '--release'): Release {
  if (isRelease(name)) return name;
  throw new UsageError(`${option}: "${name}" is not a Debian release a sandbox can run`, {
    hint: `use one of ${releaseChoices()} (${DEFAULT_RELEASE} when left out)`,
  });
}

/** "bookworm (12), trixie (13)" */
export function releaseChoices(): string {
  return Object.entries(RELEASES)
    .map(([name, r]) => `${name} (${r.version})`)
    .join(', ');
}

/** "Debian 13 (trixie)" */
export function releaseLabel(release: Release): string {
  return `Debian ${RELEASES[release].version} (${release})`;
}

/**
 * What systemd-nspawn's environment adds for this release. nspawn reads the cgroup layout to give
 * the container from SYSTEMD_NSPAWN_UNIFIED_HIERARCHY; without it, it copies the host's layout.
 */
export function nspawnEnvironment(release: Release): Record<string, string> {
  return RELEASES[release].unifiedCgroup ? { SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' } : {};
}
