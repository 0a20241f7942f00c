/**
 * One environment on three servers at once: setup and deploy of every host in parallel, one
 * connection each and a line per host at the end; --limit by address; a dry run whose identical
 * plans are shown once for all three; rolling deploys whose failing batch stops the rollout:
 * with `batch: 1` the first host serves the new release while the failed second one serves the
 * old and the third is never touched; with `batch: 2` the host that went live beside the
 * failed one goes back with it. `stack rollback` across the hosts, and --parallel 1.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/sandbox/sandbox.js';
import type { CliResult } from '../helpers/cli.js';
import { editInventory, exampleProject, stackIn } from '../helpers/project.js';
import { bootSandbox, rootExec, type SandboxInfo } from '../helpers/sandbox.js';
import { stepTimer } from '../helpers/timing.js';

const DOMAIN = 'roll.stack.test';
const MARKER = '/etc/stack-e2e-unhealthy';
let servers: SandboxInfo[] = [];
let dir: string;
/** The release every host ran before the rolling deploys: what the rollback goes back to. */
let common: string;
const { timed, report } = stepTimer('rolling');

const run = (args: string[]): CliResult => stackIn(dir, args);
function ok(r: CliResult): CliResult {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

/** What a server's app answers on /health, through its own nginx. */
async function health(server: SandboxInfo): Promise<{ http: string; release?: string; version?: number }> {
  const r = await runProgram('curl', ['-s', '-i', '--max-time', '10', '--resolve', `${DOMAIN}:80:${server.address}`, `http://${DOMAIN}/health`], 15_000);
  const [head, body] = r.stdout.split('\r\n\r\n');
  let parsed = {};
  try {
    parsed = body ? JSON.parse(body) : {};
  } catch {
    // An error page: only the status matters.
  }
  return { ...parsed, http: head?.split(' ')[1] ?? 'none' };
}
/** The release each server's `current` points at (a change of nginx's configuration alone restarts no app, whose /health still names the release it started in). */
const releases = () => Promise.all(servers.map(async (s) => (await rootExec(s, 'readlink /srv/hello/current')).split('/').pop()));

/**
 * Code version N in /health; from version 3 on, a server with MARKER answers 503 there, so the
 * new code fails its health check on that server only and the old code (no such check) does not.
 */
function version(n: number): void {
  const file = path.join(dir, 'example/hello/wsgi.py');
  const code = `import json, os
from hello.wsgi_base import application as base


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/health" and ${n >= 3 ? `os.path.exists("${MARKER}")` : 'False'}:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"unhealthy on purpose\\n"]
    if environ.get("PATH_INFO") == "/health":
        chunks = []
        def capture(status, headers):
            chunks.append(status)
        body = json.loads(b"".join(base(environ, capture)))
        body["version"] = ${n}
        payload = json.dumps(body).encode()
        start_response(chunks[0], [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]
    return base(environ, start_response)
`;
  writeFileSync(file, code);
}

beforeAll(async () => {
  const booted = await Promise.allSettled(['rolla', 'rollb', 'rollc'].map((tag) => bootSandbox(tag)));
  servers = booted.filter((b): b is PromiseFulfilledResult<SandboxInfo> => b.status === 'fulfilled').map((b) => b.value);
  const failed = booted.find((b): b is PromiseRejectedResult => b.status === 'rejected');
  if (failed) throw failed.reason;
  dir = exampleProject(servers[0]!, { domain: DOMAIN });
  // The example's own app, renamed, under a wrapper that versions it.
  const { renameSync } = await import('node:fs');
  renameSync(path.join(dir, 'example/hello/wsgi.py'), path.join(dir, 'example/hello/wsgi_base.py'));
  version(1);
  editInventory(dir, (doc) => {
    doc.environments.sbx.hosts = servers.map((s) => ({ address: s.address, user: 'deploy', host_key: s.hostKey, identity_file: s.identityFile }));
  });
}, 300_000);

afterAll(() => report());

describe('three servers in one environment', () => {
  it('sets up and deploys every host at once, one line each at the end', async () => {
    const setup = await timed('setup of 3 hosts in parallel', () => ok(run(['setup', 'sbx'])));
    expect(setup.stderr).toMatch(/done: changed \d+ things on 3 hosts/);
    const deploy = await timed('first deploy of 3 hosts in parallel', () => ok(run(['-v', 'deploy', 'sbx'])));
    for (const s of servers)
      expect(deploy.stderr).toMatch(new RegExp(`${s.address.replace(/\./g, '\\.')}: \\d+ changes?, release \\S+, health 200, \\d+ ssh round trips`));
    const [a, b, c] = await releases();
    expect(a).toMatch(/^\d{8}T/);
    // One deploy, one release id on every host.
    expect([b, c]).toEqual([a, a]);
    for (const s of servers) expect(await health(s)).toMatchObject({ http: '200', version: 1 });
  });

  it('--limit deploys only the host it names', async () => {
    const before = await releases();
    version(2);
    const r = ok(run(['deploy', 'sbx', '--limit', servers[1]!.address]));
    expect(r.stderr).toMatch(/on 1 host/);
    const after = await releases();
    expect(after[0]).toBe(before[0]);
    expect(after[2]).toBe(before[2]);
    expect(after[1]).not.toBe(before[1]);
    expect(await health(servers[1]!)).toMatchObject({ version: 2 });
    expect(await health(servers[0]!)).toMatchObject({ version: 1 });
  });

  it('a dry run shows the plans that are the same once, under the hosts they are for', async () => {
    editInventory(dir, (doc) => {
      doc.nginx = { ...(doc.nginx ?? {}), client_max_body_size: '25m' };
    });
    const r = ok(run(['deploy', 'sbx', '--dry-run']));
    const plain = r.stderr.replace(/\x1b\[\d+m/g, '');
    const [a, b, c] = servers.map((s) => s.address);
    // The first and the third get the new code and the setting; the second has the code already.
    expect(plain).toContain(`2 hosts (deploy@${a}, deploy@${c}) (sbx): 2 changes`);
    expect(plain).toContain(`deploy@${b} (sbx): 1 change`);
    expect(plain.match(/\+ {4}client_max_body_size 25m/g)).toHaveLength(2);
  });

  it('batch 1: the second batch fails its health check and goes back; the first serves the new release; the third is not touched', async () => {
    editInventory(dir, (doc) => {
      doc.environments.sbx.rolling = { batch: 1 };
    });
    ok(run(['deploy', 'sbx']));
    const before = await releases();
    expect(new Set(before).size).toBe(1);
    common = before[0]!;
    await rootExec(servers[1]!, `touch ${MARKER}`);
    version(3);
    const r = await timed('rolling deploy, batch 1, second batch failing', () => run(['deploy', 'sbx']));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/deploy \(batch 2 of 3\) failed on 1 of 3 hosts/);
    expect(r.stderr).toContain(`${servers[1]!.address}: `);
    expect(r.stderr).toMatch(/health check failed/);
    const after = await releases();
    // The first batch went live and stays; the hint says where each release runs.
    expect(after[0]).not.toBe(before[0]);
    expect(r.stderr).toContain(`${servers[0]!.address} run ${after[0]}`);
    expect(await health(servers[0]!)).toMatchObject({ http: '200', version: 3 });
    expect(after[1]).toBe(before[1]);
    expect(await health(servers[1]!)).toMatchObject({ http: '200' });
    expect(after[2]).toBe(before[2]);
    expect(r.stderr).toContain(`${servers[2]!.address} not started`);
    expect(await rootExec(servers[2]!, 'ls /srv/hello/releases')).not.toContain(after[0]!);
  });

  it('batch 2: a host that went live beside the failed one goes back with its batch', async () => {
    editInventory(dir, (doc) => {
      doc.environments.sbx.rolling = { batch: 2 };
    });
    await rootExec(servers[1]!, `rm -f ${MARKER}`);
    // The first host runs version 3 already; the two others get it now.
    ok(run(['deploy', 'sbx']));
    const before = await releases();
    await rootExec(servers[1]!, `touch ${MARKER}`);
    version(4);
    const r = await timed('rolling deploy, batch 2, first batch failing', () => run(['deploy', 'sbx']));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/deploy \(batch 1 of 2\) failed on 1 of 3 hosts/);
    expect(r.stderr).toMatch(new RegExp(`${servers[0]!.address.replace(/\./g, '\\.')} runs ${before[0]} \\(rolled back with its batch\\)`));
    expect(await releases()).toEqual(before);
    // Version 3 checks the marker too: without it every host answers again, all on version 3.
    await rootExec(servers[1]!, `rm -f ${MARKER}`);
    for (const s of servers) expect(await health(s)).toMatchObject({ http: '200', version: 3 });
  });

  it('rollback of every host to the release they shared, one at a time with --parallel 1', async () => {
    expect(common).toBeDefined();
    const r = await timed('rollback of 3 hosts, one at a time', () => ok(run(['rollback', 'sbx', common, '--parallel', '1'])));
    expect(r.stderr.match(/rolled back: /g)).toHaveLength(3);
    expect(await releases()).toEqual([common, common, common]);
    for (const s of servers) expect(await health(s)).toMatchObject({ http: '200', version: 2 });
  });
});
