/** Maps a field path back to line and column in the user's YAML, so every error points at its source. */
import { isMap, isSeq, isScalar, type Document, type LineCounter, type Node, type Pair, type YAMLMap } from 'yaml';

export type FieldPath = readonly (string | number)[];

export interface Position {
  line: number;
  column: number;
}

export function formatPath(path: FieldPath): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${key}` : key;
  }
  return out;
}

/**
 * Each mapping's pairs by key, built on first use: a search per lookup made reporting thousands
 * of problems in one large mapping quadratic. Rebuilt if the mapping has changed size since.
 */
const pairIndex = new WeakMap<YAMLMap, { size: number; byKey: Map<string, Pair> }>();

function pairOf(map: YAMLMap, key: string): Pair | undefined {
  let index = pairIndex.get(map);
  if (!index || index.size !== map.items.length) {
    const byKey = new Map<string, Pair>();
    for (const p of map.items as Pair[]) {
      // The first of repeated keys, as a search from the start would find.
      if (isScalar(p.key) && !byKey.has(String(p.key.value))) byKey.set(String(p.key.value), p);
    }
    index = { size: map.items.length, byKey };
    pairIndex.set(map, index);
  }
  return index.byKey.get(key);
}

/**
 * Position of the node at `path`; for a key the value is missing, the nearest ancestor.
 * With `keyOf`, the position of the key itself (used for unknown keys).
 */
export function locate(doc: Document, lines: LineCounter, path: FieldPath, keyOf = false): Position & { found: boolean } {
  let node: unknown = doc.contents;
  let at = node as Node | null;
  let found = true;
  for (let i = 0; i < path.length; i++) {
    const key = path[i]!;
    if (isMap(node)) {
      const pair = pairOf(node, String(key));
      if (!pair) {
        found = false;
        break;
      }
      if (keyOf && i === path.length - 1) {
        at = pair.key as Node;
        break;
      }
      node = pair.value;
      at = (pair.value as Node | null) ?? (pair.key as Node);
    } else if (isSeq(node) && typeof key === 'number' && node.items[key] !== undefined) {
      node = node.items[key];
      at = node as Node;
    } else {
      found = false;
      break;
    }
  }
  const offset = at?.range?.[0] ?? 0;
  const pos = lines.linePos(offset);
  return { line: pos.line, column: pos.col, found };
}
