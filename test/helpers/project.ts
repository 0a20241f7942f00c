/** A throwaway copy of the example project whose inventory points at a sandbox server. */
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { expect } from 'vitest';
import { ROOT, stack, type CliResult } from './cli.js';
import type { SandboxInfo } from './sandbox.js';

/** The example project's secret value: no output of stack may ever contain it. */
export const PROJECT_SECRET = 's3cr3t-value-never-printed';

/** stack run in a project folder, checked never to print the project's secret. */
export function stackIn(dir: string, args: string[]): CliResult {
  const r = stack(args, { cwd: dir });
  expect(r.stdout + r.stderr).not.toContain(PROJECT_SECRET);
  return r;
}

export interface ProjectOptions {
  /** The app's name (hello); each app on the shared server has its own. */
  name?: string;
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
      name: o.name ?? 'hello',
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
  writeFileSync(path.join(dir, '.stack/secrets.sbx'), `SECRET_KEY=${PROJECT_SECRET}\n`);
  chmodSync(path.join(dir, '.stack/secrets.sbx'), 0o600);
  return dir;
}

/** Edits a project's inventory.yml as a user would: parsed, changed, written back. */
// biome-ignore lint/suspicious/noExplicitAny: the parsed inventory is edited freely, like a user would
export function editInventory(dir: string, change: (doc: Record<string, any>) => void): void {
  const file = path.join(dir, 'inventory.yml');
  const doc = parse(readFileSync(file, 'utf8'));
  change(doc);
  writeFileSync(file, stringify(doc));
}
