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
import type { CertificateRequest } from '../plan/plan.js';
import { shCommand, shQuote as q } from '../remote/quote.js';
import type { Layout } from '../views/layout.js';
import { STAND_IN_DOMAINS } from '../views/nginx.js';
import { wrap, type RunContext } from '../apply/scripts.js';
import { describeCertificate, pemCertificates, uncoveredDomains, validityProblem } from './inspect.js';

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
 * the rendered stand-in block (DesiredState.acmeStandIn), its server_name still to fill in.
 */
export function obtainCertificateScript(req: CertificateRequest, ctx: RunContext, standIn: string): string {
  const standInFile = acmeStandInFile(ctx.layout.app);
  const challenges = `${req.webroot}/.well-known/acme-challenge`;
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
  const lines = [
    `step ${q('answer ACME challenges on port 80 for every domain')}`,
    `install -d -m 0755 ${q(challenges)}`,
    // Whether nginx answers the challenge path for a domain: ask it, through itself, for a
    // file only this script knows.
    `probe=stack-probe-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')`,
    `printf '%s' "$probe" > ${q(challenges)}/"$probe"; chmod 0644 ${q(challenges)}/"$probe"`,
    `answers() { [ "$(curl -s --max-time 5 --resolve "$1:80:127.0.0.1" "http://$1/.well-known/acme-challenge/$probe" 2>/dev/null || true)" = "$probe" ]; }`,
    // Put back what was there: no probe, no stand-in block, and nginx reloaded without it.
    `cleanup() { rm -f ${q(challenges)}/"$probe"; if [ -f ${q(standInFile)} ]; then rm -f ${q(standInFile)}; nginx -t -q 2>/dev/null && reload_nginx; fi; }`,
    'cert_fail() { cleanup; audit failed "$1"; fail "$1"; }',
    'missing=',
    `for d in ${req.domains.map(q).join(' ')}; do answers "$d" || missing="$missing $d"; done`,
    'if [ -n "$missing" ]; then',
    // Domains are validated names (letters, digits, dots, dashes): safe in a sed replacement.
    `  printf '%s' ${q(standIn)} | sed "s|${STAND_IN_DOMAINS}|$missing|" > ${q(standInFile)}`,
    `  nginx -t -q 2>"$TMPD/nginx" || { cat "$TMPD/nginx" >&2; cert_fail 'nginx -t (ACME stand-in)'; }`,
    `  reload_nginx || cert_fail 'reload nginx'`,
    // The block must really answer (a custom nginx.conf might not include conf.d).
    `  for d in $missing; do answers "$d" || { echo "nginx does not answer /.well-known/acme-challenge/ for $d, even with ${standInFile} (does nginx.conf include conf.d?)" >&2; cert_fail 'ACME stand-in'; }; done`,
    'fi',
    `step ${q(`obtain a certificate for ${req.domains.join(', ')} (${req.server})`)}`,
    `if ! ${certbot} >"$TMPD/certbot" 2>&1; then`,
    // certbot says what went wrong in its last lines (the CA's answer or the connection error).
    `  grep -v '^Saving debug log' "$TMPD/certbot" | tail -n 12 >&2`,
    `  cert_fail 'obtain certificate'`,
    'fi',
    'cleanup',
    `audit ok ''`,
  ];
  return wrap({ ...ctx, audit: ctx.audit ? { ...ctx.audit, command: `${ctx.audit.command}: certificate` } : null }, lines, { releaseLock: false });
}
