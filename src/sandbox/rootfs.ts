/**
 * The sandbox's root filesystem: a debootstrapped Debian (12 or 13) with systemd, sshd, sudo and
 * a `deploy` user, built once per release and cached under a name derived from its recipe, so
 * changing the recipe builds a new one and an old cache is never mistaken for the current one.
 *
 * Sandboxes have no route to a Debian mirror, yet `stack setup` runs `apt-get install` on them
 * for real; so the build leaves fresh package lists and the .debs of everything setup installs
 * in the image, and apt inside the sandbox installs from that cache.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { StackError } from '../errors.js';
import { type Release, releaseLabel } from './releases.js';

export const ROOTFS_CACHE = '/var/cache/stack/sandbox';

export type Log = (line: string) => void;

/** Installed by debootstrap itself. */
const INCLUDE = ['systemd', 'systemd-sysv', 'dbus', 'openssh-server', 'sudo', 'python3', 'ca-certificates', 'iproute2'];

/**
 * Downloaded but not installed, so each sandbox starts as a bare server that `stack setup`
 * provisions, offline. `gunicorn` is here besides python3-gunicorn because only it ships
 * /usr/bin/gunicorn.
 */
export const PREFETCH = [
  'nginx',
  'python3-venv',
  'python3-gunicorn',
  'gunicorn',
  'uwsgi-core',
  'uwsgi-plugin-python3',
  'curl',
  'openssl',
  'ufw',
  'certbot',
  // What apps ask for in `app.packages` in the tests: a framework from Debian, and the compiler
  // and headers that packages with C extensions need.
  'python3-django',
  'build-essential',
  'python3-dev',
  // The database (setup installs postgresql when the inventory has `database:`) and what apps
  // use to reach it: psycopg 2 and 3, dj-database-url, SQLAlchemy.
  'postgresql',
  'python3-psycopg2',
  'python3-psycopg',
  'python3-dj-database-url',
  'python3-sqlalchemy',
  // Workers' broker and cache, and its Python client.
  'redis-server',
  'python3-redis',
  // The firewall of app hosts that web hosts elsewhere reach (src/views/firewall.ts).
  'nftables',
];

/** Units that only slow the boot down or wait for a network that never comes. */
const MASK = [
  'systemd-networkd-wait-online.service',
  'systemd-timesyncd.service',
  'getty@tty1.service',
  'e2scrub_reap.service',
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'e2scrub_all.timer',
  'fstrim.timer',
  'dpkg-db-backup.timer',
];

const FILES: Record<string, { content: string; mode: number }> = {
  '/etc/hostname': { content: 'sandbox\n', mode: 0o644 },
  '/etc/hosts': { content: '127.0.0.1 localhost\n127.0.1.1 sandbox\n::1 localhost ip6-localhost ip6-loopback\n', mode: 0o644 },
  '/etc/sudoers.d/deploy': { content: 'deploy ALL=(ALL) NOPASSWD:ALL\n', mode: 0o440 },
  '/etc/ssh/sshd_config.d/stack-sandbox.conf': {
    // Only the ed25519 key: each boot bind-mounts a fresh one, so every sandbox is a new server.
    content: 'HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n',
    mode: 0o644,
  },
  '/etc/apt/apt.conf.d/90stack-sandbox': {
    // With no route out, a failing fetch should fail at once and leave the prefetched lists and
    // .debs alone; apt-get already installs from /var/cache/apt/archives when a .deb is there.
    content: [
      'Acquire::Retries "0";',
      'Acquire::http::Timeout "3";',
      'Acquire::https::Timeout "3";',
      'APT::Keep-Downloaded-Packages "true";',
      'Binary::apt::APT::Keep-Downloaded-Packages "true";',
      'APT::Install-Recommends "false";',
      '',
    ].join('\n'),
    mode: 0o644,
  },
  // Without a nameserver glibc asks 127.0.0.1 inside the container, which refuses at once
  // instead of timing out; the build's copy of the host's resolver must not leak into sandboxes.
  '/etc/resolv.conf': { content: '# stack sandbox: no network beyond the host veth\n', mode: 0o644 },
};

export interface Recipe {
  revision: number;
  suite: Release;
  mirror: string;
  variant: string;
  include: string[];
  prefetch: string[];
  mask: string[];
  files: Record<string, { content: string; mode: number }>;
}

/**
 * Everything that decides what an image contains, and so its cache name. The releases share one
 * package list: every name in it exists in both.
 */
export function recipe(release: Release): Recipe {
  return {
    revision: 1,
    suite: release,
    mirror: 'http://deb.debian.org/debian',
    variant: 'minbase',
    include: INCLUDE,
    prefetch: PREFETCH,
    mask: MASK,
    files: FILES,
  };
}

export function recipeHash(release: Release): string {
  return createHash('sha256')
    .update(JSON.stringify(recipe(release)))
    .digest('hex')
    .slice(0, 12);
}

export function rootfsPath(release: Release): string {
  return path.join(ROOTFS_CACHE, `rootfs-${recipeHash(release)}`);
}

/** Path of the release's cached root filesystem, built first when missing (about a minute). */
export async function ensureRootfs(release: Release, log: Log = () => {}): Promise<string> {
  const spec = recipe(release);
  const final = rootfsPath(release);
  if (isComplete(final)) return final;
  await mkdir(ROOTFS_CACHE, { recursive: true });
  return withLock(
    `${final}.lock`,
    async () => {
      // Another process may have finished it while we waited.
      if (isComplete(final)) return final;
      const tmp = `${final}.tmp`;
      await removeTree(tmp);
      const started = Date.now();
      log(`building the ${releaseLabel(release)} sandbox root filesystem in ${final} (about a minute, once)`);
      await build(spec, tmp, log);
      await writeFile(path.join(tmp, '.stack-rootfs'), `${JSON.stringify(spec, null, 2)}\n`);
      await rename(tmp, final);
      log(`root filesystem ready after ${((Date.now() - started) / 1000).toFixed(1)}s`);
      return final;
    },
    { waiting: (holder) => log(`waiting for process ${holder} to finish building the root filesystem`), timeoutMs: 30 * 60_000 },
  );
}

function isComplete(dir: string): boolean {
  return existsSync(path.join(dir, '.stack-rootfs'));
}

/** Where Debian's debootstrap keeps a script per suite it knows. */
const DEBOOTSTRAP_SCRIPTS = '/usr/share/debootstrap/scripts';

async function build(spec: Recipe, root: string, log: Log): Promise<void> {
  // An older debootstrap only says "No such script" after a while; say what to do instead.
  if (existsSync(DEBOOTSTRAP_SCRIPTS) && !existsSync(path.join(DEBOOTSTRAP_SCRIPTS, spec.suite))) {
    throw new StackError(`this machine's debootstrap cannot build ${releaseLabel(spec.suite)}: it has no script for ${spec.suite}`, {
      hint: 'upgrade it and the archive keys: apt-get update && apt-get install -y debootstrap debian-archive-keyring',
    });
  }
  await run(
    'debootstrap',
    [`--variant=${spec.variant}`, `--include=${spec.include.join(',')}`, spec.suite, root, spec.mirror],
    log,
    'debootstrap could not build the root filesystem',
  );
  const chroot = (args: string[], what: string) => run('chroot', [root, ...args], log, what);

  await chroot(['useradd', '-m', '-s', '/bin/bash', '-G', 'sudo', 'deploy'], 'could not create the deploy user');
  for (const [home, owner] of [
    ['/root', 'root'],
    ['/home/deploy', 'deploy'],
  ] as const) {
    const ssh = path.join(root, home, '.ssh');
    await mkdir(ssh, { recursive: true });
    await chmod(ssh, 0o700);
    // An empty mount point: each boot bind-mounts the client key over it.
    await writeFile(path.join(ssh, 'authorized_keys'), '', { mode: 0o600 });
    await chroot(['chown', '-R', `${owner}:${owner}`, `${home}/.ssh`], 'could not set up ~/.ssh');
  }

  for (const name of await readdir(path.join(root, 'etc/ssh'))) {
    if (/^ssh_host_.*key(\.pub)?$/.test(name)) await rm(path.join(root, 'etc/ssh', name));
  }
  // Empty mount points too: if the per-boot key were ever not mounted, sshd fails to start
  // instead of serving a private key shared by every sandbox.
  await writeFile(path.join(root, 'etc/ssh/ssh_host_ed25519_key'), '', { mode: 0o600 });
  await writeFile(path.join(root, 'etc/ssh/ssh_host_ed25519_key.pub'), '', { mode: 0o644 });

  for (const [file, { content, mode }] of Object.entries(spec.files)) {
    if (file === '/etc/resolv.conf') continue;
    const target = path.join(root, file);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, content);
    await chmod(target, mode);
  }
  await chroot(['visudo', '-cq', '-f', '/etc/sudoers.d/deploy'], 'the sudoers rule for deploy is invalid');

  await chroot(['systemctl', 'enable', 'systemd-networkd.service'], 'could not enable systemd-networkd');
  await chroot(['systemctl', 'mask', ...spec.mask], 'could not mask units');

  // The only time the image can reach a mirror: borrow the host's resolver for it.
  await rm(path.join(root, 'etc/resolv.conf'), { force: true });
  await writeFile(path.join(root, 'etc/resolv.conf'), readFileSync('/etc/resolv.conf'));
  try {
    await chroot(['apt-get', 'update'], 'apt-get update failed while building the root filesystem');
    await chroot(
      ['apt-get', 'install', '--download-only', '-y', '--no-install-recommends', ...spec.prefetch],
      'could not download the packages sandboxes install offline',
    );
  } finally {
    await writeFile(path.join(root, 'etc/resolv.conf'), spec.files['/etc/resolv.conf']!.content);
  }
  await rm(path.join(root, 'var/log/journal'), { recursive: true, force: true });
  await mkdir(path.join(root, 'var/log/journal'));
}

/** Runs a local command, passing its output to `log`; on failure the last lines go in the error. */
function run(cmd: string, args: string[], log: Log, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' },
    });
    const tail: string[] = [];
    let partial = '';
    const onData = (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        log(line);
        tail.push(line);
        if (tail.length > 30) tail.shift();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) =>
      reject(new StackError(`${what}: cannot run ${cmd}: ${err.message}`, { hint: 'run `stack sandbox up` once to see what the host is missing' })),
    );
    child.on('close', (code, signal) => {
      if (partial) tail.push(partial);
      if (code === 0) resolve();
      else
        reject(
          new StackError(`${what} (${cmd} exited with ${code ?? signal}):\n${tail.join('\n')}`, {
            hint: 'check that this machine can reach deb.debian.org, then run the command again; the half-built tree is discarded',
          }),
        );
    });
  });
}

/** Removes a tree that an interrupted debootstrap may have left /proc or /sys mounted in. */
async function removeTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m], () => {}, `could not unmount ${m}`);
  await rm(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// A lock between processes: mkdir-style atomicity, an owner recorded inside, stale owners broken.

interface Owner {
  pid: number;
  start: string;
}

/** The kernel's start time of a process tells a live owner from a recycled PID. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields 3 and 22, counted after the parenthesised command name, which may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie has finished; only its parent's reaping is pending, which cannot happen while
    // that parent (this process, in an exit handler) waits synchronously for it.
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
}

export function ownerAlive(owner: Owner): boolean {
  return processStart(owner.pid) === owner.start;
}

export function selfOwner(): string {
  return `${process.pid} ${processStart(process.pid) ?? ''}`;
}

export function parseOwner(text: string | undefined): Owner | undefined {
  const [pid, start] = (text ?? '').trim().split(' ');
  return pid && start && /^\d+$/.test(pid) ? { pid: Number(pid), start } : undefined;
}

async function readOwner(lockDir: string): Promise<Owner | undefined> {
  try {
    return parseOwner(await readFile(path.join(lockDir, 'owner'), 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Runs `fn` while holding `lockDir`. The lock directory is made complete (with its owner file)
 * and then renamed into place, so it never exists without an owner; a rename onto an existing,
 * non-empty directory fails, which is the atomic test-and-set.
 */
export async function withLock<T>(lockDir: string, fn: () => Promise<T>, options: { waiting?: (holder: number) => void; timeoutMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  let told = false;
  await mkdir(path.dirname(lockDir), { recursive: true });
  for (;;) {
    const staging = `${lockDir}.${process.pid}.${randomBytes(4).toString('hex')}`;
    await mkdir(staging);
    await writeFile(path.join(staging, 'owner'), `${selfOwner()}\n`);
    try {
      await rename(staging, lockDir);
      break;
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
    const owner = await readOwner(lockDir);
    if (owner && !ownerAlive(owner)) {
      await breakStale(lockDir, owner);
      continue;
    }
    if (Date.now() > deadline) {
      throw new StackError(`timed out waiting for the lock ${lockDir}${owner ? ` held by process ${owner.pid}` : ''}`, {
        hint: `if no other stack process is running, remove ${lockDir} and try again`,
      });
    }
    if (owner && !told) {
      options.waiting?.(owner.pid);
      told = true;
    }
    await sleep(100 + Math.random() * 100);
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

/**
 * Two waiters may find the same dead owner; the second must not remove the lock the first has
 * just taken. So breaking is itself guarded by a short-lived directory, and the owner is read
 * again once inside it.
 */
async function breakStale(lockDir: string, dead: Owner): Promise<void> {
  const guard = `${lockDir}.break`;
  try {
    await mkdir(guard);
  } catch {
    // Breaking takes microseconds; a guard this old was left by a process that died doing it.
    const age = await stat(guard).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    );
    if (age > 10_000) await rmdir(guard).catch(() => {});
    await sleep(50);
    return;
  }
  try {
    const owner = await readOwner(lockDir);
    if (owner && owner.pid === dead.pid && owner.start === dead.start) await rm(lockDir, { recursive: true, force: true });
  } finally {
    await rmdir(guard).catch(() => {});
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
