/**
 * The certificates a host serves: the file on disk, and what nginx itself presents for each
 * domain (TLS with it as SNI on 127.0.0.1:443). A renewed file that nginx has not loaded yet
 * shows up as a difference between the two. Verdicts are src/certs/report.ts's.
 */
import { pemCertificates } from '../certs/inspect.js';
import type { ServedCertificates } from '../certs/report.js';
import { shCommand } from '../remote/quote.js';
import { fromBase64, records, type Fact } from './fact.js';

export function certsFact(certificateFile: string, domains: readonly string[]): Fact<ServedCertificates> {
  return { what: 'read the certificates', lines: [shCommand('fact_certs', certificateFile, ...domains)], parse: parseCertsOutput };
}

export function parseCertsOutput(output: string): ServedCertificates {
  const disk = records(output, 'disk')[0]?.[0];
  const served = new Map<string, string | null>();
  for (const [domain, pem] of records(output, 'served')) if (domain) served.set(domain, pemCertificates(fromBase64(pem))[0] ?? null);
  return { disk: fromBase64(disk) || null, served };
}
