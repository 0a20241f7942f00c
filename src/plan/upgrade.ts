/**
 * Servers deployed before releases were sealed: the app's user owned /srv/NAME, every release
 * and its recorded configuration, nginx read everything through the app's group. The next setup
 * or deploy converts them in place, while the site keeps serving (pure: facts in, steps out).
 */
import type { GatheredFacts } from '../facts/host.js';
import type { DesiredState } from '../state/desired.js';

export interface LayoutUpgrade {
  /** Seal the releases already there (root-owned, read-only to the app; records checked). */
  sealReleases: boolean;
  /** Uploads to hand to nginx's group (it no longer reads them through the app's). */
  media: string | null;
  /**
   * The live socket file's new group, set in place: restarting the socket would refuse
   * connections for a moment, and its group is the only thing that changed.
   */
  socketGroup: { path: string; group: string } | null;
}

export function planLayoutUpgrade(desired: DesiredState, facts: GatheredFacts): LayoutUpgrade | null {
  const { layout } = desired;
  const releases = facts.dirs.get(layout.releases);
  const sealReleases = releases !== undefined && releases !== null && releases.owner !== 'root';
  const mediaDir = layout.media_dir ? facts.dirs.get(layout.media_dir) : null;
  const media = mediaDir && mediaDir.group !== layout.web_user ? layout.media_dir : null;
  if (!sealReleases && !media) return null;
  const socketUnit = desired.files.find((f) => f.path === `/etc/systemd/system/${layout.app}.socket`);
  const before = socketUnit ? facts.files.get(socketUnit.path)?.content : undefined;
  const socketGroup =
    sealReleases && socketUnit && before !== undefined && withoutGroup(before) === withoutGroup(String(socketUnit.content))
      ? { path: layout.socket, group: layout.web_user }
      : null;
  return { sealReleases, media, socketGroup };
}

/** A socket unit's text without its comments and its SocketGroup line. */
function withoutGroup(unit: string): string {
  return unit
    .split('\n')
    .filter((l) => !l.startsWith('#') && !l.startsWith('SocketGroup='))
    .join('\n');
}
