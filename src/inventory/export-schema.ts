/**
 * The inventory's JSON Schema (npm run schema -> schema/inventory.schema.json), so editors with
 * a YAML language server complete and check inventory files. Checks that JSON Schema cannot
 * express (the injection guard, for one) are left to `stack` itself. Run as a script, it prints
 * the schema; a unit test fails when the committed file is not what this makes.
 */
import { fileURLToPath } from 'node:url';
import { toJsonSchema } from '@valibot/to-json-schema';
import { InventorySchema } from './schema.js';

export function inventoryJsonSchemaText(): string {
  const schema = toJsonSchema(InventorySchema, { errorMode: 'ignore' });
  const out = {
    ...schema,
    $id: 'https://stack.invalid/schema/inventory.schema.json',
    title: 'stack inventory',
    description: 'One file describing an app and the servers it is deployed to; see the README for every key.',
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) process.stdout.write(inventoryJsonSchemaText());
