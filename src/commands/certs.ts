/** `stack certs ENV`: each domain's certificate as nginx presents it: issuer, expiry, days left. */
import pc from 'picocolors';
import type { GlobalOptions } from '../cli/main.js';
import { selectEnvironment } from '../cli/environment.js';
import { forEachHost } from '../cli/hosts.js';
import { StackError } from '../errors.js';
import { certsScript, formatCertificates, judgeCertificates, parseCertsOutput } from '../certs/report.js';
import { layoutFor } from '../views/layout.js';
import { tlsFor } from '../views/nginx.js';

export async function runCerts(envName: string | undefined, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const tls = tlsFor(env, layoutFor(env.app, env.gateway));
  if (!tls) {
    process.stdout.write(`${env.name} has ssl: none, so there are no certificates; set ssl: letsencrypt, self-signed or { cert, key }\n`);
    return;
  }
  let bad = 0;
  await forEachHost(inventory, env, globals, async (shell, host) => {
    const r = await shell.sudoScript(certsScript(env.domains, tls.certificate));
    if (r.code !== 0) throw new StackError(`${shell.label}: could not read the certificates: ${r.stderr.trim()}`);
    const rows = judgeCertificates(env.domains, parseCertsOutput(r.stdout), new Date(), env.ssl === 'letsencrypt' ? 'certbot' : 'you');
    bad += rows.filter((row) => row.status !== 'ok').length;
    process.stdout.write(`${pc.bold(host.address)} (${typeof env.ssl === 'string' ? env.ssl : 'custom certificate'})\n${formatCertificates(rows)}\n`);
  });
  if (bad > 0) process.exitCode = 1;
}
