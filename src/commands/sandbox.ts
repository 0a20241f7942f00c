/** `stack sandbox up|down|list`: throwaway local servers to rehearse deploys on. */
import { access } from 'node:fs/promises';
import pc from 'picocolors';
import { isMap, isSeq, type Document } from 'yaml';
import type { GlobalOptions } from './options.js';
import { StackError, UsageError } from '../errors.js';
import { updateInventory } from '../inventory/edit.js';
import { DEFAULT_RELEASE, parseRelease, releaseLabel } from '../sandbox/releases.js';
import { knownHostsFile, listSandboxes, sandboxDown, sandboxUp, validateName, type SandboxInfo } from '../sandbox/sandbox.js';

export interface SandboxUpOptions {
  /** A Debian suite name (bookworm, trixie); checked here. */
  release?: string;
  writeEnv?: string;
}

const ENV_NAME = /^[a-z][a-z0-9-]{0,30}$/;
const SANDBOX_ADDRESS = /^169\.254\.\d{1,3}\.\d{1,3}$/;
/** Progress from stack itself; debootstrap's and apt's own chatter only shows with --debug. */
const OWN_LINE = /^(building|waiting|root filesystem|sandbox )/;

export async function runSandboxUp(name: string, options: SandboxUpOptions, globals: GlobalOptions): Promise<void> {
  validateName(name);
  const release = parseRelease(options.release ?? DEFAULT_RELEASE);
  const env = options.writeEnv;
  if (env !== undefined) {
    if (!ENV_NAME.test(env)) {
      throw new UsageError(`--write-env: "${env}" is not a valid environment name`, { hint: 'use lowercase letters, digits and "-", e.g. sandbox' });
    }
    // Before booting anything, so a wrong -i costs nothing.
    await access(globals.inventory).catch(() => {
      throw new UsageError(`${globals.inventory}: no such inventory file`, { hint: 'run `stack init` to write one, or pass -i FILE' });
    });
  }

  const log = (line: string) => {
    if (globals.debug || OWN_LINE.test(line)) process.stderr.write(`${pc.dim(line)}\n`);
  };
  const info = await sandboxUp({ name, release, log });
  if (env !== undefined) {
    try {
      await updateInventory(globals.inventory, (doc) => pointEnvironmentAt(doc, env, info, globals.inventory));
    } catch (err) {
      // The command failed as a whole, so it leaves nothing running behind.
      await sandboxDown(name).catch(() => {});
      throw err;
    }
  }

  const out = process.stdout;
  out.write(
    `${pc.green('sandbox')} ${pc.bold(name)} is up at ${pc.bold(info.address)} (${releaseLabel(info.release)}, systemd, sshd; pristine on every boot)\n`,
  );
  out.write(`  ssh       ssh -i ${info.identityFile} -o UserKnownHostsFile=${knownHostsFile(name)} ${info.user}@${info.address}\n`);
  out.write(`  host key  ${info.hostKey}\n`);
  if (env !== undefined) out.write(`  inventory environments.${env} in ${globals.inventory} points at it: try \`stack render ${env}\`\n`);
  out.write(`  stop      stack sandbox down ${name}\n`);
}

/**
 * Adds the environment, or points an existing one at the sandbox. Only what the sandbox decides
 * is touched: hosts always, domains only when they were sandbox addresses anyway.
 */
export function pointEnvironmentAt(doc: Document, env: string, info: SandboxInfo, file: string): void {
  const host = {
    address: info.address,
    user: info.user,
    port: info.port,
    host_key: info.hostKey,
    identity_file: info.identityFile,
  };
  const environments = doc.get('environments', true);
  if (environments !== undefined && environments !== null && !isMap(environments)) {
    throw new StackError(`${file}: environments is not a mapping, so stack cannot add ${env} to it`, {
      hint: 'fix the inventory (see `stack render`), then run the command again',
    });
  }
  const envPath = ['environments', env];
  const existing = doc.getIn(envPath, true);
  if (existing === undefined || existing === null) {
    const node = doc.createNode({ domains: [info.address], ssl: 'none', hosts: [host] });
    const domains = node.get('domains', true);
    if (isSeq(domains)) domains.flow = true;
    node.commentBefore = ` sandbox ${info.name}, written by \`stack sandbox up --write-env ${env}\``;
    doc.setIn(envPath, node);
    return;
  }
  if (!isMap(existing)) {
    throw new StackError(`${file}: environments.${env} is not a mapping, so stack cannot point it at the sandbox`, {
      hint: 'fix it, or pick another name with --write-env',
    });
  }
  existing.set('hosts', doc.createNode([host]));
  const domains = existing.get('domains', true);
  const current: unknown = isSeq(domains) ? domains.toJSON() : domains;
  const sandboxOnly = Array.isArray(current) && current.every((d) => typeof d === 'string' && SANDBOX_ADDRESS.test(d));
  if (domains === undefined || sandboxOnly) {
    const node = doc.createNode([info.address]);
    node.flow = true;
    existing.set('domains', node);
  }
}

export async function runSandboxDown(name: string, _globals: GlobalOptions): Promise<void> {
  const started = Date.now();
  await sandboxDown(name);
  process.stdout.write(`sandbox ${name} stopped after ${((Date.now() - started) / 1000).toFixed(1)}s; everything written on it is gone\n`);
}

export async function runSandboxList(_globals: GlobalOptions): Promise<void> {
  const sandboxes = await listSandboxes();
  if (sandboxes.length === 0) {
    process.stdout.write('no sandboxes are running; start one with `stack sandbox up NAME`\n');
    return;
  }
  const rows = [
    ['NAME', 'RELEASE', 'ADDRESS', 'PID', 'UPTIME'],
    // A sandbox booted before releases were recorded ran Debian 12.
    ...sandboxes.map((s) => [s.name, s.release ?? 'bookworm', s.address, String(s.pid), uptime(Date.now() - Date.parse(s.startedAt))]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows)
    process.stdout.write(
      `${row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()}\n`,
    );
}

function uptime(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d${String(h).padStart(2, '0')}h`;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}
