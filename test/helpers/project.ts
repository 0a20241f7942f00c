/** A throwaway copy of the example project whose inventory points at a sandbox server. */
import { chmodSync, cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { ROOT } from './cli.js';
import type { SandboxInfo } from './sandbox.js';

export interface ProjectOptions {
  gateway?: 'gunicorn' | 'uwsgi';
  ssl?: 'none' | 'self-signed';
  /** Leave out host_key, to meet a server for the first time. */
  pin?: boolean | string;
  /** Replaces the host entry (and the domain) entirely. */
  host?: Record<string, unknown>;
  domain?: string;
  hooks?: Record<string, string[]>;
}

export function exampleProject(server: SandboxInfo, o: ProjectOptions = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-project-'));
  cpSync(path.join(ROOT, 'example'), path.join(dir, 'example'), { recursive: true });
  const inventory = {
    app: {
      name: 'hello',
      source: 'example',
      wsgi: 'hello.wsgi:application',
      requirements: 'requirements.txt',
      static: { url: '/static/', path: 'static' },
      health: '/health',
      env: { GREETING: 'Hello' },
      secrets: ['SECRET_KEY'],
    },
    gateway: { server: o.gateway ?? 'gunicorn', workers: 2 },
    ...(o.hooks ? { hooks: o.hooks } : {}),
    environments: {
      sbx: {
        domains: [o.domain ?? server.address],
        ssl: o.ssl ?? 'none',
        hosts: [
          o.host ?? {
            address: server.address,
            user: 'deploy',
            ...(o.pin === false ? {} : { host_key: typeof o.pin === 'string' ? o.pin : server.hostKey }),
            identity_file: server.identityFile,
          },
        ],
      },
    },
  };
  writeFileSync(path.join(dir, 'inventory.yml'), `# test project\n${stringify(inventory)}`);
  mkdirSync(path.join(dir, '.stack'));
  writeFileSync(path.join(dir, '.stack/secrets.sbx'), 'SECRET_KEY=s3cr3t-value-never-printed\n');
  chmodSync(path.join(dir, '.stack/secrets.sbx'), 0o600);
  return dir;
}
