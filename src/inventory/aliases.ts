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

/**
 * What each alias refers to: the last node before it with that anchor, as YAML defines it. One
 * pass in document order; yaml's own Alias.resolve() searches the whole document per alias.
 */
export function aliasTargets(doc: Document): Map<Alias, Node> {
  const anchors = new Map<string, Node>();
  const targets = new Map<Alias, Node>();
  visit(doc, {
    Node(_, node) {
      if (isAlias(node)) {
        const target = anchors.get(node.source);
        if (target) targets.set(node, target);
      } else if (node.anchor) {
        anchors.set(node.anchor, node);
      }
    },
  });
  return targets;
}

/** Aliases that would make the document too large or endless; empty when all is well. */
export function aliasProblems(doc: Document, targets: Map<Alias, Node>): AliasProblem[] {
  if (targets.size === 0) return [];
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
  let count = 0;
  let added = 0;
  visit(doc, {
    Alias(_, alias) {
      count++;
      const offset = alias.range?.[0] ?? 0;
      if (count > MAX_ALIASES) {
        problems.push({ offset, message: `more than ${MAX_ALIASES} aliases (*name) in one inventory; write the values out instead` });
        return visit.BREAK;
      }
      found.cycle = undefined;
      added += sizeOf(alias) - 1;
      const cycle = found.cycle as Alias | undefined;
      if (cycle) {
        problems.push({ offset: cycle.range?.[0] ?? offset, message: `the alias *${cycle.source} is inside the value it refers to, which would repeat it without end; refer to another value` });
        return visit.BREAK;
      }
      if (added > MAX_ALIAS_VALUES) {
        problems.push({
          offset,
          message: `the aliases up to here expand the inventory by more than ${MAX_ALIAS_VALUES} values (nested aliases multiply: a "billion laughs"); an inventory needs only a few small aliases: write the values out`,
        });
        return visit.BREAK;
      }
      return undefined;
    },
  });
  return problems;
}

/**
 * Where to report it when yaml's own alias limit (maxAliasCount) still stops toJS(): the first
 * alias that refers to a value with aliases inside, which is where the counts multiply.
 */
export function firstNestedAlias(doc: Document, targets: Map<Alias, Node>): number {
  let offset: number | undefined;
  let first: number | undefined;
  visit(doc, {
    Alias(_, alias) {
      first ??= alias.range?.[0];
      let nested = false;
      const target = targets.get(alias);
      if (target && !isScalar(target)) {
        visit(target, {
          Alias() {
            nested = true;
            return visit.BREAK;
          },
        });
      }
      if (!nested) return undefined;
      offset = alias.range?.[0];
      return visit.BREAK;
    },
  });
  return offset ?? first ?? 0;
}
