/**
 * Sandboxes for real: two Debian servers booted in parallel with systemd-nspawn, reached over
 * ssh with pinned host keys, installing packages offline, and leaving nothing behind when stopped.
 * Needs root on Linux; run with the global setup that builds the root filesystem:
 *   npx vitest run test/e2e/sandbox.test.ts --globalSetup test/global-setup.ts
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { DEFAULT_RELEASE, RELEASES, releaseLabel, type Release } from '../../src/sandbox/releases.js';
import { processStart } from '../../src/sandbox/rootfs.js';
import { STATE_ROOT, listSandboxes } from '../../src/sandbox/sandbox.js';
import { ROOT, stack } from '../helpers/cli.js';
import { bootSandbox, sandboxName, sshExec, stopSandbox, trackSandbox, type SandboxInfo } from '../helpers/sandbox.js';

const linkExists = (name: string) => spawnSync('ip', ['link', 'show', 'dev', `ve-${name}`], { stdio: 'ignore' }).status === 0;

describe('two sandboxes booted in parallel', () => {
  let a: SandboxInfo;
  let b: SandboxInfo;

  beforeAll(async () => {
    [a, b] = await Promise.all([bootSandbox('a'), bootSandbox('b')]);
  });

  it('answer ssh as deploy with their pinned host key, with passwordless sudo and systemd running', async () => {
    for (const s of [a, b]) {
      expect(s.hostKey).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+$/);
      expect(s.address).toBe(`169.254.${s.net}.2`);
      const r = await sshExec(s, 'id -un; sudo -n true && echo sudo-ok; systemctl is-system-running || true; systemd-detect-virt');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const [user, sudo, state, virt] = r.stdout.trim().split('\n');
      expect(user).toBe('deploy');
      expect(sudo).toBe('sudo-ok');
      expect(['running', 'degraded']).toContain(state);
      expect(virt).toBe('systemd-nspawn');
    }
  });

  it('are different servers: own address, own host key', () => {
    expect(a.address).not.toBe(b.address);
    expect(a.net).not.toBe(b.net);
    expect(a.hostKey).not.toBe(b.hostKey);
  });

  it('refuse a connection when the pinned host key is not theirs', async () => {
    const r = await sshExec({ ...a, hostKey: b.hostKey }, 'true');
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/host key verification failed/i);
  });

  it('install the prefetched packages with no network, and serve HTTP to the host', async () => {
    const r = await sshExec(a, 'sudo DEBIAN_FRONTEND=noninteractive apt-get install -y nginx python3-venv && systemctl is-active nginx');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n').pop()).toBe('active');
    const res = await fetch(`http://${a.address}/`, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('nginx');
    // Pristine per boot: the other sandbox, from the same image, did not get it.
    expect((await sshExec(b, 'test -e /usr/sbin/nginx')).code).toBe(1);
  });

  it('are listed while running', async () => {
    const listed = await listSandboxes();
    for (const s of [a, b]) expect(listed).toContainEqual(s);
  });

  it('leave no process, network device or state behind once stopped', async () => {
    const start = processStart(b.pid);
    expect(start).toBeDefined();
    expect(linkExists(b.name)).toBe(true);
    await stopSandbox(b.name);
    expect(processStart(b.pid) === start).toBe(false);
    expect(linkExists(b.name)).toBe(false);
    expect(existsSync(path.join(STATE_ROOT, b.name))).toBe(false);
    expect((await listSandboxes()).map((s) => s.name)).not.toContain(b.name);
    // a is untouched by b going away.
    expect((await sshExec(a, 'true')).code).toBe(0);
  });
});

describe('each Debian release, booted side by side', () => {
  const releases = Object.keys(RELEASES) as Release[];
  let servers: SandboxInfo[];

  beforeAll(async () => {
    servers = await Promise.all(releases.map((release) => bootSandbox(`r${release.slice(0, 3)}`, release)));
  });
  afterAll(async () => {
    await Promise.all((servers ?? []).map((s) => stopSandbox(s.name)));
  });

  it('runs the release it was asked for, with systemd running and no cgroup v1 taint on systemd 257', async () => {
    for (const [i, release] of releases.entries()) {
      const s = servers[i]!;
      expect(s.release).toBe(release);
      const r = await sshExec(
        s,
        '. /etc/os-release; echo "$VERSION_CODENAME $VERSION_ID"; systemctl is-system-running; systemctl --version | head -n1 | cut -d" " -f2; systemctl show -p Tainted --value; stat -fc %T /sys/fs/cgroup',
      );
      expect(r.stderr).toBe('');
      const [os, state, systemd, tainted, cgroupFs] = r.stdout.trim().split('\n');
      expect(os).toBe(`${release} ${RELEASES[release].version}`);
      expect(['running', 'degraded']).toContain(state);
      if (release === 'trixie') {
        expect(Number(systemd)).toBeGreaterThanOrEqual(257);
        // The container has cgroup2 only, as a real Debian 13 server does.
        expect(cgroupFs).toBe('cgroup2fs');
        expect(tainted).not.toMatch(/cgroupsv1/);
      }
    }
  });

  it('runs the hardened transient services that builds use (systemd-run --wait --pipe)', async () => {
    for (const s of servers) {
      const r = await sshExec(
        s,
        'sudo systemd-run --quiet --wait --pipe --collect --service-type=exec -p User=nobody -p ProtectSystem=strict -p PrivateTmp=yes -p ProtectHome=yes -p NoNewPrivileges=yes -p RestrictSUIDSGID=yes -- sh -c "id -un; touch /usr/stack-probe 2>/dev/null && echo writable || echo read-only; touch /tmp/x && echo tmp-ok"',
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toEqual(['nobody', 'read-only', 'tmp-ok']);
    }
  });
});

describe('stack sandbox (CLI)', () => {
  const name = sandboxName('cli');
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-sandbox-'));
  const inventory = path.join(dir, 'inventory.yml');
  const original = readFileSync(path.join(ROOT, 'inventory.example.yml'), 'utf8');

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('up --write-env adds a reachable environment to the inventory, keeping the file as it was', () => {
    copyFileSync(path.join(ROOT, 'inventory.example.yml'), inventory);
    trackSandbox(name);
    const up = stack(['sandbox', 'up', name, '--write-env', 'sbx', '-i', inventory]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/169\.254\.\d+\.2/);
    expect(up.stdout).toContain('ssh-ed25519 ');
    expect(up.stdout).toContain('-i /var/lib/stack/sandbox/id_ed25519');
    expect(up.stdout).toContain(`(${releaseLabel(DEFAULT_RELEASE)}, systemd, sshd`);

    const list = stack(['sandbox', 'list']);
    expect(list.code, list.stderr).toBe(0);
    // Booted without --release: Debian's current stable release.
    expect(list.stdout).toMatch(new RegExp(`^${name}\\s+${DEFAULT_RELEASE}\\s+169\\.254\\.\\d+\\.2\\s+\\d+\\s+\\d+s$`, 'm'));

    const updated = readFileSync(inventory, 'utf8');
    for (const line of original.split('\n')) expect(updated.split('\n')).toContain(line);
    const env = parseInventory(updated, inventory).data.environments.sbx!;
    expect(env.ssl).toBe('none');
    expect(env.hosts).toHaveLength(1);
    const host = env.hosts[0]!;
    expect(env.domains).toEqual([host.address]);
    expect(host).toMatchObject({ user: 'deploy', port: 22, identity_file: '/var/lib/stack/sandbox/id_ed25519' });
    expect(host.host_key).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+$/);
    expect(up.stdout).toContain(host.host_key);

    const render = stack(['render', 'sbx', '-i', inventory]);
    expect(render.code, render.stderr).toBe(0);

    const again = stack(['sandbox', 'up', name]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`stack sandbox down ${name}`);

    const down = stack(['sandbox', 'down', name]);
    expect(down.code, down.stderr).toBe(0);
    expect(linkExists(name)).toBe(false);
    expect(existsSync(path.join(STATE_ROOT, name))).toBe(false);
  });

  it('down of a sandbox that is not running says so and fails', () => {
    const r = stack(['sandbox', 'down', name]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`no sandbox named ${name} is running`);
    expect(r.stderr).toContain('hint:');
  });

  it('rejects names nspawn cannot use', () => {
    const r = stack(['sandbox', 'up', 'Not_Valid']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a valid sandbox name');
  });
});
