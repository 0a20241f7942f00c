/**
 * Prints the inventory's JSON Schema (npm run schema -> schema/inventory.schema.json), so editors
 * with a YAML language server complete and check inventory files. Checks that JSON Schema cannot
 * express (the injection guard, for one) are left to `stack` itself.
 */
import { toJsonSchema } from '@valibot/to-json-schema';
import { InventorySchema } from './schema.js';

const schema = toJsonSchema(InventorySchema, { errorMode: 'ignore' });
const out = {
  ...schema,
  $id: 'https://stack.invalid/schema/inventory.schema.json',
  title: 'stack inventory',
  description: 'One file describing an app and the servers it is deployed to; see the README for every key.',
};
process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
