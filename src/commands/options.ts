/** The options every command receives: the global flags and the one output made from them. */
import type { Output } from '../ui/output.js';

export interface GlobalOptions {
  inventory: string;
  debug: boolean;
  color: boolean;
  connectTimeout?: string;
  /** --limit: addresses or roles, comma-separated. */
  limit?: string;
  /** --parallel: hosts at once. */
  parallel?: string;
  quiet?: boolean;
  verbose?: boolean;
  json?: boolean;
  /** Made once from -q, -v and --json; every command prints through it. */
  output: Output;
}
