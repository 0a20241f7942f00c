/**
 * One provisioned sandbox server per Debian release, shared by the end-to-end files that do not
 * need a pristine one.
 *
 * Booting a server and provisioning it (`stack setup` installs nginx and Python's packages) costs
 * each file several seconds; on the shared server a file's own `stack setup` finds the packages
 * there and only adds its app. The vitest main process owns the server (test/global-setup.ts):
 * it boots and provisions it when a file first asks for it, so runs of other files never pay
 * for it, hands the same server to every file that asks, and stops it when the run ends.
 *
 * Files on the shared server may run at the same time, so each keeps to its own app: its own app
 * name (its /srv/NAME, /etc/NAME, unit, user, lock, nginx site) and its own domain, which its
 * requests name (curl --resolve, or a Host header and SNI); none uses the server's address as
 * its domain, and none changes what the server-wide pieces (nginx, sudo, packages, groups of
 * www-data) are. Files that need a server as `stack` first meets it, or change it as a whole,
 * boot their own (bootSandbox).
 */
import { cpSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { isRelease, RELEASES, type Release } from '../../src/sandbox/releases.js';
import { NAME_PATTERN, sandboxDown, sandboxDownSync, sandboxUp, type SandboxInfo } from '../../src/sandbox/sandbox.js';
import { ROOT, startStack } from './cli.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Unix socket where the main process hands out the shared server. */
    sharedServerSocket: string;
  }
}

/** The app that provisions the shared server; no test file may use its name. */
const POOL_APP = 'pool';

/**
 * Serves the shared servers on a Unix socket, one per Debian release, asked for by path
 * (`/trixie`): a release's first request boots and provisions its server, every later one gets
 * the same answer (its SandboxInfo as JSON, or the error). Returns the socket path and a
 * function that stops the servers that were booted, and the socket.
 */
export async function serveSharedServer(): Promise<{ socket: string; close: () => Promise<void> }> {
  const names = Object.fromEntries(Object.keys(RELEASES).map((r) => [r, `t${process.pid % 10000}pool${r[0]}`])) as Record<Release, string>;
  for (const name of Object.values(names)) if (!NAME_PATTERN.test(name)) throw new Error(`invalid shared server name ${name}`);
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-shared-'));
  const socket = path.join(dir, 'server.sock');
  const ready = new Map<Release, Promise<SandboxInfo>>();
  // 'exit' handlers cannot wait: on an interrupted run the servers are stopped synchronously.
  const stopOnExit = () => {
    for (const release of ready.keys()) sandboxDownSync(names[release], 5_000);
  };
  process.on('exit', stopOnExit);

  const http: Server = createServer((req, res) => {
    const release = (req.url ?? '').slice(1);
    if (!isRelease(release)) {
      res.writeHead(404).end(`no shared server for "${release}": ask for /${Object.keys(RELEASES).join(' or /')}`);
      return;
    }
    let server = ready.get(release);
    if (!server) {
      server = provision(names[release], release);
      ready.set(release, server);
      // Awaited by each request; this keeps a failure from being reported as unhandled.
      server.catch(() => {});
    }
    server.then(
      (info) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(info)),
      (err: unknown) => res.writeHead(500).end(err instanceof Error ? err.message : String(err)),
    );
  });
  // A file may wait for the whole boot and provisioning.
  http.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => http.once('error', reject).listen(socket, resolve));

  return {
    socket,
    close: async () => {
      await new Promise<void>((resolve) => http.close(() => resolve()));
      await Promise.all(
        [...ready].map(async ([release, server]) => {
          await server.catch(() => {});
          await sandboxDown(names[release]).catch(() => {});
        }),
      );
      process.off('exit', stopOnExit);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Boots the server and runs `stack setup` on it for a placeholder app, as a user would. */
async function provision(name: string, release: Release): Promise<SandboxInfo> {
  const info = await sandboxUp({ name, release });
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-pool-'));
  try {
    cpSync(path.join(ROOT, 'example'), path.join(dir, 'example'), { recursive: true });
    const inventory = {
      app: { name: POOL_APP, source: 'example', wsgi: 'hello.wsgi:application' },
      environments: {
        pool: {
          domains: [`${POOL_APP}.stack.test`],
          hosts: [{ address: info.address, user: 'deploy', host_key: info.hostKey, identity_file: info.identityFile }],
        },
      },
    };
    writeFileSync(path.join(dir, 'inventory.yml'), stringify(inventory));
    mkdirSync(path.join(dir, '.stack'));
    // Asynchronous: a blocking spawn would stall the main process, which the test files report to.
    const r = await startStack(['setup', 'pool'], { cwd: dir, limitMs: 170_000 }).done;
    if (r.code !== 0) throw new Error(`stack setup on the shared server ${name} failed (exit ${r.code}):\n${r.stderr}`);
    return info;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
