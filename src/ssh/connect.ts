/**
 * One SSH connection per host, reused for the whole command. Host keys are always verified
 * (inventory pin, else known_hosts); ~/.ssh/config decides address, keys and jump hosts;
 * privileged work runs through sudo with its script on stdin, so nothing secret ever appears
 * on a command line. Every exec is counted: round trips are what make deploys slow.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import type { AgentAuthMethod, ConnectConfig, PublicKeyAuthMethod } from 'ssh2';
import { ConnectError, HostKeyError } from '../errors.js';
import type { Host } from '../inventory/schema.js';
import { shQuote } from '../remote/quote.js';
import { Secret } from '../secrets/secret.js';
import { parseJump, sshSettings, type SshSettings } from './config.js';
import { fingerprint, judgeHostKey, keyTypeOf, knownKeysFor, type HostKeyVerdict } from './known-hosts.js';

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: string | Readable;
  onStdout?: (chunk: string) => void;
}

/** What the rest of stack needs from a server connection. */
export interface RemoteShell {
  readonly label: string;
  readonly execCount: number;
  exec(command: string, options?: ExecOptions): Promise<ExecResult>;
  /** Runs a POSIX sh script as root (via sudo unless already root); the script travels on stdin. */
  sudoScript(script: string, options?: Omit<ExecOptions, 'stdin'>): Promise<ExecResult>;
  /** Runs a command line as root with `stdin` as its input. */
  sudo(command: string, stdin: string | Readable, options?: Omit<ExecOptions, 'stdin'>): Promise<ExecResult>;
  close(): Promise<void>;
}

export interface AttachOptions {
  pty: boolean;
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  /** The local terminal, whose size the remote one takes. */
  terminal?: { rows?: number; columns?: number; on(e: 'resize', f: () => void): unknown; off(e: 'resize', f: () => void): unknown };
}

export interface ConnectOptions {
  /** Directory relative identity files are resolved against (the inventory's). */
  baseDir: string;
  timeoutMs?: number;
  /** Asked once when sudo wants a password; absent without a terminal. */
  askSudoPassword?: () => Promise<string>;
  /** Skip verification and report the key instead: only `stack trust` uses this. */
  captureHostKey?: (key: string) => void;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const SUDO_WANTS_PASSWORD = /a password is required|a terminal is required/;

export async function connectHost(host: Host, options: ConnectOptions): Promise<SshHost> {
  const settings = await sshSettings(host.address);
  const user = host.user ?? (settings.userFromConfig ? settings.user : 'deploy');
  const port = host.port ?? (settings.portFromConfig ? settings.port : 22);
  const hostname = settings.hostname || host.address;
  const label = `${user}@${host.address}${port === 22 ? '' : `:${port}`}`;
  const timeout = options.timeoutMs ?? (settings.connectTimeout ? settings.connectTimeout * 1000 : DEFAULT_TIMEOUT_MS);

  const jumps: NodeSSH[] = [];
  let sock: Readable | undefined;
  try {
    for (const spec of settings.proxyJump) {
      const hop = parseJump(spec);
      const hopSettings = await sshSettings(hop.host);
      const hopPort = hop.port ?? hopSettings.port;
      const hopUser = hop.user ?? hopSettings.user;
      const verdict: { value?: HostKeyVerdict; key?: string } = {};
      const ssh = new NodeSSH();
      await connectWithErrors(
        ssh,
        {
          ...baseConfig(hopSettings.hostname || hop.host, hopPort, hopUser, authFiles(undefined, hopSettings, options.baseDir), timeout),
          sock,
          hostVerifier: verifier(hop.host, hopPort, undefined, hopSettings, verdict),
        },
        `${hopUser}@${hop.host}:${hopPort} (jump host)`,
        verdict,
      );
      jumps.push(ssh);
      const next = jumps.length < settings.proxyJump.length ? parseJump(settings.proxyJump[jumps.length]!) : { host: hostname, port };
      sock = (await ssh.forwardOut('127.0.0.1', 0, next.host, next.port ?? 22)) as unknown as Readable;
    }
    const verdict: { value?: HostKeyVerdict; key?: string } = {};
    const ssh = new NodeSSH();
    const config: ConnectConfig = {
      ...baseConfig(hostname, port, user, authFiles(host, settings, options.baseDir), timeout),
      sock,
      hostVerifier: options.captureHostKey
        ? (key: Buffer) => {
            options.captureHostKey!(`${keyTypeOf(key)} ${key.toString('base64')}`);
            return true;
          }
        : verifier(host.address, port, host.host_key, settings, verdict),
    };
    await connectWithErrors(ssh, config, label, verdict);
    return new SshHost(ssh, jumps, label, user === 'root', options.askSudoPassword);
  } catch (err) {
    for (const j of jumps) j.dispose();
    throw err;
  }
}

function baseConfig(host: string, port: number, username: string, keys: string[], timeout: number): ConnectConfig {
  // Every key in turn, then the agent: OpenSSH's order.
  const methods: (PublicKeyAuthMethod | AgentAuthMethod)[] = [
    ...keys.map((file): PublicKeyAuthMethod => ({ type: 'publickey', username, key: readFileSync(file) })),
    ...(process.env.SSH_AUTH_SOCK ? [{ type: 'agent', username, agent: process.env.SSH_AUTH_SOCK } satisfies AgentAuthMethod] : []),
  ];
  return { host, port, username, readyTimeout: timeout, keepaliveInterval: 15_000, authHandler: methods };
}

/** The inventory's identity_file wins; otherwise the keys ~/.ssh/config names that exist. */
function authFiles(host: Host | undefined, settings: SshSettings, baseDir: string): string[] {
  if (host?.identity_file) {
    const file = path.resolve(baseDir, host.identity_file.replace(/^~(?=\/|$)/, homedir()));
    if (!existsSync(file)) throw new ConnectError(`identity_file ${host.identity_file} does not exist`, { hint: 'fix identity_file in the inventory' });
    return [file];
  }
  return settings.identityFiles.filter((f) => existsSync(f));
}

function verifier(address: string, port: number, pinned: string | undefined, settings: SshSettings, out: { value?: HostKeyVerdict; key?: string }) {
  const files = settings.knownHostsFiles.length > 0 ? settings.knownHostsFiles : [path.join(homedir(), '.ssh/known_hosts')];
  const knownHosts = files.filter((f) => existsSync(f)).map((file) => ({ file, keys: knownKeysFor(readFileSync(file, 'utf8'), address, port) }));
  return (key: Buffer): boolean => {
    out.key = `${keyTypeOf(key)} ${key.toString('base64')}`;
    out.value = judgeHostKey(key, pinned, knownHosts);
    return out.value.status === 'match';
  };
}

async function connectWithErrors(ssh: NodeSSH, config: ConnectConfig, label: string, verdict: { value?: HostKeyVerdict; key?: string }): Promise<void> {
  try {
    const connecting = ssh.connect(config as Parameters<NodeSSH['connect']>[0]);
    // ssh2 leaves Nagle's algorithm on. A script or command is a few small packets, and each of
    // them then waits for the server to acknowledge the one before, which servers delay by up to
    // 40 ms: every round trip paid 40-80 ms for nothing. The handshake pays it too, so the
    // socket gets TCP_NODELAY as soon as it is connected.
    const client = ssh.connection;
    client?.once('connect', () => client.setNoDelay(true));
    await connecting;
    ssh.connection?.setNoDelay(true);
    // ssh2 emits 'error' on the client when the connection breaks later (EPIPE, reset); the
    // running exec reports that as a lost connection, so the event itself must not crash us.
    ssh.connection?.on('error', () => undefined);
  } catch (err) {
    const v = verdict.value;
    const key = verdict.key ?? '';
    const fp = key ? fingerprint(key.split(' ')[1] ?? '') : '';
    if (v?.status === 'unknown') {
      throw new HostKeyError(`${label}: unknown host key ${fp} (${key.split(' ')[0]}); refusing to connect`, fp, key, {
        hint: "check the fingerprint with the server's provider, then pin it with `stack trust ENV`",
      });
    }
    if (v?.status === 'changed') {
      throw new HostKeyError(
        `${label}: HOST KEY CHANGED. The server presented ${fp}, but ${v.source} expects ${v.expected.join(' or ')}. Someone may be intercepting the connection, or the server was reinstalled; refusing to connect`,
        fp,
        key,
        { hint: `if the server really was rebuilt, verify the new fingerprint and re-pin it with \`stack trust ENV --replace\`` },
      );
    }
    if (v?.status === 'revoked') {
      throw new HostKeyError(`${label}: the host key ${fp} is marked @revoked in ${v.source}; refusing to connect`, fp, key);
    }
    throw new ConnectError(`cannot connect to ${label}: ${describeConnectError(err, config.readyTimeout ?? DEFAULT_TIMEOUT_MS)}`, {
      hint: hintFor(err),
    });
  }
}

function describeConnectError(err: unknown, timeout: number): string {
  const e = err as NodeJS.ErrnoException & { level?: string };
  switch (e.code) {
    case 'ECONNREFUSED':
      return 'connection refused (is sshd running and the port right?)';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'no route to host';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'the host name does not resolve';
    case 'ETIMEDOUT':
      return `no answer within ${Math.round(timeout / 1000)} s`;
  }
  if (/Timed out while waiting for handshake/i.test(e.message)) return `no SSH handshake within ${Math.round(timeout / 1000)} s`;
  if (e.level === 'client-authentication') return 'the server accepted none of our keys';
  return e.message;
}

function hintFor(err: unknown): string | undefined {
  const e = err as { level?: string };
  if (e.level === 'client-authentication')
    return "set identity_file for the host, load the key into ssh-agent, or add the public key to the user's ~/.ssh/authorized_keys";
  return 'check the address and port, and that the server is up: ssh -v USER@HOST';
}

/**
 * How a script on stdin is run as root: read whole into a private file first, within a bound,
 * then run. `sh -s` would wait for the rest of a script cut off in transit as long as the dead
 * connection stays open (hours without keepalives from the server's side), holding whatever
 * the script had started. Once it runs, hang-ups no longer stop it (the scripts finish or roll
 * back on their own). The file lives in memory (/run), root's alone, and is removed after.
 */
export const SCRIPT_READ_SECONDS = 60;
const SCRIPT_READER = `sh -c ${shQuote(
  `f=$(mktemp -p /run stack-script.XXXXXXXX) || exit 1; if timeout ${SCRIPT_READ_SECONDS} cat > "$f"; then trap '' HUP PIPE; sh "$f"; r=$?; else echo 'stack: the script did not arrive whole within ${SCRIPT_READ_SECONDS} s' >&2; r=1; fi; rm -f "$f"; exit $r`,
)}`;

export class SshHost implements RemoteShell {
  #execs = 0;
  #sudoPassword: Secret | undefined;
  #sudoChecked = false;

  constructor(
    private readonly ssh: NodeSSH,
    private readonly jumps: NodeSSH[],
    readonly label: string,
    private readonly isRoot: boolean,
    private readonly askSudoPassword?: () => Promise<string>,
  ) {}

  get execCount(): number {
    return this.#execs;
  }

  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    this.#execs++;
    const r = await this.ssh.execCommand(command, {
      stdin: options.stdin,
      onStdout: options.onStdout ? (chunk) => options.onStdout!(chunk.toString('utf8')) : undefined,
    });
    return { code: r.code, stdout: r.stdout, stderr: r.stderr };
  }

  async sudoScript(script: string, options: Omit<ExecOptions, 'stdin'> = {}): Promise<ExecResult> {
    return this.sudo(SCRIPT_READER, script, options);
  }

  /**
   * Runs `command` (a shell command line, already quoted) as root. With a sudo password, the
   * password is the first line of stdin (`sudo -S`) and the rest is the command's own stdin.
   */
  async sudo(command: string, stdin: string | Readable, options: Omit<ExecOptions, 'stdin'> = {}): Promise<ExecResult> {
    if (this.isRoot) return this.exec(command, { ...options, stdin });
    if (this.#sudoPassword) {
      const password = `${this.#sudoPassword.reveal()}\n`;
      const input = typeof stdin === 'string' ? password + stdin : prefixed(password, stdin);
      return this.exec(`sudo -S -p '' -- ${command}`, { ...options, stdin: input });
    }
    if (!this.#sudoChecked && typeof stdin === 'string') {
      // A string can be replayed: try directly and ask for a password only if sudo wants one.
      const r = await this.exec(`sudo -n -- ${command}`, { ...options, stdin });
      if (r.code === 0 || !SUDO_WANTS_PASSWORD.test(r.stderr)) {
        this.#sudoChecked = true;
        return r;
      }
      await this.#learnSudoPassword(r.stderr);
      return this.sudo(command, stdin, options);
    }
    if (!this.#sudoChecked) {
      // A stream cannot be replayed: ask sudo first, cheaply.
      const probe = await this.exec('sudo -n true');
      if (probe.code !== 0) {
        await this.#learnSudoPassword(probe.stderr);
        return this.sudo(command, stdin, options);
      }
      this.#sudoChecked = true;
    }
    return this.exec(`sudo -n -- ${command}`, { ...options, stdin });
  }

  async #learnSudoPassword(stderr: string): Promise<void> {
    this.#sudoChecked = true;
    if (!SUDO_WANTS_PASSWORD.test(stderr)) {
      throw new ConnectError(`${this.label}: sudo does not work for this user: ${stderr.trim()}`, {
        hint: 'give the deploy user sudo rights (e.g. a file in /etc/sudoers.d)',
      });
    }
    if (!this.askSudoPassword) {
      throw new ConnectError(`${this.label}: sudo needs a password and there is no terminal to ask for it`, {
        hint: 'run stack from a terminal, or allow the deploy user passwordless sudo (NOPASSWD in /etc/sudoers.d)',
      });
    }
    this.#sudoPassword = new Secret('sudo password', await this.askSudoPassword());
  }

  /**
   * Runs `command` as root with the caller's streams attached, for as long as it runs: with
   * `pty`, on a pseudo-terminal of the local terminal's size (resized with it), else with
   * stdout and stderr kept apart. Resolves with its exit status (null: the connection was lost).
   * Without a terminal sudo cannot ask for a password, so it must not need one.
   */
  async attach(command: string, o: AttachOptions): Promise<number | null> {
    const connection = this.ssh.connection;
    if (!connection) throw new ConnectError(`${this.label}: not connected`);
    this.#execs++;
    const line = this.isRoot ? command : `sudo ${o.pty ? '' : '-n '}-- ${command}`;
    return new Promise((resolve, reject) => {
      const size = () => ({ rows: o.terminal?.rows ?? 24, cols: o.terminal?.columns ?? 80 });
      const pty = o.pty ? { term: process.env.TERM ?? 'xterm', ...size() } : undefined;
      connection.exec(line, pty ? { pty } : {}, (err, channel) => {
        if (err) {
          reject(new ConnectError(`${this.label}: ${err.message}`));
          return;
        }
        const resize = () => channel.setWindow(size().rows, size().cols, 0, 0);
        o.terminal?.on('resize', resize);
        o.stdin.pipe(channel);
        channel.pipe(o.stdout, { end: false });
        channel.stderr.pipe(o.stderr, { end: false });
        let status: number | null = null;
        channel.on('exit', (code: number | null, signal?: string) => {
          status = code ?? (signal ? 128 + 1 : null);
        });
        channel.on('close', () => {
          o.terminal?.off('resize', resize);
          o.stdin.unpipe(channel);
          resolve(status);
        });
      });
    });
  }

  async close(): Promise<void> {
    this.ssh.dispose();
    for (const j of this.jumps.reverse()) j.dispose();
  }
}

function prefixed(head: string, body: Readable): Readable {
  const out = new PassThrough();
  out.write(head);
  body.pipe(out);
  return out;
}
