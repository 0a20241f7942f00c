/** `stack certs ENV`: each domain's certificate as nginx presents it: issuer, expiry, days left. */
import type { GlobalOptions } from './options.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import { EXIT } from '../errors.js';
import { judgeCertificates } from '../certs/report.js';
import { ask } from '../facts/fact.js';
import { certsFact } from '../facts/certs.js';
import { sslMode } from '../inventory/resolve.js';
import type { CertsResult } from '../ui/results.js';
import { layoutFor } from '../views/layout.js';
import { tlsFor } from '../views/nginx.js';

/** Exit 1 when any certificate is not ok, so a cron job or a CI step can alert on it. */
export async function runCerts(envName: string | undefined, globals: GlobalOptions): Promise<CertsResult> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const ssl = sslMode(env.ssl);
  const result: CertsResult = { kind: 'certs', env: env.name, ssl, hosts: [] };
  const tls = tlsFor(env, layoutFor(env.app, env.gateway));
  if (!tls) return result;
  result.hosts = await forEachHost(inventory, env, globals, async (shell, host) => {
    const served = await ask(shell, certsFact(tls.certificate, env.domains));
    const part = { host: host.address, certificates: judgeCertificates(env.domains, served, new Date(), env.ssl === 'letsencrypt' ? 'certbot' : 'you') };
    globals.output.host({ kind: 'certs', ssl, ...part });
    return part;
  });
  const bad = result.hosts.some((h) => h.certificates.some((c) => c.status !== 'ok'));
  return { ...result, exitCode: bad ? EXIT.failure : EXIT.ok };
}
