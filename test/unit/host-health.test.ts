/**
 * Which health check each host of several runs, and the shell that carries it out: a web host
 * whose nginx balances over other app hosts asks its own gateway first (else another host's 200
 * would pass a broken app here); an app host without nginx asks its gateway's TCP port (gunicorn
 * speaks HTTP there, uWSGI does not); worker and db hosts serve nothing to ask.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { hostHealthCheck } from '../../src/apply/deploy-host.js';
import { healthConfig } from '../../src/apply/scripts.js';
import { parseInventory } from '../../src/inventory/load.js';
import { layoutFor } from '../../src/views/layout.js';
import { GATEWAY_PORT, topologyOf } from '../../src/views/topology.js';

const PROJECT = mkdtempSync(path.join(tmpdir(), 'stack-host-health-'));

function envOf(server: 'gunicorn' | 'uwsgi', hosts: object[]) {
  const doc = {
    app: { name: 'shop', wsgi: 'shop.wsgi:application', health: '/health' },
    gateway: { server },
    environments: { prod: { domains: ['shop.example.com'], ssl: 'none', hosts } },
  };
  return parseInventory(stringify(doc), path.join(PROJECT, 'inventory.yml')).environments.prod!;
}

function checks(server: 'gunicorn' | 'uwsgi', hosts: object[]) {
  const env = envOf(server, hosts);
  const layout = layoutFor(env.app, env.gateway);
  return { layout, at: (i: number) => hostHealthCheck(env, false, layout, topologyOf(env, env.hosts[i]!)) };
}

describe('the health check of a host among several', () => {
  const balanced = [
    { address: '10.0.0.1', roles: ['web', 'app'] },
    { address: '10.0.0.2', roles: ['web', 'app'] },
  ];

  it('a web+app host balancing over another app host asks its own gunicorn socket too', () => {
    const { layout, at } = checks('gunicorn', balanced);
    const check = at(0)!;
    expect(check.socket).toBe(layout.socket);
    const config = healthConfig(check);
    expect(config).toContain(`HEALTH_SOCKET=${layout.socket}`);
    expect(config).toContain('HEALTH_SOCKET_URL=http://shop.example.com/health');
  });

  it('one server, or identical servers each on its own: nginx alone, as always', () => {
    expect(checks('gunicorn', [{ address: '10.0.0.1' }]).at(0)!.socket).toBeUndefined();
    expect(checks('gunicorn', [{ address: '10.0.0.1' }, { address: '10.0.0.2' }]).at(1)!.socket).toBeUndefined();
  });

  it('uWSGI: its socket speaks uwsgi, not HTTP: through nginx only; an app-only host has none', () => {
    expect(checks('uwsgi', balanced).at(0)!.socket).toBeUndefined();
    const split = checks('uwsgi', [
      { address: '10.0.0.1', roles: ['web'] },
      { address: '10.0.0.2', roles: ['app'] },
    ]);
    expect(split.at(1)).toBeNull();
  });

  it('an app host without nginx and gunicorn: the gateway on its TCP port', () => {
    const split = checks('gunicorn', [
      { address: '10.0.0.1', roles: ['web'] },
      { address: '10.0.0.2', roles: ['app'] },
    ]);
    expect(split.at(1)!.via).toEqual({ address: '10.0.0.2', port: GATEWAY_PORT });
  });
});

describe('health_answers under dash', () => {
  /** lib.sh's health functions with curl and systemctl replaced by recorders. */
  function run(env: Record<string, string>, answers: { socket: string; nginx: string }): { code: number; out: string; calls: string } {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-health-sh-'));
    const log = path.join(dir, 'calls');
    const curl = path.join(dir, 'curl');
    writeFileSync(
      curl,
      `#!/bin/sh\necho "curl $*" >>${log}\ncase "$*" in *--unix-socket*) printf %s ${answers.socket} ;; *) printf %s ${answers.nginx} ;; esac\n`,
    );
    chmodSync(curl, 0o755);
    const systemctl = path.join(dir, 'systemctl');
    writeFileSync(systemctl, '#!/bin/sh\ncase "$*" in show*) echo 0 ;; is-failed*) exit 1 ;; esac\n');
    chmodSync(systemctl, 0o755);
    const lib = readFileSync(path.resolve('src/remote/sh/lib.sh'), 'utf8');
    const fn = (name: string) => lib.slice(lib.indexOf(`${name}() {`), lib.indexOf('\n}\n', lib.indexOf(`${name}() {`)) + 3);
    const script = `${fn('check_health')}\n${fn('health_answers')}\nhealth_answers; echo "rc=$? code=$code"\n`;
    const r = spawnSync('dash', ['-c', script], {
      env: {
        PATH: `${dir}:/usr/bin:/bin`,
        HEALTH_URL: 'http://shop.example.com/health',
        HEALTH_RESOLVE: 'shop.example.com:80:127.0.0.1',
        HEALTH_STATUS: '200',
        HEALTH_TIMEOUT: '1',
        HEALTH_RETRIES: '2',
        HEALTH_UNIT: 'shop.service',
        ...env,
      },
      encoding: 'utf8',
    });
    let calls = '';
    try {
      calls = readFileSync(log, 'utf8');
    } catch {
      // no call
    }
    return { code: r.status ?? -1, out: r.stdout.trim(), calls };
  }
  const socket = { HEALTH_SOCKET: '/run/shop/gunicorn.sock', HEALTH_SOCKET_URL: 'http://shop.example.com/health' };

  it('a broken app here fails though nginx (another host) answers 200', () => {
    const r = run(socket, { socket: '502', nginx: '200' });
    expect(r.out).toBe("rc=1 code=502 (from this host's own gateway)");
    expect(r.calls).toContain('--unix-socket /run/shop/gunicorn.sock http://shop.example.com/health');
  });

  it('both answering: healthy, the socket asked first, then nginx', () => {
    const r = run(socket, { socket: '200', nginx: '200' });
    expect(r.out).toBe('rc=0 code=200');
    expect(r.calls.split('\n')[0]).toContain('--unix-socket');
    expect(r.calls).toContain('--resolve shop.example.com:80:127.0.0.1 http://shop.example.com/health');
  });

  it('without a socket: nginx alone, as on one server', () => {
    const r = run({}, { socket: '502', nginx: '200' });
    expect(r.out).toBe('rc=0 code=200');
    expect(r.calls).not.toContain('--unix-socket');
  });
});
