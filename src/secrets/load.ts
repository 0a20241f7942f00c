/**
 * Secret values for an environment: from the stack process's environment (wins, for CI) or from
 * `.stack/secrets.<env>` next to the inventory (NAME=value lines). The file must not be readable
 * by other users; git is told to ignore it by `stack init`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { Secret } from './secret.js';

export function secretsFile(inventoryDir: string, env: string): string {
  return path.join(inventoryDir, '.stack', `secrets.${env}`);
}

/** Parses NAME=value lines; values may be wrapped in matching single or double quotes. Pure. */
export function parseSecretsFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!line.trim() || line.trimStart().startsWith('#')) continue;
    const m = line.match(/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/);
    if (!m) continue;
    let value = m[2]!.trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) value = value.slice(1, -1);
    out.set(m[1]!, value);
  }
  return out;
}

/** The values in `.stack/secrets.<env>`, refused when other users may read the file. */
function readSecretsFile(inventoryDir: string, env: string): Map<string, string> {
  const file = secretsFile(inventoryDir, env);
  if (!existsSync(file)) return new Map();
  const mode = statSync(file).mode;
  if (mode & 0o077) {
    throw new UsageError(`${path.relative(process.cwd(), file)} is readable by other users (mode ${(mode & 0o777).toString(8)})`, {
      hint: `chmod 600 ${path.relative(process.cwd(), file)}`,
    });
  }
  return parseSecretsFile(readFileSync(file, 'utf8'));
}

/** A secret stack itself may use (STACK_INDEX_URL), from the same places; null when it has no value. */
export function loadOptionalSecret(name: string, inventoryDir: string, env: string, environ: NodeJS.ProcessEnv = process.env): Secret | null {
  const value = environ[name] ?? readSecretsFile(inventoryDir, env).get(name);
  return value === undefined ? null : new Secret(name, value);
}

export function loadSecrets(names: string[], inventoryDir: string, env: string, environ: NodeJS.ProcessEnv = process.env): Map<string, Secret> {
  const file = secretsFile(inventoryDir, env);
  const fromFile = readSecretsFile(inventoryDir, env);
  const secrets = new Map<string, Secret>();
  const missing: string[] = [];
  for (const name of names) {
    const value = environ[name] ?? fromFile.get(name);
    if (value === undefined) missing.push(name);
    else secrets.set(name, new Secret(name, value));
  }
  if (missing.length > 0) {
    throw new UsageError(`no value for secret${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (environment ${env})`, {
      hint: `set ${missing.length > 1 ? 'them' : 'it'} in the environment, or add NAME=value lines to ${path.relative(process.cwd(), file) || file} (mode 600)`,
    });
  }
  return secrets;
}
