/**
 * Sandboxes for end-to-end tests: real Debian servers (systemd-nspawn) that are always stopped,
 * whether the file passes, fails, or the run is interrupted.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, inject } from 'vitest';
import { parseRelease, type Release } from '../../src/sandbox/releases.js';
import { NAME_PATTERN, runProgram, sandboxDown, sandboxDownSync, sandboxUp, sshOptions, type RunResult, type SandboxInfo } from '../../src/sandbox/sandbox.js';

// The type of what the global setup provides.
import type {} from './shared-server.js';

export type { Release, SandboxInfo };

/**
 * The Debian release the tests' servers run unless a test names one. Debian 12 by default: the
 * whole suite was written against it, and vitest.config.ts runs the main deploy, TLS and
 * zero-downtime files again with STACK_TEST_RELEASE=trixie; set it for a run to put every file
 * on another release.
 */
export const TEST_RELEASE: Release = testRelease();

export function testRelease(value = process.env.STACK_TEST_RELEASE): Release {
  return value ? parseRelease(value, 'STACK_TEST_RELEASE') : 'bookworm';
}

/** Names this process may have left running; stopped on every way out. */
const owned = new Set<string>();

// Registered on the importing file's suite, so each test file stops its own sandboxes.
afterAll(async () => {
  await Promise.all(
    [...owned].map(async (name) => {
      await sandboxDown(name).catch(() => {});
      owned.delete(name);
    }),
  );
});

let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  // 'exit' handlers cannot await, so these stop the nspawn PIDs synchronously.
  const stopAll = () => {
    for (const name of owned) sandboxDownSync(name, 5_000);
    owned.clear();
  };
  process.on('exit', stopAll);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(sig, () => {
      stopAll();
      process.exit(code);
    });
  }
}

/** A name unique to this test process (PIDs of parallel workers differ) and this tag. */
export function sandboxName(tag: string): string {
  const name = `t${process.pid % 10000}${tag}`;
  if (!NAME_PATTERN.test(name)) throw new Error(`sandbox tag "${tag}" makes the invalid name "${name}"; use at most 7 lowercase letters/digits`);
  return name;
}

/** Makes sure a sandbox started some other way (e.g. by the CLI) is stopped with the others. */
export function trackSandbox(name: string): void {
  installExitHandlers();
  owned.add(name);
}

export async function bootSandbox(tag: string, release: Release = TEST_RELEASE): Promise<SandboxInfo> {
  const name = sandboxName(tag);
  trackSandbox(name);
  return sandboxUp({ name, release });
}

/**
 * The provisioned server of this release that files which do not need a pristine one share (see
 * shared-server.ts for the rules they keep). The run's main process owns and stops it.
 */
export async function sharedServer(release: Release = TEST_RELEASE): Promise<SandboxInfo> {
  const socketPath = inject('sharedServerSocket');
  if (!socketPath) throw new Error("no shared server: the e2e project's globalSetup (test/global-setup.ts) provides it");
  return new Promise((resolve, reject) => {
    request({ socketPath, path: `/${release}` }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(body) as SandboxInfo) : reject(new Error(body))));
    })
      .on('error', reject)
      .end();
  });
}

export async function stopSandbox(name: string): Promise<void> {
  await sandboxDown(name);
  owned.delete(name);
}

/** Runs `command` as root on the sandbox and returns its output, trimmed; a failure throws. */
export async function rootExec(info: SandboxInfo, command: string): Promise<string> {
  const r = await sshExec(info, command, 'root');
  if (r.code !== 0) throw new Error(`root@${info.address}: ${command}: exit ${r.code}: ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Runs `command` through the login user's shell on the sandbox, with the sandbox key and a
 * known_hosts holding only info.hostKey: a server with any other key is refused.
 */
export async function sshExec(info: SandboxInfo, command: string, user = 'deploy', timeoutMs = 120_000): Promise<RunResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-ssh-'));
  try {
    const knownHosts = path.join(dir, 'known_hosts');
    writeFileSync(knownHosts, `${info.address} ${info.hostKey}\n`);
    return await runProgram('ssh', [...sshOptions(info.identityFile, knownHosts), '-p', String(info.port), `${user}@${info.address}`, command], timeoutMs);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
