/**
 * Certificates end to end on sandbox servers:
 * - ssl: letsencrypt against a real ACME CA (Pebble, HTTP-01 validation reaching the sandbox's
 *   nginx over the veth): an unreachable CA first (clear error, HTTP site untouched), then the
 *   certificate issued, the chain verified against Pebble's root, a domain added (certificate
 *   extended), a renewal whose hook reloads nginx, `stack certs`, and two TLS scanners;
 * - ssl: { cert, key, chain }: uploaded and served, key private and never printed, bad files
 *   refused before anything changes, a renewed certificate replacing the old one.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { stack } from '../helpers/cli.js';
import { issue, makeCa, read, type Ca } from '../helpers/certs.js';
import { startPebble, type Pebble } from '../helpers/pebble.js';
import { exampleProject } from '../helpers/project.js';
import { bootSandbox, sharedServer, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

/** Edits the test project's inventory (the sbx environment) in place. */
function editEnv(dir: string, change: (env: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'inventory.yml');
  const doc = parse(readFileSync(file, 'utf8'));
  change(doc.environments.sbx);
  writeFileSync(file, stringify(doc));
}

/** GET over plain HTTP to the sandbox, with a Host header. */
function httpGet(address: string, host: string, urlPath: string): Promise<{ status: number; location?: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: address, path: urlPath, headers: { host }, timeout: 10_000 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, location: res.headers.location, body }));
      })
      .on('error', reject);
  });
}

/** GET over HTTPS with SNI `name`, trusting only `ca`: rejects unless the chain verifies. */
function httpsGet(
  address: string,
  name: string,
  urlPath: string,
  ca: string,
): Promise<{ status: number; cert: X509Certificate; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: address, servername: name, path: urlPath, headers: { host: name }, ca, timeout: 10_000, agent: false }, (res) => {
        let body = '';
        const peer = (res.socket as import('node:tls').TLSSocket).getPeerX509Certificate()!;
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, cert: peer, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

async function root(server: SandboxInfo, command: string): Promise<string> {
  const r = await sshExec(server, command, 'root');
  if (r.code !== 0) throw new Error(`${command}: ${r.stderr}`);
  return r.stdout.trim();
}

describe('ssl: letsencrypt with a real ACME CA (Pebble)', () => {
  let server: SandboxInfo;
  let pebble: Pebble;
  let dir: string;
  let pebbleRoot: string;
  const domains = ['app.stack.test', 'www.app.stack.test'];

  beforeAll(async () => {
    server = await bootSandbox('acme');
    pebble = await startPebble(server);
    dir = exampleProject(server, { domain: domains[0] });
    editEnv(dir, (env) => (env.domains = domains));
    expect(stack(['setup', 'sbx'], { cwd: dir }).code).toBe(0);
    expect(stack(['deploy', 'sbx'], { cwd: dir }).code).toBe(0);
    pebbleRoot = await pebble.issuingRoot();
  });
  afterAll(async () => {
    await pebble?.stop();
  });

  it('an unreachable ACME server: one clear error, the HTTP site keeps serving, nothing half-configured', async () => {
    const site = '/etc/nginx/sites-available/hello.conf';
    const before = await root(server, `sha256sum ${site}; ls /etc/nginx/conf.d /etc/nginx/sites-enabled`);
    editEnv(dir, (env) => {
      env.ssl = 'letsencrypt';
      env.email = 'ops@stack.test';
      env.acme_server = `https://${server.hostSideAddress}:1/dir`;
    });
    const r = stack(['deploy', 'sbx'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/obtain certificate/);
    expect(r.stderr).toMatch(/Connection refused|Failed to establish a new connection/);
    expect(r.stderr).toContain("hint: only provisioning ran; the site's configuration and release are untouched and it serves what it served before");
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    expect(await root(server, `sha256sum ${site}; ls /etc/nginx/conf.d /etc/nginx/sites-enabled`)).toBe(before);
    expect(await root(server, 'ls /etc/letsencrypt/live 2>/dev/null | wc -l')).toBe('0');
    const page = await httpGet(server.address, domains[0]!, '/health');
    expect(page.status).toBe(200);
    expect(await root(server, 'ls /var/lib/stack')).not.toContain('hello.lock');
  });

  it('obtains the certificate over HTTP-01, then serves HTTPS with a chain that verifies against Pebble', async () => {
    editEnv(dir, (env) => (env.acme_server = pebble.directory));
    const dry = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir });
    expect(dry.stdout + dry.stderr).toContain(`obtain a certificate for ${domains.join(', ')} from ${pebble.directory} (no certificate yet)`);
    const r = stack(['deploy', 'sbx'], { cwd: dir });
    expect(r.code, `${r.stderr}\n${pebble.log().slice(-3000)}`).toBe(0);
    for (const name of domains) {
      const res = await httpsGet(server.address, name, '/health', pebbleRoot);
      expect(res.cert.checkHost(name)).toBe(name);
      expect(res.cert.issuer).toMatch(/Pebble Intermediate/);
      if (name === domains[0]) {
        expect(res.status).toBe(200);
        expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      } else expect(res.status).toBe(301);
    }
    const plain = await httpGet(server.address, domains[0]!, '/health');
    expect(plain.status).toBe(301);
    expect(plain.location).toBe(`https://${domains[0]}/health`);
    const acme = await httpGet(server.address, domains[0]!, '/.well-known/acme-challenge/nothing-here');
    expect(acme.status).toBe(404);
    expect(await root(server, 'stat -c %a:%U /etc/letsencrypt/renewal-hooks/deploy/stack-reload-nginx; ls /etc/nginx/conf.d')).toBe('755:root');
    expect(await root(server, 'systemctl is-enabled certbot.timer; systemctl is-active certbot.timer')).toBe('enabled\nactive');
    // Nothing left to do: the next deploy does not ask the CA again.
    const again = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir });
    expect(again.code).toBe(0);
    expect(again.stdout + again.stderr).not.toContain('obtain a certificate');
  });

  it('extends the certificate when a domain is added', async () => {
    const added = 'api.app.stack.test';
    editEnv(dir, (env) => (env.domains = [...domains, added]));
    const dry = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir });
    expect(dry.stdout + dry.stderr).toContain(`(the current one does not cover ${added})`);
    const r = stack(['deploy', 'sbx'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const res = await httpsGet(server.address, added, '/health', pebbleRoot);
    expect(res.cert.checkHost(added)).toBe(added);
    expect(res.cert.checkHost(domains[1]!)).toBe(domains[1]);
  });

  it('renews with certbot (as its timer does), and the deploy hook reloads nginx onto the new certificate', async () => {
    const before = await httpsGet(server.address, domains[0]!, '/health', pebbleRoot);
    const workersBefore = await root(server, "pgrep -f '^nginx: worker process$' | sort");
    await root(server, 'certbot renew --force-renewal --no-random-sleep-on-renew --quiet');
    // `systemctl reload nginx` returns before the new workers serve: poll, for 10 s at most.
    let after = await httpsGet(server.address, domains[0]!, '/health', pebbleRoot);
    for (let i = 0; i < 50 && after.cert.serialNumber === before.cert.serialNumber; i++) {
      await new Promise((r) => setTimeout(r, 200));
      after = await httpsGet(server.address, domains[0]!, '/health', pebbleRoot);
    }
    expect(after.cert.serialNumber).not.toBe(before.cert.serialNumber);
    expect(after.status).toBe(200);
    expect(await root(server, "pgrep -f '^nginx: worker process$' | sort")).not.toBe(workersBefore);
  });

  it('setup obtains a missing certificate too, and nginx serves it', async () => {
    const before = await httpsGet(server.address, domains[0]!, '/health', pebbleRoot);
    await root(server, `certbot delete --non-interactive --cert-name ${domains[0]}`);
    const dry = stack(['setup', 'sbx', '--dry-run'], { cwd: dir });
    expect(dry.stdout + dry.stderr).toContain('(no certificate yet)');
    const r = stack(['setup', 'sbx'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const after = await httpsGet(server.address, domains[0]!, '/health', pebbleRoot);
    expect(after.cert.serialNumber).not.toBe(before.cert.serialNumber);
    expect(after.cert.checkHost('api.app.stack.test')).toBe('api.app.stack.test');
  });

  it('stack certs shows each domain with its issuer, expiry and days left', () => {
    const r = stack(['certs', 'sbx'], { cwd: dir });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const d of [...domains, 'api.app.stack.test'])
      expect(r.stdout).toMatch(
        new RegExp(`^${d.replace(/\./g, '\\.')}\\s+Pebble Intermediate CA \\S+\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d\\s+\\d+\\s+ok$`, 'm'),
      );
  });

  it('passes sslscan: no SSLv3, TLS 1.0 or 1.1, no weak ciphers', () => {
    const r = spawnSync('sslscan', ['--no-colour', `--sni-name=${domains[0]}`, `${server.address}:443`], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout;
    for (const off of ['SSLv2', 'SSLv3', 'TLSv1.0', 'TLSv1.1']) expect(out).toMatch(new RegExp(`^${off.replace('.', '\\.')}\\s+disabled`, 'm'));
    for (const on of ['TLSv1.2', 'TLSv1.3']) expect(out).toMatch(new RegExp(`^${on.replace('.', '\\.')}\\s+enabled`, 'm'));
    const accepted = out.split('\n').filter((l) => /^(Preferred|Accepted)\s/.test(l));
    expect(accepted.length).toBeGreaterThan(0);
    for (const l of accepted) expect(l).not.toMatch(/RC4|DES|NULL|EXP|MD5|anon|CBC|SHA(?!256|384)\b/);
    console.log(
      `sslscan ${server.address} (${domains[0]}):\n${out
        .split('\n')
        .filter((l) => /^(SSLv|TLSv|Preferred|Accepted)/.test(l))
        .join('\n')}`,
    );
  });

  it('passes testssl.sh: protocols, cipher categories and HSTS', () => {
    const json = path.join(mkdtempSync(path.join(tmpdir(), 'stack-testssl-')), 'out.json');
    const r = spawnSync(
      'testssl',
      ['--quiet', '--color', '0', '--nodns', 'none', '--ip', server.address, '-p', '-s', '-h', '--jsonfile', json, `https://${domains[0]}/`],
      {
        encoding: 'utf8',
        timeout: 600_000,
      },
    );
    expect(r.status === 0 || r.status! < 200, r.stdout.slice(-2000)).toBe(true);
    const findings = JSON.parse(readFileSync(json, 'utf8')) as { id: string; severity: string; finding: string }[];
    const finding = (id: string) => findings.find((f) => f.id === id)?.finding ?? `(no ${id})`;
    for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) expect(finding(id)).toMatch(/^not offered/);
    expect(finding('TLS1_2')).toMatch(/^offered/);
    expect(finding('TLS1_3')).toMatch(/^offered/);
    for (const id of ['cipherlist_NULL', 'cipherlist_aNULL', 'cipherlist_EXPORT', 'cipherlist_LOW', 'cipherlist_3DES_IDEA', 'cipherlist_AVERAGE'])
      expect(finding(id)).toMatch(/^not offered/);
    expect(finding('cipherlist_STRONG')).toMatch(/^offered/);
    expect(finding('HSTS_time')).toMatch(/\(=31536000 seconds\)/);
    const bad = findings.filter((f) => ['HIGH', 'CRITICAL'].includes(f.severity));
    expect(bad).toEqual([]);
    const summary = [
      'SSLv2',
      'SSLv3',
      'TLS1',
      'TLS1_1',
      'TLS1_2',
      'TLS1_3',
      'cipherlist_NULL',
      'cipherlist_aNULL',
      'cipherlist_EXPORT',
      'cipherlist_LOW',
      'cipherlist_3DES_IDEA',
      'cipherlist_AVERAGE',
      'cipherlist_STRONG',
      'HSTS_time',
    ]
      .map((id) => `${id}: ${finding(id)}`)
      .join('\n');
    const severities: Record<string, number> = {};
    for (const f of findings) severities[f.severity] = (severities[f.severity] ?? 0) + 1;
    console.log(`testssl.sh ${server.address} (${domains[0]}):\n${summary}\nfindings by severity: ${JSON.stringify(severities)}`);
  });
});

// On the shared server, as the app `shop` of its own domain.
describe('ssl: { cert, key, chain } uploaded from the project', () => {
  const app = 'shop';
  let server: SandboxInfo;
  let dir: string;
  let rootCa: Ca;
  let intermediate: Ca;
  const domain = 'shop.stack.test';

  function useFiles(cert: string, key: string): void {
    copyFileSync(cert, path.join(dir, 'cert.pem'));
    copyFileSync(key, path.join(dir, 'key.pem'));
  }

  beforeAll(async () => {
    server = await sharedServer();
    rootCa = makeCa('Shop Root CA');
    intermediate = makeCa('Shop Intermediate CA', rootCa);
    dir = exampleProject(server, { name: app, domain });
    copyFileSync(intermediate.cert, path.join(dir, 'chain.pem'));
    const first = issue(intermediate, { names: [domain] });
    useFiles(first.cert, first.key);
    editEnv(dir, (env) => (env.ssl = { cert: 'cert.pem', key: 'key.pem', chain: 'chain.pem' }));
    expect(stack(['setup', 'sbx'], { cwd: dir }).code).toBe(0);
  });

  it('uploads the certificate and its chain, keeps the key private, never prints it, and serves HTTPS', async () => {
    const key = read(path.join(dir, 'key.pem'));
    const secretLine = key.split('\n')[1]!;
    const dry = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir });
    expect(dry.stdout + dry.stderr).toContain(`new file /etc/ssl/stack/${app}/privkey.pem (0600 root:root)`);
    const r = stack(['deploy', 'sbx'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    for (const out of [dry.stdout, dry.stderr, r.stdout, r.stderr]) expect(out).not.toContain(secretLine);
    expect(await root(server, `stat -c %a:%U:%G /etc/ssl/stack/${app}/privkey.pem`)).toBe('600:root:root');
    const res = await httpsGet(server.address, domain, '/health', read(rootCa.cert));
    expect(res.status).toBe(200);
    expect(res.cert.checkIssued(new X509Certificate(read(intermediate.cert)))).toBe(true);
    const certs = stack(['certs', 'sbx'], { cwd: dir });
    expect(certs.stdout).toMatch(new RegExp(`^${domain.replace(/\./g, '\\.')}\\s+Shop Intermediate CA .*\\s+ok$`, 'm'));
  });

  it('refuses a mismatched key, an expired certificate and a missing file before anything changes', async () => {
    const good = { cert: read(path.join(dir, 'cert.pem')), key: read(path.join(dir, 'key.pem')) };
    const before = await root(server, `sha256sum /etc/ssl/stack/${app}/*.pem; wc -l < /var/log/stack/${app}.log`);
    const stranger = issue(intermediate, { names: [domain] });
    const expired = issue(intermediate, { names: [domain], start: '20200101000000Z', end: '20200201000000Z' });
    const cases: [() => void, RegExp][] = [
      [() => copyFileSync(stranger.key, path.join(dir, 'key.pem')), /environments\.sbx\.ssl\.key: key\.pem: does not match the certificate/],
      [() => useFiles(expired.cert, expired.key), /environments\.sbx\.ssl\.cert: cert\.pem: expired on 2020-02-01/],
      [() => editEnv(dir, (env) => ((env.ssl as Record<string, string>).chain = 'missing.pem')), /environments\.sbx\.ssl\.chain: missing\.pem: no such file/],
    ];
    for (const [breakIt, message] of cases) {
      breakIt();
      const r = stack(['deploy', 'sbx'], { cwd: dir });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^error: inventory\.yml:\d+:\d+: /);
      expect(r.stderr).toMatch(message);
      writeFileSync(path.join(dir, 'cert.pem'), good.cert);
      writeFileSync(path.join(dir, 'key.pem'), good.key);
      editEnv(dir, (env) => ((env.ssl as Record<string, string>).chain = 'chain.pem'));
    }
    expect(await root(server, `sha256sum /etc/ssl/stack/${app}/*.pem; wc -l < /var/log/stack/${app}.log`)).toBe(before);
  });

  it('replaces the certificate when a renewed one is given: the key change is reported, not shown', async () => {
    const renewed = issue(intermediate, { names: [domain] });
    useFiles(renewed.cert, renewed.key);
    const dry = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir });
    expect(dry.stdout + dry.stderr).toMatch(
      new RegExp(`changed /etc/ssl/stack/${app}/privkey\\.pem\\n\\s+\\(only secret values differ; they are not shown\\)`),
    );
    expect(dry.stdout + dry.stderr).not.toContain(read(renewed.key).split('\n')[1]!);
    expect(stack(['deploy', 'sbx'], { cwd: dir }).code).toBe(0);
    const res = await httpsGet(server.address, domain, '/health', read(rootCa.cert));
    expect(res.cert.serialNumber).toBe(new X509Certificate(read(renewed.cert)).serialNumber);
  });
});
