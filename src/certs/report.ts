/**
 * `stack certs`: the verdict on each domain's certificate (what nginx presents, and the file on
 * disk, as src/facts/certs.ts reads them) and the table. Pure.
 */
import { X509Certificate } from 'node:crypto';
import { daysLeft, describeCertificate, pemCertificates, uncoveredDomains, type CertificateInfo } from './inspect.js';

/** What a host serves, as src/facts/certs.ts reads it: the file on disk and each domain's certificate. */
export interface ServedCertificates {
  disk: string | null;
  served: Map<string, string | null>;
}

export interface DomainCertificate {
  domain: string;
  info: CertificateInfo | null;
  days: number | null;
  status: 'ok' | 'expires soon' | 'expired' | 'wrong name' | 'not served' | 'stale' | 'unreadable';
  note: string;
}

/** Under this many days left a certificate is flagged (certbot renews at 30). */
export const WARN_DAYS = 14;

function parse(pem: string | undefined | null): X509Certificate | null {
  if (!pem) return null;
  try {
    return new X509Certificate(pem);
  } catch {
    return null;
  }
}

/** `renewedBy`: who renews these certificates, for the advice when one nears its expiry. */
export function judgeCertificates(
  domains: readonly string[],
  found: ServedCertificates,
  now: Date,
  renewedBy: 'certbot' | 'you' = 'certbot',
): DomainCertificate[] {
  const disk = parse(found.disk ? pemCertificates(found.disk)[0] : undefined);
  return domains.map((domain) => {
    const pem = found.served.get(domain);
    if (!pem) {
      return {
        domain,
        info: null,
        days: null,
        status: 'not served',
        note: 'nginx presents no certificate on 443 for this name: is the HTTPS site live? (stack deploy)',
      };
    }
    const cert = parse(pem);
    if (!cert) return { domain, info: null, days: null, status: 'unreadable', note: 'nginx presents something that is not an X.509 certificate' };
    const info = describeCertificate(cert);
    const days = daysLeft(info, now);
    if (uncoveredDomains(cert, [domain]).length > 0)
      return { domain, info, days, status: 'wrong name', note: `the certificate served names ${info.names.join(', ') || info.subject}` };
    if (info.notAfter.getTime() <= now.getTime()) return { domain, info, days, status: 'expired', note: 'renew it: certbot renew, or upload a new one' };
    if (disk && disk.fingerprint256 !== cert.fingerprint256) {
      return {
        domain,
        info,
        days,
        status: 'stale',
        note: `nginx serves another certificate than the file on disk (valid until ${describeCertificate(disk).notAfter.toISOString().slice(0, 10)}): reload nginx`,
      };
    }
    if (days < WARN_DAYS) {
      const note =
        renewedBy === 'certbot' ? 'renewal should have happened by now: check certbot.timer and `certbot renew --dry-run`' : 'renew it with your CA and deploy';
      return { domain, info, days, status: 'expires soon', note };
    }
    return { domain, info, days, status: 'ok', note: '' };
  });
}

export function formatCertificates(rows: readonly DomainCertificate[]): string {
  const table = [
    ['DOMAIN', 'ISSUER', 'EXPIRES (UTC)', 'DAYS LEFT', 'STATUS'],
    ...rows.map((r) => [
      r.domain,
      r.info?.issuer ?? '-',
      r.info ? r.info.notAfter.toISOString().slice(0, 16).replace('T', ' ') : '-',
      r.days === null ? '-' : String(r.days),
      r.note ? `${r.status}: ${r.note}` : r.status,
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return table.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}
