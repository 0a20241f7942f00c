/**
 * vitest globalSetup: builds (or finds) the sandbox root filesystems (one per Debian release)
 * once, before any test file runs, so parallel files never race to build them and no test's
 * timeout includes a debootstrap.
 * It also serves the shared server (test/helpers/shared-server.ts), booted when a file first
 * asks for it and stopped, by name, when the run ends.
 */
import type { TestProject } from 'vitest/node';
import { StackError } from '../src/errors.js';
import { RELEASES, type Release } from '../src/sandbox/releases.js';
import { ensureRootfs } from '../src/sandbox/rootfs.js';
import { preflight } from '../src/sandbox/sandbox.js';
import { serveSharedServer } from './helpers/shared-server.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  try {
    preflight();
  } catch (err) {
    if (err instanceof StackError) {
      throw new Error(`end-to-end tests boot sandbox servers, and this machine cannot: ${err.message}${err.hint ? `\n  ${err.hint}` : ''}`);
    }
    throw err;
  }
  // One after the other: two debootstraps at once would only share the network and the disk.
  for (const release of Object.keys(RELEASES) as Release[]) {
    const started = Date.now();
    const rootfs = await ensureRootfs(release, (line) => {
      if (/^(building|waiting|root filesystem)/.test(line)) process.stderr.write(`[sandbox] ${line}\n`);
    });
    if (Date.now() - started > 1000) process.stderr.write(`[sandbox] using ${rootfs}\n`);
  }
  const shared = await serveSharedServer();
  project.provide('sharedServerSocket', shared.socket);
  return shared.close;
}
