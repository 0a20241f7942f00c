/**
 * The shell library files (src/remote/sh/*.sh), read once and sent ahead of the lines that call
 * them. They ship with the package as files, so an editor, shellcheck and dash all see the same
 * text the servers run.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cache = new Map<string, string>();

export function shellLibrary(name: string): string {
  let text = cache.get(name);
  if (text === undefined) {
    text = readFileSync(fileURLToPath(new URL(`../../src/remote/sh/${name}`, import.meta.url)), 'utf8');
    cache.set(name, text);
  }
  return text;
}
