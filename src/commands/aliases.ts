/**
 * Command aliases from the inventory: with `aliases: { console: "run -t -- python manage.py
 * shell" }`, `stack console prod` runs `stack run prod -t -- python manage.py shell`. What is
 * typed after the alias (the environment, --host ...) goes right after the alias's command, so
 * the alias's own `--` still ends the options; what is typed after a `--` goes at the very end:
 * with `manage: "run -- python manage.py"`, `stack manage prod -- migrate` runs `python
 * manage.py migrate`.
 */
import { existsSync } from 'node:fs';
import { UsageError } from '../errors.js';
import { loadInventory } from '../inventory/load.js';
import { BUILTIN_COMMANDS } from '../inventory/schema.js';
import { didYouMean } from '../inventory/suggest.js';

/** Global options that take a value: the word after them is not the command. */
const VALUE_OPTIONS = new Set(['-i', '--inventory', '--connect-timeout']);

/** Where the command word is in `argv` (global options may come first), or -1. */
export function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return -1;
    if (VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith('-')) return i;
  }
  return -1;
}

/** The inventory file the command line names (-i FILE, --inventory=FILE), else inventory.yml. */
export function inventoryArgument(argv: readonly string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if ((a === '-i' || a === '--inventory') && argv[i + 1] !== undefined) return argv[i + 1]!;
    if (a.startsWith('--inventory=')) return a.slice('--inventory='.length);
  }
  return 'inventory.yml';
}

/** An alias's text as words: spaces separate, '…' and "…" quote (no escapes inside '…'). */
export function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let started = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && (text[i + 1] === '"' || text[i + 1] === '\\')) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      started = true;
    } else if (/\s/.test(c)) {
      if (started) words.push(word);
      word = '';
      started = false;
    } else {
      word += c;
      started = true;
    }
  }
  if (quote) throw new UsageError(`alias "${text}": a ${quote} quote is not closed`);
  if (started) words.push(word);
  return words;
}

/** `argv` with an alias replaced by what it stands for; unchanged when the command is stack's own. */
export async function expandAlias(argv: string[]): Promise<string[]> {
  const at = commandIndex(argv);
  if (at < 0) return argv;
  const name = argv[at]!;
  if ((BUILTIN_COMMANDS as readonly string[]).includes(name)) return argv;
  const file = inventoryArgument(argv);
  // Without an inventory there are no aliases; commander then says the command is unknown.
  if (!existsSync(file)) return argv;
  const aliases = (await loadInventory(file)).data.aliases;
  const text = aliases[name];
  if (text === undefined) {
    const guess = didYouMean(name, [...BUILTIN_COMMANDS, ...Object.keys(aliases)]);
    throw new UsageError(`unknown command '${name}'${guess ? ` (did you mean ${guess}?)` : ''}`, {
      hint: Object.keys(aliases).length > 0 ? `aliases in ${file}: ${Object.keys(aliases).join(', ')}` : 'run `stack --help` for the commands',
    });
  }
  const [command, ...words] = splitWords(text);
  const rest = argv.slice(at + 1);
  const dashes = rest.indexOf('--');
  const typed = dashes < 0 ? rest : rest.slice(0, dashes);
  const appended = dashes < 0 ? [] : rest.slice(dashes + 1);
  const tail = appended.length === 0 ? [] : words.includes('--') ? appended : ['--', ...appended];
  return [...argv.slice(0, at), command!, ...typed, ...words, ...tail];
}
