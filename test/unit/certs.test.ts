/**
 * Certificates, without a server: custom certificate checks (real certificates made by openssl,
 * with real dates), when Let's Encrypt must be asked, the stand-in ACME block (through the real
 * nginx -t), and the `stack certs` verdicts.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkCustomCertificate } from '../../src/certs/inspect.js';
import { certificateNeed, LETS_ENCRYPT_DIRECTORY, obtainCertificateScript } from '../../src/certs/letsencrypt.js';
import { buildDesiredState, configFilesFor } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { STAND_IN_DOMAINS } from '../../src/views/nginx.js';
import { formatCertificates, judgeCertificates } from '../../src/certs/report.js';
import { parseCertsOutput } from '../../src/facts/certs.js';
import { checkNginxSites } from '../../src/checks/nginx.js';
import { parseInventory } from '../../src/inventory/load.js';
import { loadCustomCertificate } from '../../src/certs/custom.js';
import { layoutFor } from '../../src/views/layout.js';
import { InventoryError } from '../../src/errors.js';
import { issue, makeCa, read, type Ca } from '../helpers/certs.js';
import { ROOT, stack } from '../helpers/cli.js';

const NOW = new Date();
let root: Ca;
let intermediate: Ca;
let other: Ca;
let good: { cert: string; key: string };

beforeAll(() => {
  root = makeCa('Test Root CA');
  intermediate = makeCa('Test Intermediate CA', root);
  other = makeCa('Some Other CA');
  good = issue(intermediate, { names: ['shop.example.org', 'www.shop.example.org'] });
});

const DOMAINS = ['shop.example.org', 'www.shop.example.org'];

/** A self-signed server certificate for self.example.org, made by openssl req -x509. */
function issueSelfSigned(): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-self-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const r = spawnSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '30',
    '-subj',
    '/CN=self.example.org',
    '-addext',
    'subjectAltName=DNS:self.example.org',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  if (r.status !== 0) throw new Error(String(r.stderr));
  return { cert, key };
}

describe('custom certificate checks', () => {
  it('accepts a matching, valid certificate that covers every domain, and builds the full chain', () => {
    const r = checkCustomCertificate({ cert: read(good.cert), key: read(good.key), chain: read(intermediate.cert) }, DOMAINS, NOW);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const blocks = r.certificate.fullchain.match(/BEGIN CERTIFICATE/g);
    expect(blocks).toHaveLength(2);
    expect(r.certificate.fullchain.startsWith(read(good.cert).slice(0, 60))).toBe(true);
    expect(r.certificate.chain).toContain('BEGIN CERTIFICATE');
    expect(r.certificate.info.issuer).toBe('Test Intermediate CA');
    expect(r.certificate.info.names).toEqual(DOMAINS);
  });

  it('keeps the key as a secret value that prints redacted', () => {
    const r = checkCustomCertificate({ cert: read(good.cert), key: read(good.key), chain: read(intermediate.cert) }, DOMAINS, NOW);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(String(r.certificate.key)).toBe('[REDACTED]');
    expect(JSON.stringify(r.certificate)).not.toContain(read(good.key).split('\n')[1]!);
    expect(r.certificate.key.reveal()).toBe(read(good.key));
    expect(r.certificate.warnings).toEqual([]);
  });

  it('warns when a CA-issued certificate comes without its intermediates, not for a self-signed one', () => {
    const alone = checkCustomCertificate({ cert: read(good.cert), key: read(good.key) }, DOMAINS, NOW);
    expect(alone.ok && alone.certificate.warnings).toEqual([
      expect.stringContaining('Test Intermediate CA issued it, but no intermediate certificate is given'),
    ]);
    const selfSigned = issueSelfSigned();
    // Judged by the clock after it was issued: openssl dates it from now, which is after NOW.
    const ss = checkCustomCertificate({ cert: read(selfSigned.cert), key: read(selfSigned.key) }, ['self.example.org'], new Date());
    expect(ss.ok && ss.certificate.warnings).toEqual([]);
  });

  it('does not repeat an intermediate already in the certificate file', () => {
    const both = read(good.cert) + read(intermediate.cert);
    const r = checkCustomCertificate({ cert: both, key: read(good.key), chain: read(intermediate.cert) }, DOMAINS, NOW);
    expect(r.ok && r.certificate.fullchain.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
  });

  it('takes a "chain" that is really the full chain (leaf included) without repeating the leaf', () => {
    const full = read(good.cert) + read(intermediate.cert);
    const r = checkCustomCertificate({ cert: read(good.cert), key: read(good.key), chain: full }, DOMAINS, NOW);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.certificate.fullchain.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(r.certificate.chain!.match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
    expect(r.certificate.chain).toBe(read(intermediate.cert).replace(/\n?$/, '\n'));
  });

  it('refuses a key that belongs to another certificate', () => {
    const stranger = issue(intermediate, { names: DOMAINS });
    const r = checkCustomCertificate({ cert: read(good.cert), key: read(stranger.key) }, DOMAINS, NOW);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems).toEqual([{ field: 'key', message: expect.stringMatching(/^does not match the certificate \(CN=shop\.example\.org/) }]);
  });

  it('refuses an expired certificate and one not valid yet, with the date', () => {
    const old = issue(intermediate, { names: DOMAINS, start: '20200101000000Z', end: '20200201000000Z' });
    const r = checkCustomCertificate({ cert: read(old.cert), key: read(old.key) }, DOMAINS, NOW);
    expect(!r.ok && r.problems).toEqual([{ field: 'cert', message: expect.stringContaining('expired on 2020-02-01') }]);
    const future = issue(intermediate, { names: DOMAINS, start: '20400101000000Z', end: '20410101000000Z' });
    const f = checkCustomCertificate({ cert: read(future.cert), key: read(future.key) }, DOMAINS, NOW);
    expect(!f.ok && f.problems[0]!.message).toContain('not valid before 2040-01-01');
  });

  it('refuses a certificate that does not cover every domain, naming the missing ones', () => {
    const r = checkCustomCertificate({ cert: read(good.cert), key: read(good.key) }, [...DOMAINS, 'api.example.org'], NOW);
    expect(!r.ok && r.problems).toEqual([
      {
        field: 'cert',
        message: 'does not cover api.example.org (it covers shop.example.org, www.shop.example.org); get one that names every domain of the environment',
      },
    ]);
  });

  it('checks IP addresses against IP entries and wildcards against one label', () => {
    const ip = issue(intermediate, { names: ['169.254.9.2'] });
    expect(checkCustomCertificate({ cert: read(ip.cert), key: read(ip.key) }, ['169.254.9.2'], NOW).ok).toBe(true);
    const wild = issue(intermediate, { names: ['*.example.org'] });
    expect(checkCustomCertificate({ cert: read(wild.cert), key: read(wild.key) }, ['a.example.org'], NOW).ok).toBe(true);
    const deep = checkCustomCertificate({ cert: read(wild.cert), key: read(wild.key) }, ['a.b.example.org'], NOW);
    expect(!deep.ok && deep.problems[0]!.message).toMatch(/^does not cover a\.b\.example\.org/);
  });

  it('refuses a chain that did not issue the certificate', () => {
    const r = checkCustomCertificate({ cert: read(good.cert), key: read(good.key), chain: read(other.cert) }, DOMAINS, NOW);
    expect(!r.ok && r.problems).toEqual([{ field: 'chain', message: expect.stringContaining('(CN=Some Other CA) did not issue this certificate') }]);
  });

  it('refuses files that are not certificates or keys, and encrypted keys', () => {
    const r = checkCustomCertificate({ cert: 'hello', key: 'world' }, DOMAINS, NOW);
    expect(!r.ok && r.problems.map((p) => p.field).sort()).toEqual(['cert', 'key']);
    const enc = checkCustomCertificate(
      { cert: read(good.cert), key: '-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n' },
      DOMAINS,
      NOW,
    );
    expect(!enc.ok && enc.problems[0]!.message).toContain('is encrypted');
  });
});

describe('custom certificate files named by the inventory', () => {
  function project(files: Record<string, string | null>, ssl: string): string {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-certs-'));
    mkdirSync(path.join(dir, 'certs'));
    // The module app.wsgi names: render checks that it is in the source.
    mkdirSync(path.join(dir, 'shop'));
    writeFileSync(path.join(dir, 'shop', 'wsgi.py'), '');
    for (const [name, content] of Object.entries(files)) {
      if (content === null) mkdirSync(path.join(dir, name));
      else writeFileSync(path.join(dir, name), content);
    }
    writeFileSync(
      path.join(dir, 'inventory.yml'),
      [
        'app: { name: shop, wsgi: "shop.wsgi:application" }',
        'environments:',
        '  prod:',
        '    domains: [shop.example.org, www.shop.example.org]',
        `    ssl: ${ssl}`,
        '    hosts: [{ address: 203.0.113.5 }]',
        '',
      ].join('\n'),
    );
    return dir;
  }

  it('names the file, line and field of a missing or unreadable file', () => {
    const dir = project({ 'certs/cert.pem': read(good.cert), 'certs/key.pem': null }, '{ cert: certs/cert.pem, key: certs/key.pem, chain: certs/none.pem }');
    const inventory = parseInventory(read(path.join(dir, 'inventory.yml')), path.join(dir, 'inventory.yml'));
    let error: unknown;
    try {
      loadCustomCertificate(inventory, inventory.environments.prod!);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InventoryError);
    const problems = (error as InventoryError).problems;
    expect(problems.map((p) => [p.line, p.field, p.message])).toEqual([
      [5, 'environments.prod.ssl.key', 'certs/key.pem: is a directory, not a file'],
      [5, 'environments.prod.ssl.chain', 'certs/none.pem: no such file (paths are relative to the inventory)'],
    ]);
  });

  // As root, every file is readable: the CLI runs as `nobody` to meet a file it may not read.
  it.skipIf(process.getuid?.() !== 0)('says a file it may not read is unreadable, at its field', () => {
    const dir = project({ 'certs/cert.pem': read(good.cert), 'certs/key.pem': read(good.key) }, '{ cert: certs/cert.pem, key: certs/key.pem }');
    chmodSync(dir, 0o755);
    chmodSync(path.join(dir, 'certs'), 0o755);
    chmodSync(path.join(dir, 'inventory.yml'), 0o644);
    chmodSync(path.join(dir, 'certs/cert.pem'), 0o644);
    chmodSync(path.join(dir, 'certs/key.pem'), 0o600);
    const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, path.join(ROOT, 'bin/stack.js'), 'render', 'prod'], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1', HOME: '/tmp' },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error: inventory\.yml:5:\d+: environments\.prod\.ssl\.key: certs\/key\.pem: cannot read it \(permission denied\)/m);
  });

  it('stops `stack render` with one located error for a mismatched key, and never prints a key', () => {
    const stranger = issue(intermediate, { names: DOMAINS });
    const dir = project({ 'certs/cert.pem': read(good.cert), 'certs/key.pem': read(stranger.key) }, '{ cert: certs/cert.pem, key: certs/key.pem }');
    const r = stack(['render', 'prod'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: inventory\.yml:5:\d+: environments\.prod\.ssl\.key: certs\/key\.pem: does not match the certificate/m);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    const keyBody = read(stranger.key).split('\n')[1]!;
    expect(r.stdout + r.stderr).not.toContain(keyBody);
  });

  it('renders the uploaded files with the key redacted', () => {
    const dir = project(
      { 'certs/cert.pem': read(good.cert), 'certs/key.pem': read(good.key), 'certs/chain.pem': read(intermediate.cert) },
      '{ cert: certs/cert.pem, key: certs/key.pem, chain: certs/chain.pem }',
    );
    const r = stack(['render', 'prod'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('==> 203.0.113.5:/etc/ssl/stack/shop/privkey.pem (0600 root:root');
    expect(r.stdout).toMatch(/privkey\.pem.*\n\[REDACTED\]/);
    expect(r.stdout).not.toContain(read(good.key).split('\n')[1]!);
    expect(r.stdout).toContain('==> 203.0.113.5:/etc/ssl/stack/shop/chain.pem');
    expect(r.stdout).toContain(read(good.cert).split('\n')[1]!);
  });
});

describe("when Let's Encrypt is asked", () => {
  const inventory = parseInventory(
    [
      'app: { name: shop, wsgi: "shop.wsgi:application" }',
      'environments:',
      '  prod:',
      '    domains: [shop.example.org, www.shop.example.org]',
      '    ssl: letsencrypt',
      '    email: ops@example.org',
      '    hosts: [{ address: 203.0.113.5 }]',
      '',
    ].join('\n'),
    'inventory.yml',
  );
  const env = inventory.environments.prod!;
  const layout = layoutFor(env.app, env.gateway);

  it('asks when there is no certificate, one lacks a domain, or it expired; not otherwise', () => {
    expect(certificateNeed(env, layout, undefined, NOW)).toMatchObject({
      reason: 'no certificate yet',
      server: LETS_ENCRYPT_DIRECTORY,
      domains: DOMAINS,
      email: 'ops@example.org',
    });
    expect(certificateNeed(env, layout, read(good.cert), NOW)).toBeNull();
    const one = issue(intermediate, { names: ['shop.example.org'] });
    expect(certificateNeed(env, layout, read(one.cert), NOW)?.reason).toBe('the current one does not cover www.shop.example.org');
    const old = issue(intermediate, { names: DOMAINS, start: '20200101000000Z', end: '20200201000000Z' });
    expect(certificateNeed(env, layout, read(old.cert), NOW)?.reason).toBe('the current one expired on 2020-02-01');
  });

  it('asks again when acme_server names another CA than the one the certificate renews from', () => {
    const conf = (server: string) =>
      `# renew_before_expiry = 30 days\nversion = 2.1.0\n[renewalparams]\naccount = abc\nserver = ${server}\nauthenticator = webroot\n`;
    expect(certificateNeed(env, layout, read(good.cert), NOW, conf(LETS_ENCRYPT_DIRECTORY))).toBeNull();
    const staging = 'https://acme-staging-v02.api.letsencrypt.org/directory';
    expect(certificateNeed(env, layout, read(good.cert), NOW, conf(staging))?.reason).toBe(`the current one comes from ${staging}`);
    expect(certificateNeed({ ...env, acme_server: staging }, layout, read(good.cert), NOW, conf(staging))).toBeNull();
  });

  it('asks again when the current certificate cannot be read, instead of failing', () => {
    const garbage = '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n';
    expect(certificateNeed(env, layout, garbage, NOW)?.reason).toBe('the current one cannot be read');
  });

  it('never asks for other ssl modes', () => {
    expect(certificateNeed({ ...env, ssl: 'self-signed' }, layout, undefined, NOW)).toBeNull();
  });

  it('renders a stand-in ACME block that nginx accepts next to the site, even a default_server one', async () => {
    const defaultEnv = { ...env, nginx: { ...env.nginx, default_server: true } };
    const state = await buildDesiredState(defaultEnv, env.hosts[0]!, { engine: new TemplateEngine('/nonexistent', '/'), facts: { nginxVersion: [1, 22, 1] } });
    // On the server it names only the domains the live site does not answer (here: one added).
    const block = state.acmeStandIn!.replace(STAND_IN_DOMAINS, 'api.shop.example.org');
    expect(block).toContain('server_name api.shop.example.org;');
    expect(block).toContain('location ^~ /.well-known/acme-challenge/');
    const result = await checkNginxSites([...configFilesFor(state, 'nginx'), { path: '/etc/nginx/conf.d/stack-acme-shop.conf', content: block }]);
    // (The harness's placeholder certificate has no OCSP URL: nginx warns about stapling.)
    expect(result.output).not.toMatch(/\[emerg\]|duplicate|conflicting/);
    expect(result.ok).toBe(true);
    const plain = await buildDesiredState({ ...env, ssl: 'none' }, env.hosts[0]!, {
      engine: new TemplateEngine('/nonexistent', '/'),
      facts: { nginxVersion: [1, 22, 1] },
    });
    expect(plain.acmeStandIn).toBeNull();
  });

  it('runs certbot with the webroot, the server, every domain and no secret on its command line', () => {
    const req = certificateNeed({ ...env, acme_server: 'https://ca.internal:14000/dir' }, layout, undefined, NOW)!;
    const script = obtainCertificateScript(req, { layout, lock: null, audit: null }, 'server { server_name STACK_DOMAINS; }\n');
    expect(script).toContain(
      'certbot certonly --non-interactive --agree-tos --no-eff-email --email ops@example.org --server https://ca.internal:14000/dir --webroot -w /var/www/_letsencrypt --cert-name shop.example.org --expand --renew-by-default -d shop.example.org -d www.shop.example.org',
    );
    // The stand-in block goes away on success and on failure.
    expect(script.match(/cleanup/g)!.length).toBeGreaterThanOrEqual(3);
  });
});

describe('stack certs verdicts', () => {
  const b64 = (s: string) => Buffer.from(s).toString('base64');

  it('reports issuer, expiry and days left per domain, and what is wrong', () => {
    const one = issue(intermediate, { names: ['shop.example.org'] });
    const renewed = issue(intermediate, { names: DOMAINS });
    const output = [
      `disk\t${b64(read(renewed.cert))}`,
      `served\tshop.example.org\t${b64(read(good.cert))}`,
      `served\twww.shop.example.org\t${b64(read(one.cert))}`,
      'served\tapi.example.org\t',
      '',
    ].join('\n');
    const rows = judgeCertificates([...DOMAINS, 'api.example.org'], parseCertsOutput(output), NOW);
    expect(rows.map((r) => r.status)).toEqual(['stale', 'wrong name', 'not served']);
    expect(rows[0]!.info!.issuer).toBe('Test Intermediate CA');
    expect(rows[0]!.days).toBeGreaterThanOrEqual(88);
    const table = formatCertificates(rows);
    expect(table.split('\n')[0]).toMatch(/^DOMAIN\s+ISSUER\s+EXPIRES \(UTC\)\s+DAYS LEFT\s+STATUS$/);
    expect(table).toContain('not served: nginx presents no certificate');
  });

  it('says what nginx presents is unreadable rather than failing', () => {
    const output = `served\tshop.example.org\t${b64('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')}\n`;
    expect(judgeCertificates(['shop.example.org'], parseCertsOutput(output), NOW)[0]!.status).toBe('unreadable');
  });

  it('says ok, expires soon and expired', () => {
    const soon = issue(intermediate, { names: DOMAINS, end: `${new Date(Date.now() + 5 * 86_400_000).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z` });
    const old = issue(intermediate, { names: DOMAINS, start: '20200101000000Z', end: '20200201000000Z' });
    const output = (pem: string) => `served\tshop.example.org\t${b64(read(pem))}\n`;
    expect(judgeCertificates(['shop.example.org'], parseCertsOutput(output(good.cert)), NOW)[0]!.status).toBe('ok');
    expect(judgeCertificates(['shop.example.org'], parseCertsOutput(output(soon.cert)), NOW)[0]!.status).toBe('expires soon');
    expect(judgeCertificates(['shop.example.org'], parseCertsOutput(output(old.cert)), NOW)[0]!.status).toBe('expired');
  });
});
