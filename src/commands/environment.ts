/** Loading the inventory and picking the environment a command acts on. */
import { loadInventory, type Inventory } from '../inventory/load.js';
import { hostRoles, type Environment } from '../inventory/resolve.js';
import { HOST_ROLES, type Host, type HostRole } from '../inventory/schema.js';
import { didYouMean } from '../inventory/suggest.js';
import { UsageError } from '../errors.js';
import type { GlobalOptions } from './options.js';

export async function selectEnvironment(inventoryFile: string, name: string | undefined): Promise<{ inventory: Inventory; env: Environment }> {
  const inventory = await loadInventory(inventoryFile);
  const names = Object.keys(inventory.environments);
  if (name === undefined) {
    if (names.length === 1) return { inventory, env: inventory.environments[names[0]!]! };
    throw new UsageError(`${inventoryFile} has several environments; say which one`, { hint: `one of: ${names.join(', ')}` });
  }
  const env = inventory.environments[name];
  if (!env) {
    const guess = didYouMean(name, names);
    throw new UsageError(`${inventoryFile} has no environment "${name}"${guess ? `; did you mean "${guess}"?` : ''}`, {
      hint: `environments: ${names.join(', ')}`,
    });
  }
  return { inventory, env };
}

export function connectTimeoutMs(globals: GlobalOptions): number | undefined {
  if (globals.connectTimeout === undefined) return undefined;
  const s = Number(globals.connectTimeout);
  if (!Number.isFinite(s) || s <= 0) throw new UsageError(`--connect-timeout: "${globals.connectTimeout}" is not a number of seconds`);
  return s * 1000;
}

/**
 * The hosts a command acts on: all of the environment's, or those `--limit` names by address
 * (`address:port` when two share an address) or by role. Their order stays the inventory's.
 */
export function targetHosts(env: Environment, limit: string | undefined): Host[] {
  if (limit === undefined) return env.hosts;
  const words = limit
    .split(',')
    .map((w) => w.trim())
    .filter((w) => w !== '');
  if (words.length === 0) throw new UsageError('--limit: name at least one host address or role', { hint: hostChoices(env) });
  const picked = new Set<Host>();
  for (const word of words) {
    const matches = (HOST_ROLES as readonly string[]).includes(word)
      ? env.hosts.filter((h) => hostRoles(h).includes(word as HostRole))
      : env.hosts.filter((h) => h.address === word || `${h.address}:${h.port ?? 22}` === word);
    if (matches.length === 0) {
      const guess = didYouMean(word, [...HOST_ROLES, ...env.hosts.map((h) => h.address)]);
      const what = (HOST_ROLES as readonly string[]).includes(word)
        ? `no host of environment ${env.name} has the role ${word}`
        : `environment ${env.name} has no host ${word}`;
      throw new UsageError(`--limit: ${what}${guess && guess !== word ? `; did you mean "${guess}"?` : ''}`, { hint: hostChoices(env) });
    }
    for (const h of matches) picked.add(h);
  }
  return env.hosts.filter((h) => picked.has(h));
}

function hostChoices(env: Environment): string {
  return `hosts: ${env.hosts.map((h) => `${h.address} (${hostRoles(h).join(', ')})`).join('; ')}`;
}

/** --parallel: how many hosts at once; all of them unless it says fewer. */
export function parallelHosts(globals: GlobalOptions, hosts: number): number {
  if (globals.parallel === undefined) return Math.max(1, hosts);
  const n = Number(globals.parallel);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--parallel: "${globals.parallel}" is not a whole number of hosts (1 or more)`);
  return n;
}
