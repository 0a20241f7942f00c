/**
 * The hand-off to Ansible, end to end: the example project set up and deployed by stack on one
 * fresh server (exp-1), and by `ansible-playbook` from `stack export ansible` on another (exp-2).
 * Both must hold the same managed files, byte for byte, with the same owners and modes; the
 * export must not hold the secret; and stack, asked about the server Ansible made, must find no
 * configuration to change.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_SECRET, exampleProject, stackIn } from '../helpers/project.js';
import { rootExec, TEST_RELEASE, trackSandbox, type SandboxInfo } from '../helpers/sandbox.js';
import { sandboxDown, sandboxUp } from '../../src/sandbox/sandbox.js';
import { loadInventory } from '../../src/inventory/load.js';
import { renderEnvironment } from '../../src/commands/render.js';

/** The same domain on both servers, so that their nginx sites and env files can be identical. */
const DOMAIN = 'hello.test';
let byStack: SandboxInfo;
let byAnsible: SandboxInfo;
let stackProject: string;
let ansibleProject: string;
let out: string;
let managedPaths: string[];

beforeAll(async () => {
  for (const name of ['exp-1', 'exp-2']) trackSandbox(name);
  [byStack, byAnsible] = await Promise.all([sandboxUp({ name: 'exp-1', release: TEST_RELEASE }), sandboxUp({ name: 'exp-2', release: TEST_RELEASE })]);
  stackProject = exampleProject(byStack, { domain: DOMAIN });
  ansibleProject = exampleProject(byAnsible, { domain: DOMAIN });
  out = path.join(mkdtempSync(path.join(tmpdir(), 'stack-export-')), 'ansible');
  const inventory = await loadInventory(path.join(ansibleProject, 'inventory.yml'));
  const [state] = await renderEnvironment(inventory, inventory.environments.sbx!);
  managedPaths = state!.files.map((f) => f.path);
}, 300_000);

afterAll(async () => {
  await Promise.all(['exp-1', 'exp-2'].map((n) => sandboxDown(n).catch(() => undefined)));
});

/** Each managed file's sha256, mode and owner, in one line per file ("-" when missing). */
async function managedFiles(server: SandboxInfo): Promise<string> {
  const list = managedPaths.map((p) => `'${p}'`).join(' ');
  return rootExec(
    server,
    `for p in ${list}; do if [ -e "$p" ]; then echo "$p $(sha256sum <"$p" | cut -c1-64) $(stat -c '%a %U:%G' "$p")"; else echo "$p -"; fi; done`,
  );
}

function ansiblePlaybook(): { code: number; stdout: string; stderr: string; ms: number } {
  const t0 = Date.now();
  const r = spawnSync('ansible-playbook', ['-i', `${out}/inventory.yml`, `${out}/site.yml`], {
    // The secret reaches the playbook only through its environment, as the README says.
    env: { ...process.env, SECRET_KEY: PROJECT_SECRET, ANSIBLE_NOCOLOR: '1', ANSIBLE_HOST_KEY_CHECKING: 'True' },
    encoding: 'utf8',
    timeout: 900_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

describe('stack export ansible', () => {
  it('stack sets up and deploys the example on exp-1', () => {
    expect(stackIn(stackProject, ['setup', 'sbx']).code).toBe(0);
    const r = stackIn(stackProject, ['deploy', 'sbx']);
    expect(r.stderr).toMatch(/health 200/);
    expect(r.code).toBe(0);
  }, 600_000);

  it('exports a playbook that holds no secret and refuses to write into it again', () => {
    const r = stackIn(ansibleProject, ['export', 'ansible', 'sbx', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    // The whole export, the release's tarball unpacked too: the secret's value is nowhere.
    const grep = spawnSync(
      'sh',
      [
        '-c',
        `grep -rl -F "$S" . ; mkdir -p /tmp/.x$$ && tar -xzf roles/stack/files/release.tar.gz -C /tmp/.x$$ && grep -rl -F "$S" /tmp/.x$$; rm -rf /tmp/.x$$`,
      ],
      {
        cwd: out,
        env: { ...process.env, S: PROJECT_SECRET },
        encoding: 'utf8',
      },
    );
    expect(grep.stdout).toBe('');
    const again = stackIn(ansibleProject, ['export', 'ansible', 'sbx', '--out', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/is not empty/);
    expect(again.stderr).not.toMatch(/\n\s+at /);
  });

  it('ansible-playbook from the export makes exp-2 serve the app', async () => {
    const r = ansiblePlaybook();
    console.log(`ansible-playbook, first run: ${(r.ms / 1000).toFixed(1)} s\n${r.stdout.slice(r.stdout.indexOf('PLAY RECAP'))}`);
    expect(r.code, r.stdout.slice(-4000) + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/failed=0/);
    const health = await rootExec(byAnsible, `curl -s -o /dev/null -w '%{http_code}' -H 'Host: ${DOMAIN}' http://127.0.0.1/health`);
    expect(health).toBe('200');
  }, 900_000);

  it('the managed files on both servers are byte-identical, with the same owners and modes', async () => {
    const [a, b] = await Promise.all([managedFiles(byStack), managedFiles(byAnsible)]);
    expect(a).not.toMatch(/ -$/m);
    expect(b).toBe(a);
  });

  it('a second ansible-playbook run changes nothing', () => {
    const r = ansiblePlaybook();
    console.log(`ansible-playbook, second run: ${(r.ms / 1000).toFixed(1)} s\n${r.stdout.slice(r.stdout.indexOf('PLAY RECAP'))}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/changed=0 .*failed=0/);
  }, 900_000);

  it('stack deploy --dry-run against the server Ansible made finds nothing to change', () => {
    const r = stackIn(ansibleProject, ['deploy', 'sbx', '--dry-run', '--exit-code']);
    // Not even a new release: the export ships the same tarball, and the role writes the manifest,
    // file list and virtualenv (keyed as stack keys it) that stack compares.
    expect(r.stderr).toMatch(/nothing to change/);
    expect(r.stderr).toMatch(/would change 0 things on 1 host/);
    expect(r.stderr).not.toMatch(/new file|update |new release|install packages|create system user|directory /);
    expect(r.code).toBe(0);
  }, 300_000);
});
