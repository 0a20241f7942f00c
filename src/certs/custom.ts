/**
 * `ssl: { cert, key, chain }`: the local files, read and checked before anything is sent. A bad
 * certificate stops the command with an error at the inventory field that names the file.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { InventoryError, type InventoryProblem } from '../errors.js';
import type { Inventory } from '../inventory/load.js';
import type { Environment } from '../inventory/resolve.js';
import { checkCustomCertificate, type CertificateField, type CustomCertificate } from './inspect.js';

/** The environment's custom certificate, checked; null unless `ssl:` names files. */
export function loadCustomCertificate(inventory: Inventory, env: Environment, now = new Date()): CustomCertificate | null {
  if (typeof env.ssl !== 'object') return null;
  const files = env.ssl;
  // The field as the user wrote it: in the environment (ssl is per environment).
  const at = (field: CertificateField, message: string): InventoryProblem =>
    inventory.problemAt(['environments', env.name, 'ssl', field], `${files[field]}: ${message}`);
  const problems: InventoryProblem[] = [];
  const read = (field: CertificateField): string | undefined => {
    const name = files[field];
    if (name === undefined) return undefined;
    try {
      return readFileSync(path.resolve(inventory.dir, name), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? 'no such file (paths are relative to the inventory)'
          : code === 'EACCES'
            ? 'cannot read it (permission denied); make it readable by the user running stack'
            : code === 'EISDIR'
              ? 'is a directory, not a file'
              : `cannot read it (${code ?? String(err)})`;
      problems.push(at(field, why));
      return undefined;
    }
  };
  const cert = read('cert');
  const key = read('key');
  const chain = read('chain');
  if (cert === undefined || key === undefined || problems.length > 0) throw new InventoryError(problems);
  const checked = checkCustomCertificate({ cert, key, chain }, env.domains, now);
  if (!checked.ok) throw new InventoryError(checked.problems.map((p) => at(p.field, p.message)));
  for (const w of checked.certificate.warnings) process.stderr.write(`warning: ${inventory.file}: environments.${env.name}.ssl.${w}\n`);
  return checked.certificate;
}
