/** Loading the inventory and picking the environment a command acts on. */
import { loadInventory, type Inventory } from '../inventory/load.js';
import type { Environment } from '../inventory/resolve.js';
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
