/**
 * `ssl: letsencrypt`: whether the ACME server must be asked (pure, from the facts), and the
 * server script that asks it with certbot's webroot method.
 *
 * The certificate is obtained BEFORE the new configuration goes live, in its own script: the
 * site nginx will serve names files that must exist (nginx -t fails otherwise), and if the ACME
 * server cannot be reached nothing else has changed. While certbot runs, nginx must answer
 * /.well-known/acme-challenge/ on port 80 for every domain: the live site does that for the
 * domains it already serves; for the others (a first deploy, an added domain) a small server
 * block stands in, and is removed again whatever happens.
 */
import { X509Certificate } from 'node:crypto';
import type { Environment } from '../inventory/resolve.js';
import { shCommand } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import { STAND_IN_DOMAINS } from '../views/nginx.js';
import { call, heredoc, type RunContext, step, wrap } from '../remote/script.js';
import { describeCertificate, pemCertificates, uncoveredDomains, validityProblem } from './inspect.js';

/** Ask the ACME server (certbot, webroot method) for a certificate before anything goes live. */
export interface CertificateRequest {
  /** Every domain of the environment; the first names the certificate (its live/ folder). */
  domains: string[];
  email: string;
  /** The ACME directory URL. */
  server: string;
  webroot: string;
  /** Why: no certificate yet, or which domains it lacks, or that it expired. */
  reason: string;
}

export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

/** certbot's folder for the certificate (`--cert-name` is the canonical domain). */
export function letsEncryptLive(env: Environment): string {
  return `/etc/letsencrypt/live/${env.domains[0]}`;
}

/** The leaf certificate file whose names and dates decide whether to ask again. */
export function letsEncryptCertFile(env: Environment): string {
  return `${letsEncryptLive(env)}/cert.pem`;
}

/** certbot's renewal settings for the certificate; its `server =` line names the CA it renews from. */
export function letsEncryptRenewalConf(env: Environment): string {
  return `/etc/letsencrypt/renewal/${env.domains[0]}.conf`;
}

/** The ACME server a renewal configuration renews from, or null. */
export function renewalServer(conf: string | undefined): string | null {
  return conf?.match(/^server\s*=\s*(\S+)\s*$/m)?.[1] ?? null;
}

/**
 * A certificate must be requested when there is none (or it cannot be read), when it lacks a
 * domain (one was added), when it has expired (renewal has been failing), or when it comes
 * from another ACME server than `acme_server` names (a move from a staging CA to the real one
 * must not keep the untrusted certificate, nor keep renewing from staging). Renewing ahead of
 * expiry is certbot's timer's job, not the deploy's.
 */
export function certificateNeed(env: Environment, layout: Layout, pem: string | undefined, now: Date, renewalConf?: string): CertificateRequest | null {
  if (typeof env.ssl !== 'string' || env.ssl !== 'letsencrypt') return null;
  const server = env.acme_server ?? LETS_ENCRYPT_DIRECTORY;
  let reason: string | null = null;
  const first = pem ? pemCertificates(pem)[0] : undefined;
  if (!first) reason = 'no certificate yet';
  else {
    let cert: X509Certificate | null = null;
    try {
      cert = new X509Certificate(first);
    } catch {
      reason = 'the current one cannot be read';
    }
    if (cert) {
      const missing = uncoveredDomains(cert, env.domains);
      const invalid = validityProblem(describeCertificate(cert), now);
      const from = renewalServer(renewalConf);
      if (missing.length > 0) reason = `the current one does not cover ${missing.join(', ')}`;
      else if (invalid) reason = `the current one ${invalid}`;
      else if (from !== null && from !== server) reason = `the current one comes from ${from}`;
    }
  }
  if (!reason) return null;
  return {
    domains: [...env.domains],
    email: env.email!,
    server,
    webroot: layout.acme_webroot,
    reason,
  };
}

/** The stand-in server block's file: conf.d is read before sites-enabled, so it answers first. */
export function acmeStandInFile(app: string): string {
  return `/etc/nginx/conf.d/stack-acme-${app}.conf`;
}

/**
 * The script that obtains (or extends) the certificate; it changes nothing else. `standIn` is
 * the rendered stand-in block (DesiredState.acmeStandIn), its server_name still to fill in with
 * the domains nginx does not answer yet (certs.sh does, on the server).
 */
export function obtainCertificateScript(req: CertificateRequest, ctx: RunContext, standIn: string): string {
  const certbot = shCommand(
    'certbot',
    'certonly',
    '--non-interactive',
    '--agree-tos',
    '--no-eff-email',
    '--email',
    req.email,
    '--server',
    req.server,
    '--webroot',
    '-w',
    req.webroot,
    '--cert-name',
    req.domains[0]!,
    '--expand',
    '--renew-by-default',
    ...req.domains.flatMap((d) => ['-d', d]),
  );
  const answer = call('acme_answer', `${req.webroot}/.well-known/acme-challenge`, acmeStandInFile(ctx.layout.app), STAND_IN_DOMAINS, ...req.domains);
  const lines = [
    step('answer ACME challenges on port 80 for every domain'),
    // The block goes as base64, like the files: one line of the script per line of data, whatever it holds.
    ...heredoc(`${answer} <<'STACK_STAND_IN'`, 'STACK_STAND_IN', standIn),
    step(`obtain a certificate for ${req.domains.join(', ')} (${req.server})`),
    `obtain_certificate ${certbot}`,
    `audit ok ''`,
  ];
  return wrap({ ...ctx, audit: ctx.audit ? { ...ctx.audit, command: `${ctx.audit.command}: certificate` } : null }, lines, { releaseLock: false });
}
