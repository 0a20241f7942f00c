/**
 * The shape of src/: folders depend on each other in one direction only (inventory and views at
 * the bottom, commands and the entry point at the top), so a folder can be read and tested
 * without the ones above it. A new import that closes a loop fails here, naming the loop.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

const SRC = path.join(ROOT, 'src');

/** folder -> the other folders its files import (static and dynamic imports). */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const folder of readdirSync(SRC).filter((f) => statSync(path.join(SRC, f)).isDirectory())) {
    const uses = new Set<string>();
    for (const file of readdirSync(path.join(SRC, folder)).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(path.join(SRC, folder, file), 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*'\.\.\/([a-z-]+)\//g)) if (m[1] !== folder) uses.add(m[1]!);
    }
    graph.set(folder, uses);
  }
  return graph;
}

/** The first loop found, as a path of folders, or null. */
function findLoop(graph: Map<string, Set<string>>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === 'done') return null;
    if (state.get(n) === 'open') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const loop = visit(m);
      if (loop) return loop;
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of graph.keys()) {
    const loop = visit(n);
    if (loop) return loop;
  }
  return null;
}

describe('folders of src/', () => {
  it('import each other without loops', () => {
    const graph = folderGraph();
    expect(graph.size).toBeGreaterThan(10);
    expect(findLoop(graph)?.join(' -> ') ?? null).toBeNull();
  });

  it('would see a loop', () => {
    expect(
      findLoop(
        new Map([
          ['a', new Set(['b'])],
          ['b', new Set(['c'])],
          ['c', new Set(['a'])],
        ]),
      ),
    ).toEqual(['a', 'b', 'c', 'a']);
  });

  it('keep the entry point alone at the top: nothing imports src/main.ts', () => {
    for (const [folder] of folderGraph()) {
      for (const file of readdirSync(path.join(SRC, folder)).filter((f) => f.endsWith('.ts'))) {
        expect(readFileSync(path.join(SRC, folder, file), 'utf8'), `${folder}/${file}`).not.toMatch(/from '\.\.\/main\.js'/);
      }
    }
  });
});
