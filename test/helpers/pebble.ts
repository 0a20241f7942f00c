/**
 * A real ACME CA for tests: Pebble (Debian's `pebble`), on the host's end of a sandbox's veth,
 * with pebble-challtestsrv as its DNS server answering every name with the sandbox's address.
 * HTTP-01 validation therefore reaches the sandbox's nginx on port 80, exactly as a public CA
 * would reach a public server. Nothing listens beyond 169.254.N.1.
 *
 * Pebble's own HTTPS API needs a certificate: a CA made here with openssl issues it, and the
 * sandbox is made to trust that CA (as a server using a private ACME CA would be).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import https from 'node:https';
import { issue, makeCa, read } from './certs.js';
import { sshExec, type SandboxInfo } from './sandbox.js';

export interface Pebble {
  /** The ACME directory URL, for `acme_server:`. */
  directory: string;
  /** The PEM of the root Pebble issues certificates under (fetched from its management API). */
  issuingRoot: () => Promise<string>;
  /** Output of both processes so far, for failure messages. */
  log: () => string;
  stop: () => Promise<void>;
}

async function waitForPort(host: string, port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startPebble(server: SandboxInfo): Promise<Pebble> {
  const host = server.hostSideAddress;
  if (!/^169\.254\./.test(host)) throw new Error(`Pebble only runs on a sandbox veth, not ${host}`);
  const apiCa = makeCa('Pebble API test CA');
  const apiCert = issue(apiCa, { names: [host] });
  const config = path.join(apiCa.dir, 'pebble.json');
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `${host}:14000`,
        managementListenAddress: `${host}:15000`,
        certificate: apiCert.cert,
        privateKey: apiCert.key,
        // Where validation connects on the server named in the order: its nginx.
        httpPort: 80,
        tlsPort: 443,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  let output = '';
  const children: ChildProcess[] = [];
  const start = (cmd: string, args: string[], env: Record<string, string> = {}) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    children.push(child);
    return child;
  };
  const stop = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
  };
  try {
    start('pebble-challtestsrv', [
      '-defaultIPv4',
      server.address,
      '-defaultIPv6',
      '',
      '-dns01',
      `${host}:8053`,
      '-http01',
      '',
      '-https01',
      '',
      '-tlsalpn01',
      '',
      '-management',
      `${host}:8055`,
    ]);
    await waitForPort(host, 8055, 10_000);
    // No sleeps before validation, and no nonce rejections: fast, deterministic runs.
    start('pebble', ['-config', config, '-dnsserver', `${host}:8053`], { PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0' });
    await waitForPort(host, 14000, 10_000);
    const trust = await sshExec(
      server,
      `printf '%s' '${read(apiCa.cert)}' > /usr/local/share/ca-certificates/stack-test-acme.crt && update-ca-certificates >/dev/null`,
      'root',
    );
    if (trust.code !== 0) throw new Error(`could not make the sandbox trust the test CA: ${trust.stderr}`);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${output}`);
  }
  return {
    directory: `https://${host}:14000/dir`,
    issuingRoot: () =>
      new Promise((resolve, reject) => {
        https
          .get(`https://${host}:15000/roots/0`, { ca: read(apiCa.cert) }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`roots/0: ${res.statusCode}`))));
          })
          .on('error', reject);
      }),
    log: () => output,
    stop,
  };
}
