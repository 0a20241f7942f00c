/**
 * How stack reaches a server, for real: through a ProxyJump host named in an ssh config file,
 * and with the key held only by ssh-agent. The config file comes in through STACK_SSH_CONFIG
 * (as `ssh -F` would), so the machine's own ~/.ssh is never touched.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { STACK, stack } from '../helpers/cli.js';
import { exampleProject } from '../helpers/project.js';
import { bootSandbox, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

let server: SandboxInfo;
let scratch: string;

beforeAll(async () => {
  server = await bootSandbox('con');
  scratch = mkdtempSync(path.join(tmpdir(), 'stack-connect-'));
  writeFileSync(path.join(scratch, 'known_hosts'), `${server.address} ${server.hostKey}\n`);
});

describe('ProxyJump from ~/.ssh/config', () => {
  it('reaches the server through a jump host, verifying both host keys', async () => {
    const config = path.join(scratch, 'config-jump');
    // The jump host is the sandbox; from there, 127.0.0.1:22 is the sandbox's own sshd.
    writeFileSync(
      config,
      [
        'Host via-jump',
        '  HostName 127.0.0.1',
        '  User deploy',
        `  IdentityFile ${server.identityFile}`,
        `  ProxyJump deploy@${server.address}`,
        `Host ${server.address}`,
        `  IdentityFile ${server.identityFile}`,
        `  UserKnownHostsFile ${path.join(scratch, 'known_hosts')}`,
        '',
      ].join('\n'),
    );
    const dir = exampleProject(server, { domain: 'via-jump', host: { address: 'via-jump', host_key: server.hostKey } });
    const r = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir, env: { STACK_SSH_CONFIG: config } });
    expect(r.stderr).toMatch(/deploy@via-jump \(sbx\)/);
    expect(r.code).toBe(0);
    // The sandbox's sshd saw a login from its own loopback: the jump really happened.
    const log = await sshExec(server, 'sudo journalctl -u ssh --no-pager | grep -c "Accepted publickey for deploy from 127.0.0.1"');
    expect(Number(log.stdout.trim())).toBeGreaterThan(0);
  });

  it('refuses the jump host when its key is not on record', () => {
    const config = path.join(scratch, 'config-jump-unknown');
    writeFileSync(
      config,
      `Host via-jump\n  HostName 127.0.0.1\n  IdentityFile ${server.identityFile}\n  ProxyJump deploy@${server.address}\nHost ${server.address}\n  IdentityFile ${server.identityFile}\n  UserKnownHostsFile ${path.join(scratch, 'empty_known_hosts')}\n`,
    );
    const dir = exampleProject(server, { domain: 'via-jump', host: { address: 'via-jump', host_key: server.hostKey } });
    const r = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir, env: { STACK_SSH_CONFIG: config } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/\(jump host\): unknown host key/);
  });
});

describe('ssh-agent', () => {
  let agent: ChildProcess;
  const socket = () => path.join(scratch, 'agent.sock');

  beforeAll(async () => {
    agent = spawn('ssh-agent', ['-D', '-a', socket()], { stdio: 'ignore' });
    process.env.SSH_AUTH_SOCK = socket();
    for (let i = 0; i < 50; i++) {
      const r = await runProgram('ssh-add', [server.identityFile], 5_000).catch(() => ({ code: 1 }));
      if (r.code === 0) break;
      await new Promise((res) => setTimeout(res, 100));
    }
  });
  afterAll(() => {
    agent.kill('SIGTERM');
    delete process.env.SSH_AUTH_SOCK;
  });

  it('logs in with a key held only by the agent, and not without it', async () => {
    const list = await runProgram('ssh-add', ['-l'], 5_000);
    expect(list.code).toBe(0);
    const config = path.join(scratch, 'config-agent');
    // No usable key files: only the agent can log in.
    writeFileSync(config, `Host ${server.address}\n  IdentityFile ${path.join(scratch, 'no-such-key')}\n`);
    const dir = exampleProject(server, { host: { address: server.address, host_key: server.hostKey } });
    const withAgent = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir, env: { STACK_SSH_CONFIG: config, SSH_AUTH_SOCK: socket() } });
    expect(withAgent.stderr).toMatch(/gather facts/);
    expect(withAgent.code).toBe(0);
    const without = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir, env: { STACK_SSH_CONFIG: config, SSH_AUTH_SOCK: '' } });
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/accepted none of our keys/);
  });
});

describe('sudo with a password', () => {
  it('asks once on a terminal, and says what to do without one', async () => {
    // Make the deploy user's sudo ask for a password, as on many real servers.
    const setup = await sshExec(server, "echo 'deploy:sudo-pass-42' | chpasswd && rm -f /etc/sudoers.d/deploy && sudo -k", 'root');
    expect(setup.code).toBe(0);
    const dir = exampleProject(server);

    const headless = stack(['deploy', 'sbx', '--dry-run'], { cwd: dir });
    expect(headless.code).toBe(1);
    expect(headless.stderr).toMatch(/sudo needs a password and there is no terminal to ask for it/);

    const session = `stack-sudo-${process.pid}`;
    const tmux = (...args: string[]) => execFileSync('tmux', args, { encoding: 'utf8' });
    tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', '-c', dir, `${process.execPath} ${STACK} deploy sbx --dry-run; echo "EXIT=$?"; sleep 30`);
    try {
      const screen = async (re: RegExp) => {
        for (let i = 0; i < 150; i++) {
          const s = tmux('capture-pane', '-p', '-S', '-', '-t', session);
          if (re.test(s)) return s;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`timed out waiting for ${re}:\n${tmux('capture-pane', '-p', '-t', session)}`);
      };
      await screen(/sudo password on the server/);
      tmux('send-keys', '-t', session, '-l', 'sudo-pass-42');
      tmux('send-keys', '-t', session, 'Enter');
      const done = await screen(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=0/);
      expect(done.match(/sudo password on the server/g)).toHaveLength(1);
      expect(done).not.toContain('sudo-pass-42');
    } finally {
      tmux('kill-session', '-t', session);
    }
  });
});
