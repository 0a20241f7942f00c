/**
 * Sandboxes: throwaway Debian servers (12 or 13) booted with systemd-nspawn (systemd as PID 1),
 * reached over a veth pair at 169.254.N.2 with the host side at 169.254.N.1. Every boot is pristine
 * (a tmpfs overlay over the cached root filesystem) and has a fresh ssh host key, so each
 * sandbox is a new server to the client, and tests can pin its key like a real one.
 *
 * The host has no systemd/machined to register with, so each sandbox's state lives in
 * /run/stack/sandboxes/<name>/, and only processes recorded there (PID plus kernel start time,
 * so a recycled PID is never signalled) are ever stopped.
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, closeSync, readFileSync, readdirSync, rmSync, rmdirSync, statfsSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { $ } from 'zx';
import { StackError, UsageError } from '../errors.js';
import { DEFAULT_RELEASE, nspawnEnvironment, type Release } from './releases.js';
import { ensureRootfs, ownerAlive, parseOwner, processStart, selfOwner, sleep, withLock, type Log } from './rootfs.js';

export interface SandboxInfo {
  name: string;
  /** The Debian release it runs. */
  release: Release;
  /** Where the sandbox answers: 169.254.N.2. */
  address: string;
  /** The host's end of the veth pair: 169.254.N.1. */
  hostSideAddress: string;
  port: 22;
  user: 'deploy';
  /** "ssh-ed25519 BASE64", generated for this boot. */
  hostKey: string;
  /** Private key that root and deploy accept. */
  identityFile: string;
  /** PID of systemd-nspawn on the host. */
  pid: number;
  net: number;
  startedAt: string;
}

export const STATE_ROOT = '/run/stack/sandboxes';
export const CLIENT_KEY = '/var/lib/stack/sandbox/id_ed25519';
/** 12 characters keeps "ve-<name>" within the kernel's 15-character interface names. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,11}$/;

const SSH_READY_MS = 60_000;
const SYSTEM_READY_MS = 120_000;
const STOP_GRACE_MS = 20_000;
const CGROUP_DIR = (name: string) => `stack-sandbox-${name}`;

const q = $({ quiet: true, nothrow: true });

// ---------------------------------------------------------------------------------------------

const TOOLS: { bin: string; pkg: string }[] = [
  { bin: 'systemd-nspawn', pkg: 'systemd-container' },
  { bin: 'debootstrap', pkg: 'debootstrap' },
  { bin: 'ssh-keygen', pkg: 'openssh-client' },
  { bin: 'ssh', pkg: 'openssh-client' },
  { bin: 'ip', pkg: 'iproute2' },
];

/** Throws a StackError saying what to install or do when this machine cannot run sandboxes. */
export function preflight(): void {
  if (process.platform !== 'linux') {
    throw new StackError(`sandboxes need Linux (they are systemd-nspawn containers); this is ${process.platform}`, {
      hint: 'run stack inside a Linux machine or VM (Debian 12 or newer), as root',
    });
  }
  if (process.getuid?.() !== 0) {
    throw new StackError('sandboxes need root: they boot containers and create network devices', {
      hint: `run it again as root, e.g. sudo ${
        process.argv
          .slice(1)
          .map((a) => (path.basename(a) === 'stack.js' ? 'stack' : a))
          .join(' ') || 'stack sandbox up'
      }`,
    });
  }
  const missing = TOOLS.filter((t) => !onPath(t.bin));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => t.pkg))];
    throw new StackError(`sandboxes need ${missing.map((t) => t.bin).join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not installed`, {
      hint: `install them: apt-get install -y --no-install-recommends ${pkgs.join(' ')}`,
    });
  }
}

function onPath(bin: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  return dirs.some((dir) => {
    try {
      accessSync(path.join(dir, bin), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function validateName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new UsageError(`"${name}" is not a valid sandbox name`, {
      hint: 'use 1 to 12 lowercase letters, digits and "-", starting with a letter, e.g. web1',
    });
  }
}

const stateDir = (name: string) => path.join(STATE_ROOT, name);
export const knownHostsFile = (name: string) => path.join(stateDir(name), 'known_hosts');

// ---------------------------------------------------------------------------------------------

/** OpenSSH options that authenticate with the sandbox key and accept only the pinned host key. */
export function sshOptions(identityFile: string, knownHosts: string): string[] {
  return [
    '-F',
    '/dev/null',
    '-i',
    identityFile,
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `UserKnownHostsFile=${knownHosts}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'HostKeyAlgorithms=ssh-ed25519',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'ConnectTimeout=2',
  ];
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a local program without a shell; a timeout counts as a failure, never a hang. */
export function runProgram(cmd: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: stderr + err.message }));
    child.on('close', (code, signal) =>
      resolve({ code: code ?? (signal ? 128 + 9 : -1), stdout, stderr: signal ? `${stderr}(timed out after ${timeoutMs} ms)\n` : stderr }),
    );
  });
}

// ---------------------------------------------------------------------------------------------

/** The client key sandboxes accept, made once; parallel first runs must not both write it. */
async function ensureClientKey(): Promise<string> {
  const done = () => existsSync(CLIENT_KEY) && existsSync(`${CLIENT_KEY}.pub`);
  if (done()) return CLIENT_KEY;
  await mkdir(path.dirname(CLIENT_KEY), { recursive: true, mode: 0o700 });
  await withLock(`${path.dirname(CLIENT_KEY)}/.key.lock`, async () => {
    if (done()) return;
    await rm(CLIENT_KEY, { force: true });
    await rm(`${CLIENT_KEY}.pub`, { force: true });
    const r = await q`ssh-keygen -q -t ed25519 -N ${''} -C stack-sandbox -f ${CLIENT_KEY}`;
    if (r.exitCode !== 0)
      throw new StackError(`ssh-keygen could not create ${CLIENT_KEY}: ${r.stderr.trim()}`, { hint: 'check that /var/lib/stack is writable' });
    await chmod(CLIENT_KEY, 0o600);
  });
  return CLIENT_KEY;
}

function cgroupRoots(): string[] {
  const CGROUP2_MAGIC = 0x63677270;
  if (statfsSync('/sys/fs/cgroup').type === CGROUP2_MAGIC) return ['/sys/fs/cgroup'];
  // Hybrid hosts: nspawn needs the name=systemd v1 tree and, when present, the unified one.
  return ['/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified'].filter((d) => existsSync(path.join(d, 'cgroup.procs')));
}

interface State {
  name: string;
  net?: number;
  owner?: ReturnType<typeof parseOwner>;
  nspawn?: ReturnType<typeof parseOwner>;
  info?: SandboxInfo;
}

function readState(name: string): State {
  const read = (f: string) => {
    try {
      return readFileSync(path.join(stateDir(name), f), 'utf8');
    } catch {
      return undefined;
    }
  };
  const net = Number(read('net'));
  let info: SandboxInfo | undefined;
  try {
    info = JSON.parse(read('info.json') ?? 'null') ?? undefined;
  } catch {
    info = undefined;
  }
  return { name, net: Number.isInteger(net) && net > 0 ? net : undefined, owner: parseOwner(read('owner')), nspawn: parseOwner(read('nspawn.pid')), info };
}

/** Live while its nspawn runs, or while the `up` that claimed it is still booting it. */
function isLive(s: State): boolean {
  return (s.nspawn !== undefined && ownerAlive(s.nspawn)) || (s.owner !== undefined && ownerAlive(s.owner));
}

function stateNames(): string[] {
  try {
    return readdirSync(STATE_ROOT, { withFileTypes: true })
      .filter((e) => e.isDirectory() && NAME_PATTERN.test(e.name))
      .map((e) => e.name);
  } catch {
    return [];
  }
}

/** Net numbers of 169.254.N.0/24 addresses the host already has, ours or anybody's. */
async function hostNets(): Promise<Set<number>> {
  const r = await q`ip -o -4 addr show`;
  const nets = new Set<number>();
  for (const m of r.stdout.matchAll(/inet 169\.254\.(\d+)\.\d+/g)) nets.add(Number(m[1]));
  return nets;
}

async function linkExists(link: string): Promise<boolean> {
  return (await q`ip link show dev ${link}`).exitCode === 0;
}

/**
 * Claims the name and the lowest free N together, under one lock, so parallel `up`s never pick
 * the same network. Dead sandboxes found on the way are cleaned up and their N reused.
 */
async function claim(name: string): Promise<number> {
  await mkdir(STATE_ROOT, { recursive: true, mode: 0o755 });
  return withLock(path.join(STATE_ROOT, '.lock'), async () => {
    const used = await hostNets();
    for (const other of stateNames()) {
      const s = readState(other);
      if (!isLive(s)) {
        cleanupAfterExit(other);
        continue;
      }
      if (other === name) {
        throw new StackError(`sandbox ${name} is already running${s.info ? ` at ${s.info.address}` : ''}`, {
          hint: `stop it first with \`stack sandbox down ${name}\`, or pick another name`,
        });
      }
      if (s.net) used.add(s.net);
    }
    if (await linkExists(`ve-${name}`)) {
      throw new StackError(`a network device ve-${name} already exists, so another container named ${name} is running outside stack`, {
        hint: 'pick another sandbox name',
      });
    }
    let net = 2;
    while (net <= 254 && used.has(net)) net++;
    if (net > 254)
      throw new StackError('no free 169.254.N.0/24 network for another sandbox (2..254 are taken)', { hint: 'stop some with `stack sandbox down NAME`' });
    const dir = stateDir(name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { mode: 0o700 });
    await writeFile(path.join(dir, 'owner'), `${selfOwner()}\n`);
    await writeFile(path.join(dir, 'net'), `${net}\n`);
    return net;
  });
}

// ---------------------------------------------------------------------------------------------

export interface SandboxUpOptions {
  name: string;
  /** The Debian release to boot; Debian's current stable one by default. */
  release?: Release;
  /** Root filesystem to boot; by default the release's cached one, built when missing. */
  rootfs?: string;
  log?: Log;
}

/** Boots a sandbox and returns once ssh answers with the expected host key and systemd is up. */
export async function sandboxUp(opts: SandboxUpOptions): Promise<SandboxInfo> {
  const { name } = opts;
  const release = opts.release ?? DEFAULT_RELEASE;
  const log = opts.log ?? (() => {});
  validateName(name);
  preflight();
  const rootfs = opts.rootfs ?? (await ensureRootfs(release, log));
  if (!existsSync(path.join(rootfs, 'sbin/init')) && !existsSync(path.join(rootfs, 'lib/systemd/systemd'))) {
    throw new StackError(`${rootfs} is not a bootable root filesystem`, { hint: 'leave out rootfs to use the cached one' });
  }
  const identityFile = await ensureClientKey();
  const net = await claim(name);
  const dir = stateDir(name);

  // If the process exits half way (Ctrl-C in the CLI), the container must not outlive it
  // unrecorded: nspawn powers down on SIGTERM, and the next `up` cleans the state.
  let nspawnPid: number | undefined;
  const onExit = () => {
    if (nspawnPid) {
      try {
        process.kill(nspawnPid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    }
  };
  process.on('exit', onExit);

  const t0 = Date.now();
  try {
    const address = `169.254.${net}.2`;
    const hostSideAddress = `169.254.${net}.1`;
    const hostKeyFile = path.join(dir, 'ssh_host_ed25519_key');
    const kg = await q`ssh-keygen -q -t ed25519 -N ${''} -C ${''} -f ${hostKeyFile}`;
    if (kg.exitCode !== 0) throw new StackError(`ssh-keygen could not make a host key: ${kg.stderr.trim()}`);
    const hostKey = (await readFile(`${hostKeyFile}.pub`, 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
    await writeFile(knownHostsFile(name), `${address} ${hostKey}\n`);
    await writeFile(
      path.join(dir, 'host0.network'),
      [
        '[Match]',
        'Name=host0',
        '[Network]',
        'LinkLocalAddressing=no',
        'IPv6AcceptRA=no',
        '[Address]',
        `Address=${address}/24`,
        // networkd probes 169.254/16 addresses for conflicts (about 5 s of ARP) by default.
        'DuplicateAddressDetection=none',
        // The other sandboxes (an environment of several hosts) through this machine, which
        // forwards between the sandboxes' own devices only; nothing else is routed.
        '[Route]',
        'Destination=169.254.0.0/16',
        `Gateway=${hostSideAddress}`,
        // networkd gives a 169.254/16 address link scope, which the kernel never picks as the
        // source of a route through a gateway: without this, packets leave from 0.0.0.0 and the
        // host drops them as martians.
        `PreferredSource=${address}`,
        '',
      ].join('\n'),
    );

    const cgroups = cgroupRoots().map((root) => path.join(root, CGROUP_DIR(name)));
    await writeFile(path.join(dir, 'cgroups'), `${cgroups.join('\n')}\n`);
    await rm(`/run/systemd/nspawn/propagate/${name}`, { recursive: true, force: true });

    const nspawnArgs = [
      '-D',
      rootfs,
      '-M',
      name,
      // No systemd or machined on such hosts to register with; --keep-unit stops nspawn from
      // asking the system bus for a scope, and puts the container under our own cgroup instead.
      '--register=no',
      '--keep-unit',
      '--volatile=overlay',
      '--link-journal=no',
      '--network-veth',
      `--bind-ro=${dir}/host0.network:/etc/systemd/network/10-host0.network`,
      `--bind-ro=${hostKeyFile}:/etc/ssh/ssh_host_ed25519_key`,
      `--bind-ro=${hostKeyFile}.pub:/etc/ssh/ssh_host_ed25519_key.pub`,
      `--bind-ro=${identityFile}.pub:/root/.ssh/authorized_keys`,
      `--bind-ro=${identityFile}.pub:/home/deploy/.ssh/authorized_keys`,
      '-b',
    ];
    // The launcher moves itself into a cgroup of its own before becoming nspawn: with
    // --keep-unit nspawn nests the container in the caller's cgroup, and parallel sandboxes
    // would otherwise share (and tear down) one tree.
    const launcher = 'while [ "$1" != -- ]; do mkdir -p "$1" && echo $$ > "$1/cgroup.procs" || exit 97; shift; done; shift; exec "$@"';
    const consoleLog = path.join(dir, 'console.log');
    const out = openSync(consoleLog, 'a');
    const child = spawn('bash', ['-c', launcher, 'stack-sandbox', ...cgroups, '--', 'systemd-nspawn', ...nspawnArgs], {
      detached: true,
      stdio: ['ignore', out, out],
      env: { ...process.env, ...nspawnEnvironment(release) },
    });
    closeSync(out);
    let exited: string | undefined;
    child.on('exit', (code, signal) => (exited = `exited with ${code ?? signal}`));
    child.on('error', (err) => (exited = err.message));
    child.unref();
    if (!child.pid) throw new StackError(`could not start systemd-nspawn: ${exited ?? 'no PID'}`);
    nspawnPid = child.pid;
    const start = processStart(child.pid);
    if (!start) throw new StackError(`systemd-nspawn ${exited ?? 'exited at once'}`);
    await writeFile(path.join(dir, 'nspawn.pid'), `${child.pid} ${start}\n`);

    const veth = `ve-${name}`;
    const failed = async (what: string) =>
      new StackError(`sandbox ${name}: ${what}${exited ? ` (systemd-nspawn ${exited})` : ''}\n${await tail(consoleLog, 25)}`, {
        hint: `the console log above is from ${consoleLog}; the sandbox was stopped`,
      });
    for (let i = 0; !(await linkExists(veth)); i++) {
      if (exited || i > 200) throw await failed('systemd-nspawn did not create its network device');
      await sleep(50);
    }
    for (const cmd of [
      ['ip', 'addr', 'add', `${hostSideAddress}/24`, 'dev', veth],
      ['ip', 'link', 'set', veth, 'up'],
    ]) {
      const r = await runProgram(cmd[0]!, cmd.slice(1), 10_000);
      if (r.code !== 0) throw await failed(`${cmd.join(' ')} failed: ${r.stderr.trim()}`);
    }
    // ARP retries every 100 ms rather than every second, so a first probe that races the
    // container's address setup costs little.
    await writeFile(`/proc/sys/net/ipv4/neigh/${veth}/retrans_time_ms`, '100').catch(() => {});
    // Packets from this sandbox to another one are forwarded by this machine; forwarding is
    // turned on for this device alone (not net.ipv4.ip_forward), so the sandboxes reach each
    // other and nothing else changes on the machine.
    await writeFile(`/proc/sys/net/ipv4/conf/${veth}/forwarding`, '1');

    const ssh = (args: string[], timeoutMs: number) =>
      runProgram('ssh', [...sshOptions(identityFile, knownHostsFile(name)), `deploy@${address}`, ...args], timeoutMs);
    for (;;) {
      const r = await ssh(['true'], 10_000);
      if (r.code === 0) break;
      if (/host key verification failed|IDENTIFICATION HAS CHANGED/i.test(r.stderr)) {
        throw await failed(`answered with a host key other than the one generated for it:\n${r.stderr.trim()}`);
      }
      if (exited) throw await failed('stopped while booting');
      if (Date.now() - t0 > SSH_READY_MS) throw await failed(`ssh did not answer within ${SSH_READY_MS / 1000}s: ${r.stderr.trim()}`);
      await sleep(100);
    }
    const sshReady = Date.now() - t0;
    const st = await ssh(['systemctl is-system-running --wait'], SYSTEM_READY_MS);
    const status = st.stdout.trim();
    if (status !== 'running' && status !== 'degraded') {
      throw await failed(`systemd did not finish booting: is-system-running said "${status}" ${st.stderr.trim()}`);
    }
    log(`sandbox ${name} (${release}): ssh ready after ${(sshReady / 1000).toFixed(2)}s, system ${status} after ${((Date.now() - t0) / 1000).toFixed(2)}s`);

    const info: SandboxInfo = {
      name,
      release,
      address,
      hostSideAddress,
      port: 22,
      user: 'deploy',
      hostKey,
      identityFile,
      pid: child.pid,
      net,
      startedAt: new Date(t0).toISOString(),
    };
    // `list` reads it without a lock: it must never see half a file.
    await writeFile(path.join(dir, 'info.json.tmp'), `${JSON.stringify(info, null, 2)}\n`);
    await rename(path.join(dir, 'info.json.tmp'), path.join(dir, 'info.json'));
    return info;
  } catch (err) {
    await stop(name).catch(() => {});
    throw err;
  } finally {
    process.off('exit', onExit);
  }
}

async function tail(file: string, lines: number): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------

/** Running sandboxes, lowest network first. */
export async function listSandboxes(): Promise<SandboxInfo[]> {
  const list: SandboxInfo[] = [];
  for (const name of stateNames()) {
    const s = readState(name);
    if (s.info && s.nspawn && ownerAlive(s.nspawn) && s.nspawn.pid === s.info.pid) list.push(s.info);
  }
  return list.sort((a, b) => a.net - b.net);
}

/** Stops a sandbox: everything written on it is gone. */
export async function sandboxDown(name: string): Promise<void> {
  validateName(name);
  preflight();
  if (!existsSync(stateDir(name))) {
    const running = (await listSandboxes()).map((s) => s.name);
    throw new StackError(`no sandbox named ${name} is running`, {
      hint: running.length > 0 ? `running: ${running.join(', ')} (see \`stack sandbox list\`)` : 'none are running; start one with `stack sandbox up NAME`',
    });
  }
  await stop(name);
}

async function stop(name: string): Promise<void> {
  const s = readState(name);
  if (s.nspawn && signal(s.nspawn, 'SIGTERM')) {
    // SIGTERM makes nspawn power the container down cleanly.
    const deadline = Date.now() + STOP_GRACE_MS;
    while (ownerAlive(s.nspawn) && Date.now() < deadline) await sleep(100);
    if (signal(s.nspawn, 'SIGKILL')) {
      for (let i = 0; i < 50 && ownerAlive(s.nspawn); i++) await sleep(100);
    }
  }
  cleanupAfterExit(name);
}

/**
 * The same, without returning to the event loop: for 'exit' and signal handlers, which cannot
 * wait for promises.
 */
export function sandboxDownSync(name: string, graceMs = 10_000): void {
  if (!NAME_PATTERN.test(name) || !existsSync(stateDir(name))) return;
  const s = readState(name);
  if (s.nspawn && signal(s.nspawn, 'SIGTERM')) {
    const deadline = Date.now() + graceMs;
    while (ownerAlive(s.nspawn) && Date.now() < deadline) sleepSync(50);
    if (signal(s.nspawn, 'SIGKILL')) {
      for (let i = 0; i < 50 && ownerAlive(s.nspawn); i++) sleepSync(50);
    }
  }
  cleanupAfterExit(name);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Signals a recorded process only if it is still the same process (PID and start time). */
function signal(owner: { pid: number; start: string }, sig: NodeJS.Signals): boolean {
  if (!ownerAlive(owner)) return false;
  try {
    process.kill(owner.pid, sig);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes what a stopped sandbox leaves on the host. Anything still in its cgroups was started
 * by it (nspawn killed before it could reap the container), so those processes are killed too.
 */
function cleanupAfterExit(name: string): void {
  const dir = stateDir(name);
  let cgroups: string[] = [];
  try {
    cgroups = readFileSync(path.join(dir, 'cgroups'), 'utf8')
      .split('\n')
      .filter((c) => c.endsWith(`/${CGROUP_DIR(name)}`));
  } catch {
    /* never got that far */
  }
  for (let round = 0; round < 50; round++) {
    const pids = cgroups.flatMap((cg) => cgroupPids(cg));
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    sleepSync(50);
  }
  for (const cg of cgroups) removeCgroup(cg);
  rmSync(`/run/systemd/nspawn/propagate/${name}`, { recursive: true, force: true });
  // The veth pair goes with the container's network namespace; only a leftover is deleted.
  if (spawnSync('ip', ['link', 'show', 'dev', `ve-${name}`], { stdio: 'ignore' }).status === 0) {
    spawnSync('ip', ['link', 'delete', `ve-${name}`], { stdio: 'ignore' });
  }
  rmSync(dir, { recursive: true, force: true });
}

function cgroupPids(cg: string): number[] {
  const pids: number[] = [];
  const walk = (d: string) => {
    try {
      for (const line of readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.push(Number(line));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
    } catch {
      /* removed meanwhile */
    }
  };
  walk(cg);
  return pids;
}

/** cgroup directories only go away with rmdir, children first. */
function removeCgroup(d: string): void {
  try {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) removeCgroup(path.join(d, e.name));
    rmdirSync(d);
  } catch {
    /* absent, or still busy: the next cleanup retries */
  }
}
