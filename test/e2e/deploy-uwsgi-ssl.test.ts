/**
 * The other half of the matrix: uWSGI behind nginx over HTTPS with a self-signed certificate
 * generated on the server once and kept across deploys. On the shared server, as the app `tls`
 * of its own domain, which every request names. Runs once per tested Debian release (see
 * vitest.config.ts).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { stack } from '../helpers/cli.js';
import { exampleProject } from '../helpers/project.js';
import { sharedServer, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

const APP = 'tls';
const DOMAIN = 'tls.stack.test';
let server: SandboxInfo;
let dir: string;

/** curl options that send DOMAIN's requests to the server. */
const toServer = () => ['--resolve', `${DOMAIN}:80:${server.address}`, '--resolve', `${DOMAIN}:443:${server.address}`];

async function curl(...args: string[]): Promise<string> {
  return (await runProgram('curl', ['-s', '--max-time', '10', ...toServer(), ...args], 15_000)).stdout;
}

beforeAll(async () => {
  server = await sharedServer();
  dir = exampleProject(server, { name: APP, domain: DOMAIN, gateway: 'uwsgi', ssl: 'self-signed' });
});

describe('uWSGI with a self-signed certificate', () => {
  it('sets up and deploys; the app answers over HTTPS through nginx', async () => {
    expect(stack(['setup', 'sbx'], { cwd: dir }).code).toBe(0);
    const r = stack(['deploy', 'sbx'], { cwd: dir });
    expect(r.stderr).toMatch(/health 200/);
    expect(r.code).toBe(0);
    const body = await curl('-k', `https://${DOMAIN}/health`);
    expect(JSON.parse(body)).toMatchObject({ status: 'ok' });
    expect(await (await sshExec(server, `systemctl show -p StatusText --value ${APP}`)).stdout).toMatch(/uWSGI/i);
  });

  it('keeps the uWSGI unit as hardened as before (systemd-analyze security at most 3.2)', async () => {
    const out = (await sshExec(server, `systemd-analyze security ${APP}.service --no-pager | tail -n 1`, 'root')).stdout.trim();
    process.stderr.write(`[uwsgi] ${out}\n`);
    expect(Number(out.match(new RegExp(`exposure level for ${APP}\\.service: ([\\d.]+)`))?.[1])).toBeLessThanOrEqual(3.2);
  });

  it('redirects HTTP to HTTPS but keeps the ACME challenge path on port 80', async () => {
    const head = await curl('-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', `http://${DOMAIN}/some/page?x=1`);
    expect(head).toBe(`301 https://${DOMAIN}/some/page?x=1`);
    await sshExec(
      server,
      `sudo install -d /var/www/_letsencrypt/.well-known/acme-challenge && echo token-body | sudo tee /var/www/_letsencrypt/.well-known/acme-challenge/${APP} >/dev/null`,
    );
    expect((await curl(`http://${DOMAIN}/.well-known/acme-challenge/${APP}`)).trim()).toBe('token-body');
  });

  it('passes nginx -t without a warning, and serves HTTP/2 (nginx 1.25+ wants `http2 on;`, older ones `listen ... http2`)', async () => {
    const t = await sshExec(server, 'sudo nginx -t 2>&1');
    expect(t.code, t.stdout).toBe(0);
    // Only this app's: other apps on the shared server may warn about their own certificates
    // (a test CA without an OCSP responder).
    const warnings = t.stdout.split('\n').filter((l) => l.includes('[warn]') && (l.includes(`/${APP}.conf`) || l.includes(`/${APP}/`) || l.includes('http2')));
    expect(warnings).toEqual([]);
    const version = await runProgram(
      'curl',
      ['-s', '-k', ...toServer(), '--http2', '-o', '/dev/null', '-w', '%{http_version}', `https://${DOMAIN}/health`],
      15_000,
    );
    expect(version.stdout).toBe('2');
  });

  it('speaks only TLS 1.2 and 1.3, with HSTS', async () => {
    const headers = await curl('-k', '-I', `https://${DOMAIN}/`);
    expect(headers).toMatch(/strict-transport-security: max-age=31536000/i);
    const tls11 = await runProgram('curl', ['-s', '-k', ...toServer(), '--tlsv1.1', '--tls-max', '1.1', '-o', '/dev/null', `https://${DOMAIN}/`], 15_000);
    expect(tls11.code).not.toBe(0);
    const tls12 = await runProgram(
      'curl',
      ['-s', '-k', ...toServer(), '--tlsv1.2', '--tls-max', '1.2', '-o', '/dev/null', '-w', '%{http_code}', `https://${DOMAIN}/health`],
      15_000,
    );
    expect(tls12.stdout).toBe('200');
  });

  it('keeps the certificate and changes nothing on the next deploy', async () => {
    const cert = async () => (await sshExec(server, `sudo sha256sum /etc/ssl/stack/${APP}/selfsigned.crt`)).stdout;
    const before = await cert();
    const r = stack(['deploy', 'sbx'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/done: changed 0 things/);
    expect(await cert()).toBe(before);
    expect((await sshExec(server, `sudo stat -c "%a %U" /etc/ssl/stack/${APP}/selfsigned.key`)).stdout.trim()).toBe('600 root');
  });
});
