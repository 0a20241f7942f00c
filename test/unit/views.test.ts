/** The decisions the views make, table by table. Pure code: no files, no processes. */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseInventory } from '../../src/inventory/load.js';
import { nginxSiteView } from '../../src/views/nginx.js';
import { appUnitView, gunicornView, uwsgiView } from '../../src/views/gateway.js';
import { layoutFor } from '../../src/views/layout.js';
import type { HostFacts } from '../../src/views/facts.js';

function env(overrides: { app?: object; gateway?: object; nginx?: object; env?: object } = {}) {
  const doc = {
    app: { name: 'blog', wsgi: 'blog.wsgi:application', ...overrides.app },
    gateway: { server: 'gunicorn', ...overrides.gateway },
    nginx: { ...overrides.nginx },
    environments: { prod: { domains: ['blog.example.com', 'www.blog.example.com'], hosts: [{ address: '192.0.2.1' }], ...overrides.env } },
  };
  return parseInventory(stringify(doc), 'inventory.yml').environments.prod!;
}

const bookworm: HostFacts = { nginxVersion: [1, 22, 1] };

describe('nginx site view', () => {
  it.each([
    { version: [1, 22, 1], listen: '443 ssl http2', directive: false },
    { version: [1, 25, 0], listen: '443 ssl http2', directive: false },
    { version: [1, 25, 1], listen: '443 ssl', directive: true },
    { version: [1, 27, 3], listen: '443 ssl', directive: true },
  ] as const)('nginx $version: listen "$listen", http2 directive $directive', ({ version, listen, directive }) => {
    const e = env({ env: { ssl: 'self-signed' } });
    const site = nginxSiteView(e, layoutFor(e.app, e.gateway), { nginxVersion: [...version] });
    expect(site.listenHttps[0]).toBe(listen);
    expect(site.http2Directive).toBe(directive);
  });

  it.each([
    { ssl: 'none', tls: false, stapling: false, chain: null },
    { ssl: 'self-signed', tls: true, stapling: false, chain: null },
    { ssl: 'letsencrypt', tls: true, stapling: true, chain: '/etc/letsencrypt/live/blog.example.com/chain.pem' },
    { ssl: { cert: 'c.pem', key: 'k.pem' }, tls: true, stapling: false, chain: null },
    { ssl: { cert: 'c.pem', key: 'k.pem', chain: 'ch.pem' }, tls: true, stapling: true, chain: '/etc/ssl/stack/blog/chain.pem' },
  ])('ssl $ssl: tls $tls, stapling $stapling', ({ ssl, tls, stapling, chain }) => {
    const e = env({ env: { ssl, email: 'ops@example.com' } });
    const site = nginxSiteView(e, layoutFor(e.app, e.gateway), bookworm);
    expect(site.tls !== null).toBe(tls);
    expect(site.tls?.stapling ?? false).toBe(stapling);
    expect(site.tls?.trustedCertificate ?? null).toBe(chain);
    expect(site.hsts !== null).toBe(tls);
    expect(site.canonical).toBe('blog.example.com');
    expect(site.aliases).toEqual(['www.blog.example.com']);
  });

  it('uses only TLS 1.2 and 1.3 with forward-secret AEAD ciphers', () => {
    const e = env({ env: { ssl: 'self-signed' } });
    const tls = nginxSiteView(e, layoutFor(e.app, e.gateway), bookworm).tls!;
    expect(tls.protocols).toBe('TLSv1.2 TLSv1.3');
    for (const cipher of tls.ciphers.split(':')) expect(cipher).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
  });

  it('proxies to the socket of the chosen gateway, with a read timeout above the gateway timeout', () => {
    for (const server of ['gunicorn', 'uwsgi']) {
      const e = env({ gateway: { server, timeout: 45 } });
      const site = nginxSiteView(e, layoutFor(e.app, e.gateway), bookworm);
      expect(site.upstreamServer).toBe(`unix:/run/blog/${server}.sock`);
      expect(site.readTimeout).toBeGreaterThan(45);
    }
  });
});

describe('gateway views', () => {
  it.each([
    { workers: 'auto', cpus: undefined, gunicorn: 'multiprocessing.cpu_count() * 2 + 1', uwsgi: '%(%k * 2 + 1)' },
    { workers: 'auto', cpus: 4, gunicorn: '9', uwsgi: '9' },
    { workers: 3, cpus: 16, gunicorn: '3', uwsgi: '3' },
  ])('workers $workers with $cpus CPUs', ({ workers, cpus, gunicorn, uwsgi }) => {
    const e = env({ gateway: { workers } });
    const layout = layoutFor(e.app, e.gateway);
    expect(gunicornView(e, layout, { ...bookworm, cpus }).workers).toBe(gunicorn);
    expect(uwsgiView(e, layout, { ...bookworm, cpus }).processes).toBe(uwsgi);
  });

  it('runs the app as its own user, never root', () => {
    for (const server of ['gunicorn', 'uwsgi'] as const) {
      const e = env({ gateway: { server } });
      const unit = appUnitView(e, layoutFor(e.app, e.gateway));
      expect(unit.user).toBe('blog');
      expect(unit.user).not.toBe('root');
      expect(unit.notifyAccess).toBe(server === 'uwsgi' ? 'all' : 'main');
      expect(unit.execStart.startsWith('/')).toBe(true);
    }
  });

  it('lets the app write to shared/ and its media folder only', () => {
    const e = env({ app: { media: { url: '/media/', path: '/srv/blog/media' } } });
    expect(appUnitView(e, layoutFor(e.app, e.gateway)).readWritePaths).toEqual(['/srv/blog/shared', '/srv/blog/media']);
  });
});

describe('environment overrides', () => {
  it('lays an environment section over the top-level one, key by key', () => {
    const e = env({ gateway: { workers: 7 }, env: { gateway: { server: 'uwsgi' } } });
    expect(e.gateway.server).toBe('uwsgi');
    expect(e.gateway.workers).toBe(7);
    expect(e.gateway.timeout).toBe(30);
  });
});
