/**
 * Generated secrets for `stack init --generate-secrets`: a strong random value for each signing
 * key the app needs (Django's or Flask's SECRET_KEY), written to `.stack/secrets.<env>` with mode
 * 0600, where `stack deploy` reads it. A value already in the file is never replaced, and no value
 * is ever printed: only the names are reported.
 */
import { randomBytes } from 'node:crypto';
import { constants, existsSync, readFileSync, statSync } from 'node:fs';
import { appendFile, mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { parseSecretsFile, secretsFile } from '../secrets/load.js';
import { Secret } from '../secrets/secret.js';

/**
 * 48 random bytes as 64 URL-safe base64 characters (384 bits): past Django's own check (at
 * least 50 characters, 5 different), and nothing that needs quoting in the secrets file or in
 * systemd's environment file.
 */
export function generateSecretValue(): Secret {
  return new Secret('generated', randomBytes(48).toString('base64url'));
}

/** What the secrets file holds before init writes: the names present, or why it may not be written to. */
export function secretsFileState(inventoryDir: string, env: string): { file: string; names: Set<string>; problem?: string } {
  const file = secretsFile(inventoryDir, env);
  if (!existsSync(file)) return { file, names: new Set() };
  const mode = statSync(file).mode & 0o777;
  let names = new Set<string>();
  try {
    names = new Set(parseSecretsFile(readFileSync(file, 'utf8')).keys());
  } catch (err) {
    return { file, names, problem: `cannot read ${file}: ${(err as Error).message}` };
  }
  if (mode & 0o077) return { file, names, problem: `${file} is readable by other users (mode ${mode.toString(8)}); run chmod 600 ${file}` };
  return { file, names };
}

/**
 * Adds a generated value for each name the file lacks; returns the names added and those kept.
 * A new file is created with mode 0600 (exclusively: a file that appears meanwhile is not
 * overwritten), an existing one is appended to, keeping its mode.
 */
export async function addGeneratedSecrets(inventoryDir: string, env: string, names: string[]): Promise<{ file: string; added: string[]; kept: string[] }> {
  const state = secretsFileState(inventoryDir, env);
  if (state.problem) throw new UsageError(`no secret was generated: ${state.problem}`);
  const added = names.filter((n) => !state.names.has(n));
  const kept = names.filter((n) => state.names.has(n));
  if (added.length === 0) return { file: state.file, added, kept };
  // Revealed only here, where the file's content is written.
  const lines = added.map((n) => `${n}=${generateSecretValue().reveal()}\n`).join('');
  await mkdir(path.dirname(state.file), { recursive: true, mode: 0o700 });
  if (existsSync(state.file)) {
    await appendFile(state.file, (await endsWithNewline(state.file)) ? lines : `\n${lines}`);
  } else {
    const handle = await open(state.file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await handle.writeFile(`# Secret values for environment ${env}, read by stack deploy. Never commit this file.\n${lines}`);
    } finally {
      await handle.close();
    }
  }
  return { file: state.file, added, kept };
}

async function endsWithNewline(file: string): Promise<boolean> {
  const text = await readFile(file, 'utf8');
  return text === '' || text.endsWith('\n');
}
