/**
 * YAML anchors (&name) and aliases (*name). An alias stands for a copy of the value it names, so a
 * few lines can describe an enormous document (the "billion laughs": each level lists the one
 * before it nine times). Everything after parsing walks the expanded values, so the expansion is
 * measured here first, on the parsed nodes, and refused at the alias that goes too far.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, visit, type Alias, type Document, type Node } from 'yaml';

/** Far more than an inventory needs (a few shared host lists or env maps). */
export const MAX_ALIASES = 1000;
/** Values that aliases may add to the document, all together. */
export const MAX_ALIAS_VALUES = 20_000;

export interface AliasProblem {
  /** Offset of the alias in the source. */
  offset: number;
  message: string;
}

export interface Aliases {
  /** In document order. */
  all: Alias[];
  /** What each alias refers to; an alias with no anchor before it is missing. */
  targets: Map<Alias, Node>;
  /** Every node with an anchor. */
  anchored: Node[];
}

/**
 * What each alias refers to: the last node before it with that anchor, as YAML defines it. One
 * pass in document order; yaml's own Alias.resolve() searches the whole document per alias.
 */
export function findAliases(doc: Document): Aliases {
  const anchors = new Map<string, Node>();
  const all: Alias[] = [];
  const targets = new Map<Alias, Node>();
  const anchored: Node[] = [];
  visit(doc, {
    Node(_, node) {
      if (isAlias(node)) {
        all.push(node);
        const target = anchors.get(node.source);
        if (target) targets.set(node, target);
      } else if (node.anchor) {
        anchors.set(node.anchor, node);
        anchored.push(node);
      }
    },
  });
  return { all, targets, anchored };
}

/**
 * yaml's toJS() looks through every anchor in the document for each alias it meets: with
 * thousands of anchors, that is quadratic. The anchors no alias refers to mean nothing, so they
 * are dropped first (from the parsed document only).
 */
export function dropUnusedAnchors({ targets, anchored }: Aliases): void {
  const used = new Set(targets.values());
  for (const node of anchored) if (!used.has(node)) node.anchor = undefined;
}

/** Aliases that would make the document too large or endless; empty when all is well. */
export function aliasProblems({ all, targets }: Aliases): AliasProblem[] {
  // Values each node stands for once its aliases are expanded; memoised, so linear overall.
  const sizes = new Map<Node, number>();
  const inProgress = new Set<Node>();
  // An object, so that TypeScript does not narrow it to undefined across the calls that set it.
  const found: { cycle?: Alias } = {};
  const sizeOf = (node: unknown): number => {
    if (isAlias(node)) {
      const target = targets.get(node);
      if (!target) return 1;
      if (inProgress.has(target)) {
        found.cycle ??= node;
        return 1;
      }
      return sizeOf(target);
    }
    if (!isMap(node) && !isSeq(node)) return 1;
    const known = sizes.get(node);
    if (known !== undefined) return known;
    inProgress.add(node);
    let size = 1;
    for (const item of node.items) {
      if (isPair(item)) size += sizeOf(item.key) + sizeOf(item.value);
      else size += sizeOf(item);
      // Past the limit the exact figure no longer matters, and stopping keeps this fast.
      if (size > MAX_ALIAS_VALUES) break;
    }
    inProgress.delete(node);
    sizes.set(node, size);
    return size;
  };

  const problems: AliasProblem[] = [];
  let added = 0;
  for (const [i, alias] of all.entries()) {
    const offset = alias.range?.[0] ?? 0;
    if (i === MAX_ALIASES) {
      problems.push({ offset, message: `more than ${MAX_ALIASES} aliases (*name) in one inventory; write the values out instead` });
      break;
    }
    if (!targets.has(alias)) {
      problems.push({
        offset,
        message: `*${alias.source} refers to no anchor &${alias.source} before it; an alias can only repeat a value written above it with &${alias.source}`,
      });
      continue;
    }
    found.cycle = undefined;
    added += sizeOf(alias) - 1;
    const cycle = found.cycle as Alias | undefined;
    if (cycle) {
      problems.push({
        offset: cycle.range?.[0] ?? offset,
        message: `the alias *${cycle.source} is inside the value it refers to, which would repeat it without end; refer to another value`,
      });
      break;
    }
    if (added > MAX_ALIAS_VALUES) {
      problems.push({
        offset,
        message: `the aliases up to here add more than ${MAX_ALIAS_VALUES} values to the inventory (each alias is a full copy of what it names, and nested aliases multiply); an inventory needs only a few small aliases: write the values out`,
      });
      break;
    }
  }
  return problems;
}

/**
 * Where to report it when yaml's own alias limit (maxAliasCount) still stops toJS(): the first
 * alias that refers to a value with aliases inside, which is where the counts multiply.
 */
export function firstNestedAlias({ all, targets }: Aliases): number {
  const nested = all.find((alias) => {
    const target = targets.get(alias);
    let found = false;
    if (target && !isScalar(target)) {
      visit(target, {
        Alias() {
          found = true;
          return visit.BREAK;
        },
      });
    }
    return found;
  });
  return (nested ?? all[0])?.range?.[0] ?? 0;
}
