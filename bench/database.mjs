#!/usr/bin/env node
// Database timings on a sandbox server (run as root after `npm run build`): `stack setup` with
// `database:` (PostgreSQL installed from the sandbox's package cache, role, database, pg_hba,
// timer), then a database grown to SIZE_MB (default 100) of generated rows, and the wall time of
// `stack db backup` (pg_dump, then a scratch restore to check it), `stack db restore` (a backup
// of the live database first, the app stopped, pg_restore into a fresh database, swap, health)
// and a timer backup (systemctl start). Prints figures; asserts nothing.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { sandboxUp, sandboxDown, runProgram } = await import(path.join(root, 'dist/sandbox/sandbox.js'));
const sizeMb = Number(process.env.SIZE_MB ?? 100);
const release = process.env.RELEASE ?? 'trixie';
const stackBin = path.join(root, 'bin/stack.js');

function stack(dir, ...args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [stackBin, ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' }, input: '' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`stack ${args.join(' ')} failed:\n${r.stderr}`);
  return { ms, stdout: r.stdout.trim(), stderr: r.stderr };
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const name = `benchdb${process.pid % 1000}`;
const server = await sandboxUp({ name, release });
try {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-bench-db-'));
  cpSync(path.join(root, 'example'), path.join(dir, 'example'), { recursive: true });
  writeFileSync(
    path.join(dir, 'inventory.yml'),
    `${readFileSync(path.join(root, 'inventory.example.yml'), 'utf8')
      .replace(/domains: \[hello\.example\.com, www\.hello\.example\.com\]/, `domains: [${server.address}]`)
      .replace(/ssl: letsencrypt\n\s+email: ops@example.com/, 'ssl: none')
      .replace(
        /- \{ address: 203\.0\.113\.10, user: deploy, port: 22 \}/,
        `- { address: ${server.address}, user: deploy, host_key: "${server.hostKey}", identity_file: ${server.identityFile} }`,
      )}\ndatabase:\n  engine: postgresql\n`,
  );
  mkdirSync(path.join(dir, '.stack'), { recursive: true });
  writeFileSync(path.join(dir, '.stack/secrets.prod'), 'SECRET_KEY=bench\n');
  chmodSync(path.join(dir, '.stack/secrets.prod'), 0o600);

  const setup = stack(dir, 'setup', 'prod');
  const deploy = stack(dir, 'deploy', 'prod');
  console.log(`Debian ${release} sandbox ${server.address}, node ${process.version}`);
  console.log(`stack setup with database: (PostgreSQL installed, role, database, pg_hba, timer)  ${seconds(setup.ms)}`);
  console.log(`first deploy                                                                     ${seconds(deploy.ms)}`);

  // Rows of about 230 bytes on disk each, until the database holds SIZE_MB.
  const rows = Math.round((sizeMb * 1024 * 1024) / 230);
  const grow = stack(
    dir,
    'db',
    'psql',
    'prod',
    '--',
    '-c',
    `create table bulk as select g as id, md5(g::text) || md5((g * 7)::text) as a, repeat('x', 100) as b, now() as at from generate_series(1, ${rows}) g; create index on bulk (a)`,
  );
  const size = stack(dir, 'db', 'psql', 'prod', '--', '-At', '-c', 'select pg_database_size(current_database())').stdout;
  console.log(`generated ${rows} rows: database ${(Number(size) / 1024 / 1024).toFixed(0)} MiB (pg_database_size) in ${seconds(grow.ms)}`);

  const backup = stack(dir, 'db', 'backup', 'prod');
  const listed = JSON.parse(stack(dir, 'db', 'backups', 'prod', '--json').stdout).hosts[0].backups.find((b) => b.id === backup.stdout);
  console.log(
    `stack db backup (pg_dump -Fc, then restored into a scratch database and checked)   ${seconds(backup.ms)}  dump ${(listed.bytes / 1024 / 1024).toFixed(1)} MiB, ${listed.seconds} s on the server`,
  );
  const restore = stack(dir, 'db', 'restore', 'prod', backup.stdout, '--yes');
  console.log(`stack db restore (backup of the live one first, app stopped, pg_restore, swap)     ${seconds(restore.ms)}`);
  const t0 = process.hrtime.bigint();
  writeFileSync(path.join(dir, 'known_hosts'), `${server.address} ${server.hostKey}\n`);
  const ssh = ['-i', server.identityFile, '-o', `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`, '-o', 'BatchMode=yes', `root@${server.address}`];
  const timer = await runProgram('ssh', [...ssh, 'systemctl start hello-db-backup.service'], 900_000);
  const timerMs = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`timer backup (systemctl start hello-db-backup.service, exit ${timer.code})                   ${seconds(timerMs)}`);
  // The app's unit is the same with or without a database: its exposure must not change.
  for (const unit of ['hello.service', 'hello-db-backup.service']) {
    const score = await runProgram('ssh', [...ssh, `systemd-analyze security ${unit} --no-pager | tail -n 1`], 60_000);
    console.log(`systemd-analyze security ${unit}: ${score.stdout.trim()}`);
  }
} finally {
  await sandboxDown(name);
}
