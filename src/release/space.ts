/**
 * Whether a server has room for a new release, decided before anything is sent: a build that
 * runs out of space half way fails with messages that rarely say so (pip: "exit 1").
 */

/** A virtualenv with pip takes about 15-20 MiB; the requirements' packages need room too. */
export const VENV_ALLOWANCE_KIB = 64 * 1024;

export interface SpaceNeed {
  needKib: number;
  freeKib: number;
}

/**
 * The shortfall for a release of `sourceBytes`, or null when it fits (or the free space is not
 * known). The upload is kept until it is unpacked, so the code counts twice.
 */
export function spaceShortfall(freeKib: number | null, sourceBytes: number): SpaceNeed | null {
  if (freeKib === null) return null;
  const needKib = Math.ceil((2 * sourceBytes) / 1024) + VENV_ALLOWANCE_KIB;
  return freeKib < needKib ? { needKib, freeKib } : null;
}

export function describeShortfall(s: SpaceNeed, sourceBytes: number, where: string): string {
  const mib = (kib: number) => `${Math.ceil(kib / 1024)} MiB`;
  return `not enough disk space for a new release in ${where}: ${mib(s.freeKib)} free, about ${mib(s.needKib)} needed (code ${mib(Math.ceil(sourceBytes / 1024))}, held twice while it is unpacked, plus ${mib(VENV_ALLOWANCE_KIB)} for the virtualenv and packages)`;
}
