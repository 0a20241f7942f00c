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

/**
 * The backup program the database's timer runs as root (/usr/local/lib/stack/db-backup): the
 * database library with its entry point, so the timer and `stack db backup` run the same code.
 */
export function backupProgram(): string {
  return `#!/bin/sh\n# Managed by stack: the backup program of every app's database timer.\n${shellLibrary('db.sh')}\ndb_main "$@"\n`;
}
