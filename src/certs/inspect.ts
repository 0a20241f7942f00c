/**
 * Reading X.509 certificates (pure): what a PEM holds, which names it covers, whether it is
 * valid now, and whether a custom certificate, its key and its chain belong together. Used
 * before anything is uploaded (custom certificates), to decide whether Let's Encrypt must be
 * asked (deploy), and to report (`stack certs`).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { Secret } from '../secrets/secret.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate block of a PEM text, in order. */
export function pemCertificates(text: string): string[] {
  return [...text.matchAll(PEM_CERT)].map((m) => `${m[0]}\n`);
}

export interface CertificateInfo {
  subject: string;
  issuer: string;
  /** DNS names and IP addresses of the subjectAltName extension. */
  names: string[];
  notBefore: Date;
  notAfter: Date;
  serial: string;
  fingerprint: string;
}

/** The common name of a distinguished name, or the whole name when it has none. */
function commonName(dn: string): string {
  const cn = dn.split('\n').find((l) => l.startsWith('CN='));
  return cn ? cn.slice(3) : dn.replace(/\n/g, ', ');
}

export function describeCertificate(cert: X509Certificate): CertificateInfo {
  const names = (cert.subjectAltName ?? '')
    .split(', ')
    .map((n) => n.match(/^(?:DNS|IP Address):(.+)$/)?.[1])
    .filter((n): n is string => n !== undefined);
  return {
    subject: commonName(cert.subject),
    issuer: commonName(cert.issuer),
    names,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    serial: cert.serialNumber,
    fingerprint: cert.fingerprint256,
  };
}

const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;

/** The domains (or addresses) of `domains` the certificate does not cover. */
export function uncoveredDomains(cert: X509Certificate, domains: readonly string[]): string[] {
  return domains.filter((d) => (IPV4.test(d) ? cert.checkIP(d) === undefined : cert.checkHost(d, { subject: 'never' }) === undefined));
}

export function daysLeft(cert: CertificateInfo, now: Date): number {
  return Math.floor((cert.notAfter.getTime() - now.getTime()) / 86_400_000);
}

const day = (d: Date) => d.toISOString().slice(0, 10);

/** Why a certificate cannot be used now, or null. */
export function validityProblem(cert: CertificateInfo, now: Date): string | null {
  if (cert.notAfter.getTime() <= now.getTime()) return `expired on ${day(cert.notAfter)}`;
  if (cert.notBefore.getTime() > now.getTime()) return `not valid before ${day(cert.notBefore)}`;
  return null;
}

export interface CustomCertificateInput {
  cert: string;
  key: string;
  chain?: string;
}

export interface CustomCertificate {
  /** The certificate followed by its intermediates, as nginx wants it. */
  fullchain: string;
  /** The intermediates alone (for OCSP stapling), when a chain was given. */
  chain: string | null;
  /** Revealed only where the file is written on the server. */
  key: Secret;
  info: CertificateInfo;
  /** Things that work but are probably not meant (no intermediates for a CA-issued certificate). */
  warnings: string[];
}

export type CertificateField = 'cert' | 'key' | 'chain';

/**
 * Checks that a custom certificate can go live for these domains: it parses, it matches its
 * key, it is valid today, it covers every domain, and the chain (if any) really issued it.
 * Returns every problem found, each tied to the inventory field that names the bad file.
 */
export function checkCustomCertificate(
  input: CustomCertificateInput,
  domains: readonly string[],
  now: Date,
): { ok: true; certificate: CustomCertificate } | { ok: false; problems: { field: CertificateField; message: string }[] } {
  const problems: { field: CertificateField; message: string }[] = [];
  const certBlocks = pemCertificates(input.cert);
  let certs: X509Certificate[] = [];
  try {
    certs = certBlocks.map((b) => new X509Certificate(b));
  } catch (err) {
    problems.push({ field: 'cert', message: `is not a valid PEM certificate (${(err as Error).message})` });
  }
  if (certBlocks.length === 0 && problems.length === 0) {
    problems.push({ field: 'cert', message: 'holds no PEM certificate (-----BEGIN CERTIFICATE-----); convert it with `openssl x509 -in FILE -out cert.pem`' });
  }
  let chainCerts: X509Certificate[] = [];
  if (input.chain !== undefined) {
    try {
      chainCerts = pemCertificates(input.chain).map((b) => new X509Certificate(b));
      if (chainCerts.length === 0)
        problems.push({ field: 'chain', message: 'holds no PEM certificate; give the intermediate certificates of your CA, or remove chain:' });
    } catch (err) {
      problems.push({ field: 'chain', message: `is not a valid PEM certificate chain (${(err as Error).message})` });
    }
  }
  let key: KeyObject | null = null;
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(input.key)) {
    problems.push({ field: 'key', message: 'is encrypted, and nginx cannot ask for its passphrase; decrypt it with `openssl pkey -in KEY -out KEY.plain`' });
  } else {
    try {
      key = createPrivateKey(input.key);
    } catch {
      problems.push({ field: 'key', message: 'is not a PEM private key (-----BEGIN PRIVATE KEY-----)' });
    }
  }
  const leaf = certs[0];
  if (!leaf) return { ok: false, problems };
  const info = describeCertificate(leaf);
  if (key && !leaf.checkPrivateKey(key)) {
    problems.push({
      field: 'key',
      message: `does not match the certificate (CN=${info.subject}, serial ${info.serial}); give the key this certificate was issued for`,
    });
  }
  const invalid = validityProblem(info, now);
  if (invalid) problems.push({ field: 'cert', message: `${invalid} (CN=${info.subject}); renew it with your CA` });
  const missing = uncoveredDomains(leaf, domains);
  if (missing.length > 0) {
    const has = info.names.length > 0 ? info.names.join(', ') : 'no subjectAltName';
    problems.push({ field: 'cert', message: `does not cover ${missing.join(', ')} (it covers ${has}); get one that names every domain of the environment` });
  }
  // Intermediates: those after the leaf in the cert file, then those of the chain file, each
  // once, never the leaf itself (a "chain" that is really a full chain is common).
  const intermediates: X509Certificate[] = [];
  for (const c of [...certs.slice(1), ...chainCerts]) {
    if (c.fingerprint256 !== leaf.fingerprint256 && !intermediates.some((i) => i.fingerprint256 === c.fingerprint256)) intermediates.push(c);
  }
  const issuer = intermediates[0];
  if (issuer && !(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey))) {
    problems.push({
      field: chainCerts.length > 0 && certs.length === 1 ? 'chain' : 'cert',
      message: `the intermediate certificate (CN=${describeCertificate(issuer).subject}) did not issue this certificate (issuer CN=${info.issuer}); give the chain of the CA that signed it`,
    });
  }
  if (problems.length > 0) return { ok: false, problems };
  const warnings: string[] = [];
  // A certificate its own issuer signed needs no chain; one from a CA does, or clients that
  // lack the intermediate cannot build a path to a root.
  const selfIssued = leaf.checkIssued(leaf) && leaf.verify(leaf.publicKey);
  if (intermediates.length === 0 && !selfIssued) {
    warnings.push(
      `cert: ${info.issuer} issued it, but no intermediate certificate is given: clients that lack it will not trust the site; add chain: (your CA's intermediates)`,
    );
  }
  return {
    ok: true,
    certificate: {
      fullchain: [leaf, ...intermediates].map((c) => c.toString()).join(''),
      chain: input.chain !== undefined ? intermediates.map((c) => c.toString()).join('') : null,
      key: new Secret('TLS private key', input.key.endsWith('\n') ? input.key : `${input.key}\n`),
      info,
      warnings,
    },
  };
}
