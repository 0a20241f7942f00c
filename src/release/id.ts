/**
 * Release ids: the UTC time a deploy started, to the millisecond (`20261201T023000.123Z`), so
 * that deploys in quick succession get distinct ids. Pure.
 *
 * Compared as plain strings (JavaScript's sort, `sort` on the server) they sort in deploy order.
 * Servers deployed by earlier versions hold ids to the second (`20261201T023000Z`); such an id
 * sorts after every millisecond id of its second ('.' < 'Z') and before every id of the next
 * second, so both kinds sort together correctly as long as no millisecond id is made in a second
 * that already has an old one, which `nextReleaseId` ensures.
 */

const ID = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{3}))?Z$/;

/** The release id of a deploy started at `date`. */
export function releaseIdAt(date: Date): string {
  // 2026-12-01T02:30:00.123Z -> 20261201T023000.123Z
  return date.toISOString().replace(/[-:]/g, '');
}

/**
 * The last millisecond an id stands for: its own for a millisecond id, the end of its second for
 * an old second-precision one (which sorts after that second's millisecond ids). Null when
 * `id` is not a release id.
 */
function lastMillisecond(id: string): number | null {
  const m = id.match(ID);
  if (!m) return null;
  const second = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return m[7] === undefined ? second + 999 : second + +m[7];
}

/**
 * The id for a new release: `wanted` (the deploy's own id), unless a release on the server is as
 * new or newer (two deploys within one millisecond, a clock behind the server's newest release,
 * an old id of the same second); then the first millisecond after the newest. A new release must
 * never overwrite an existing one, the live one least of all. Names in `existing` that are not
 * release ids are ignored.
 */
export function nextReleaseId(wanted: string, existing: readonly string[]): string {
  const ids = existing.filter((id) => ID.test(id)).sort();
  const latest = ids.at(-1);
  if (!latest || wanted > latest) return wanted;
  return releaseIdAt(new Date(lastMillisecond(latest)! + 1));
}
