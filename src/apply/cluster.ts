/**
 * What the hosts of an environment share that only one of them can make: the password the app's
 * role logs in to PostgreSQL with, when the database runs on a db host and the app and workers
 * on others. It is made on the db host (root's alone) and read from there into a Secret, in
 * memory only; the app hosts' env files get it like any other secret. Never printed, never on a
 * command line: it comes back on the script's output, inside the SSH connection.
 */
import { StackError } from '../errors.js';
import type { Environment } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { call, wrap } from '../remote/script.js';
import { Secret } from '../secrets/secret.js';
import { type ConnectOptions, connectHost, type RemoteShell } from '../ssh/connect.js';
import { layoutFor } from '../views/layout.js';
import { DB_PASSWORD_SECRET, dbPasswordFile, separateDbHost } from '../views/topology.js';

export interface ClusterOptions extends ConnectOptions {
  /** A dry run: read the password, make none; a missing one stands as NOT_MADE_YET. */
  dryRun?: boolean;
  /** How to reach the host: SSH by default; tests pass a recording shell. */
  connect?: (host: Host, options: ConnectOptions) => Promise<RemoteShell>;
}

/** What a dry run's env files hold before setup made the password: secret-valued like it, so diffs never show either. */
export const NOT_MADE_YET = 'not-made-yet';

/** The script that makes the password when missing (and gives it to the role) and prints it; `read`: makes nothing. */
export function clusterPasswordScript(env: Environment, read = false): string {
  const layout = layoutFor(env.app, env.gateway);
  const args = [dbPasswordFile(env.app.name), layout.app, ...(read ? ['read'] : [])];
  return wrap({ layout, lock: null, audit: null }, [`${call('db_cluster_password', ...args)} || fail 'database password'`], {
    releaseLock: false,
  });
}

/** The password in the script's output ("-": none made yet, NOT_MADE_YET), or null. */
export function parseClusterPassword(stdout: string): string | null {
  const line = stdout.split('\n').find((l) => l.startsWith('@@dbpassword '));
  const value = line?.slice('@@dbpassword '.length).trim();
  if (value === '-') return NOT_MADE_YET;
  return value && /^[0-9a-f]{64}$/.test(value) ? value : null;
}

/**
 * The secrets an environment's hosts share, by name (DB_PASSWORD_SECRET): empty when nothing is
 * shared (one host, or the database on the app's host). One connection to the db host, one sudo
 * round trip.
 */
export async function clusterSecrets(env: Environment, options: ClusterOptions): Promise<Map<string, Secret>> {
  const dbHost = separateDbHost(env);
  const secrets = new Map<string, Secret>();
  if (!dbHost) return secrets;
  const shell = await (options.connect ?? connectHost)(dbHost, options);
  try {
    const r = await shell.sudoScript(clusterPasswordScript(env, options.dryRun === true));
    const password = r.code === 0 ? parseClusterPassword(r.stdout) : null;
    if (!password) {
      // stderr may say why (no room, a read-only /etc); it never holds the password.
      throw new StackError(
        `${shell.label}: could not make or read the database password in ${dbPasswordFile(env.app.name)}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
        {
          hint: 'the db host must let the login user run sudo; check the file (root-only, 64 hex digits) and run the command again',
        },
      );
    }
    secrets.set(DB_PASSWORD_SECRET, new Secret(DB_PASSWORD_SECRET, password));
    return secrets;
  } finally {
    await shell.close();
  }
}
