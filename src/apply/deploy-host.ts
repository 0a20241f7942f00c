/**
 * One host, one command: connect once, gather facts (and take the deploy lock) in one round
 * trip, plan, then either return the plan (dry run) or carry it out in as few round trips as the
 * plan allows. The lock is released by the last script, or here if we stop before it.
 */
import { randomUUID } from 'node:crypto';
import pc from 'picocolors';
import type { Progress } from '../ui/progress.js';
import { auditFile } from '../facts/audit.js';
import { both, type Fact } from '../facts/fact.js';
import { hostFact, type GatheredFacts } from '../facts/host.js';
import type { StatusFacts } from '../facts/status.js';
import { lockRequest } from '../facts/lock.js';
import { releaseLockScript, runWithLock } from './lock.js';
import type { Layout } from '../views/layout.js';
import type { Environment } from '../inventory/resolve.js';
import { sslMode } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { changeCount, sha256, type CodeVersion } from '../plan/plan.js';
import { backsUpBeforeDeploy, backupId, hooksRun } from '../plan/database.js';
import { planHost } from '../plan/host.js';
import { shQuote } from '../remote/quote.js';
import { packSource, type SourceTree } from '../release/source.js';
import { indexThenTarball, type VenvVersion } from '../release/venv.js';
import { describeShortfall } from '../release/space.js';
import { StackError } from '../errors.js';
import { displayContent, type Secret } from '../secrets/secret.js';
import { redactValues } from '../secrets/redact.js';
import { type ConnectOptions, connectHost, type RemoteShell } from '../ssh/connect.js';
import { buildDesiredState, type DesiredState } from '../state/desired.js';
import type { Role } from '../roles/load.js';
import type { TemplateEngine } from '../templates/engine.js';
import { redactEnvFileText } from '../views/envfile.js';
import { assumedFacts, type HostFacts } from '../views/facts.js';
import { tlsFor } from '../views/nginx.js';
import { dbPasswordFile, GATEWAY_PORT, type Topology, topologyOf } from '../views/topology.js';
import type { SharedDatabase } from '../plan/database.js';
import type { CustomCertificate } from '../certs/inspect.js';
import { letsEncryptCertFile, letsEncryptRenewalConf, obtainCertificateScript } from '../certs/letsencrypt.js';
import { applySteps, type RunStep, type StepScripts } from './apply.js';
import type { HostRunResult } from '../ui/results.js';
import { runScript } from './run-script.js';
import {
  activateScript,
  healthOnlyScript,
  provisionLines,
  releaseScript,
  shippedListText,
  type HealthCheck,
  type ManifestInfo,
  type RunContext,
  wrap,
} from './scripts.js';

export interface HostRunOptions {
  env: Environment;
  host: Host;
  engine: TemplateEngine;
  secrets: ReadonlyMap<string, Secret>;
  baseDir: string;
  progress: Progress;
  /** deploy ships code and checks health; setup provisions only. */
  mode: 'deploy' | 'setup';
  dryRun: boolean;
  source?: SourceTree;
  requirements?: string | null;
  /** What the new code's virtualenv is made of (deploy). */
  venv?: VenvVersion;
  /** The package index's URL, sent ahead of the tarball (never on a command line). */
  index?: Secret | null;
  releaseId: string;
  manifest: ManifestInfo;
  /** Wait for another deploy's lock instead of failing. */
  wait?: boolean;
  askSudoPassword?: () => Promise<string>;
  timeoutMs?: number;
  /** `ssl: { cert, key }`, already checked. */
  certificate?: CustomCertificate | null;
  /**
   * The one host of several that runs the server hooks (a migration) when they share one
   * database on a db host; the orchestrator deploys it before the others. Undefined: true.
   */
  primary?: boolean;
  /**
   * Takes the backup before this host's hooks on the db host, when the database is there and
   * not here (returns its id); called only when a new release runs hooks over a live one.
   */
  backupElsewhere?: () => Promise<string>;
  /** `stack status`: more to ask in the facts' round trip (a dry run). */
  statusFact?: Fact<StatusFacts>;
  /** How to reach the host: SSH by default; tests pass a recording shell. */
  connect?: (host: Host, options: ConnectOptions) => Promise<RemoteShell>;
  /** roles/*.yml, parsed once for every host and both renders (else each render parses them again). */
  roles?: Role[];
}

/** What one host's run returns, for the output to print (src/ui/): nothing is printed here but progress. */
export function healthCheckFor(env: Environment, https: boolean, layout: Layout): HealthCheck {
  const s = env.app.static;
  return {
    path: env.app.health,
    host: env.domains[0]!,
    https,
    app: layout.unit,
    ...env.app.health_check,
    ...(s ? { static: { dir: `${layout.current}/${s.path}`, url: s.url } } : {}),
  };
}

/**
 * The health check of one host: through its own nginx on a web host; on an app host without
 * nginx, the gateway itself on the TCP address the web hosts use (no static files there; with
 * gunicorn, which speaks HTTP there); none on a host that serves nothing (a worker or db host:
 * their units must stay up instead).
 */
export function hostHealthCheck(env: Environment, https: boolean, layout: Layout, topology: Topology): HealthCheck | null {
  // Only gunicorn speaks HTTP on its socket and port; uWSGI speaks its own protocol to nginx.
  const http = env.gateway.server === 'gunicorn';
  if (topology.web) {
    const check = healthCheckFor(env, https, layout);
    const balanced = topology.app && topology.upstreams.some((u) => !u.local);
    return balanced && http ? { ...check, socket: layout.socket } : check;
  }
  if (!topology.app || !http) return null;
  const { static: _none, ...check } = healthCheckFor(env, false, layout);
  return { ...check, via: { address: topology.privateAddress, port: GATEWAY_PORT } };
}

export async function runHost(o: HostRunOptions): Promise<HostRunResult> {
  const started = Date.now();
  // First render with what can be assumed, to know which files to ask about; then again with
  // the host's real facts (nginx version, CPUs). Before connecting: a template that fails to
  // render must not leave a connection open behind its error.
  const assumed = await desiredFor(o, assumedFacts(o.env, o.host));
  const shell = await (o.connect ?? connectHost)(o.host, { baseDir: o.baseDir, askSudoPassword: o.askSudoPassword, timeoutMs: o.timeoutMs });
  const execsBefore = shell.execCount;
  const redact = redactValues([...o.secrets.values(), ...(o.index ? [o.index] : [])]);
  const label = o.host.address;
  const layout = assumed.layout;
  // What this host runs in its environment (roles): the database's facts and work only where it
  // runs, code only where it runs, the health check through nginx only where nginx runs.
  const topology = topologyOf(o.env, o.host);
  const token = randomUUID();
  const lock = lockRequest(layout.app, { dryRun: o.dryRun, by: o.manifest.by, command: `${o.mode} ${o.env.name}`, token, since: new Date() });
  let lockHeld = false;
  // tar, while it packs the upload: stopped whatever happens, or a lost connection leaves it blocked.
  let stopPacking: (() => void) | undefined;
  try {
    const tls = tlsFor(o.env, layout);
    const letsEncrypt = sslMode(o.env.ssl) === 'letsencrypt';
    const request = {
      files: new Map(assumed.files.map((f) => [f.path, sha256(f.content)])),
      secret: new Set(assumed.files.filter((f) => f.secret).map((f) => f.path)),
      probes: tls ? [tls.certificate, tls.certificateKey] : [],
      publicFiles: letsEncrypt ? [letsEncryptCertFile(o.env), letsEncryptRenewalConf(o.env)] : [],
      shippedHash: o.mode === 'deploy' && o.source ? sha256(shippedListText(o.source.fileList)) : undefined,
      venvDigest: o.mode === 'deploy' && o.source ? o.venv?.digest : undefined,
      database: o.env.database && topology.db ? { role: layout.app, name: o.env.database.name } : undefined,
    };
    const redactFile = (path: string, content: string) => (path === layout.env_file ? redactEnvFileText(content, o.env.app.secrets) : content);
    const gather = hostFact(assumed, request, redactFile);
    const round = await runWithLock(shell, lock, both<GatheredFacts, StatusFacts>(gather, o.statusFact ?? null), {
      progress: o.progress,
      host: label,
      env: o.env.name,
      wait: o.wait,
    });
    const [facts, status] = round.value;
    lockHeld = round.acquired;

    const desired = await desiredFor(o, {
      nginxVersion: facts.nginxVersion ?? assumedFacts(o.env, o.host).nginxVersion,
      cpus: o.host.cpus ?? facts.cpus ?? undefined,
    });
    knownContents(facts, assumed);
    if (o.mode === 'deploy' && o.source && !o.venv) throw new Error('a deploy of code needs its virtualenv version (venvVersion)');
    const code: CodeVersion | null =
      o.mode === 'deploy' && o.source && o.venv && (topology.app || topology.worker)
        ? { id: o.releaseId, sourceHash: o.source.hash, requirements: o.requirements ?? null, venv: o.venv, fileList: o.source.fileList }
        : null;
    const { plan, steps, provisioning, shortfall } = planHost({
      env: hostDatabaseEnv(o.env, topology),
      host: o.host,
      mode: o.mode,
      desired,
      facts,
      code,
      sourceBytes: o.source?.bytes,
      now: new Date(),
    });
    if (shortfall) {
      const why = describeShortfall(shortfall, o.source!.bytes, layout.releases);
      if (!o.dryRun) {
        throw new StackError(`${shell.label}: ${why}`, {
          hint: 'free some space on the server (fewer releases kept with `keep:`, old logs), then deploy again; nothing was changed',
        });
      }
      o.progress.line(pc.yellow(`note: ${why}`));
    }

    const result = (more: Partial<HostRunResult>): HostRunResult => ({
      host: label,
      label: shell.label,
      plan,
      steps,
      changes: changeCount(plan),
      execs: shell.execCount - execsBefore,
      ms: Date.now() - started,
      previous: facts.currentRelease,
      ...more,
    });
    // A dry run stops here; the plan, its steps and the lock's holder are the result (src/ui/ prints them).
    if (o.dryRun) return result({ lockHolder: round.holder, ...(status ? { status } : {}) });

    const ctx: RunContext = {
      layout,
      lock: { dir: lock.dir, token },
      audit: { file: auditFile(layout.app), who: o.manifest.by, command: `${o.mode} ${o.env.name}` },
    };
    const health = o.mode === 'deploy' ? hostHealthCheck(o.env, tls !== null, layout, topology) : null;
    // With one database for several hosts, one host (the primary) runs the hooks that change it.
    const runsHooks = o.primary !== false;
    const hooks = {
      build: o.env.hooks.build,
      before_activate: runsHooks ? o.env.hooks.before_activate : [],
      after_activate: runsHooks ? o.env.hooks.after_activate : [],
      timeout: o.env.hooks.timeout,
    };
    const db = topology.db ? o.env.database : null;
    const backup =
      plan.release && db && backsUpBeforeDeploy(db, hooksRun(hooks), facts.currentRelease !== null)
        ? { dir: layout.backup_dir, db: db.name, keep: db.backups.keep, id: backupId(o.manifest.created, 'deploy') }
        : null;
    // The database on a db host of its own: the backup before this host's hooks is taken there.
    const shared = o.env.database && !topology.db && o.backupElsewhere ? o.env.database : null;
    const elsewhere = plan.release && shared && backsUpBeforeDeploy(shared, hooksRun(hooks), facts.currentRelease !== null) ? await o.backupElsewhere!() : null;
    const activate = (provision: string[]) =>
      activateScript(plan, ctx, {
        health,
        provision,
        noCodeYet: !facts.currentRelease && !plan.release,
        managedFiles: desired.files.map((f) => f.path),
        hooks,
        backup,
        backedUpElsewhere: elsewhere,
        parts: desired.parts,
        staticPath: provisioning.staticPath,
        keep: o.env.keep,
        manifest: o.manifest,
      });
    const run: RunStep = (what, stdin, command, hint) =>
      runScript(shell, label, o.progress, { stdin, command, what, redact, hint, healthPath: health ? `GET ${health.path}` : undefined });
    const scripts: StepScripts = {
      provision: () => wrap(ctx, provisionLines(plan, provisioning), { releaseLock: false }),
      certificate: () => ({
        // Planned only for ssl: letsencrypt, whose desired state always has the stand-in block.
        script: obtainCertificateScript(plan.certificate!, ctx, desired.acmeStandIn!),
        hint: `only provisioning ran; the site's configuration and release are untouched and it serves what it served before. Check that the server reaches ${plan.certificate!.server}, and that every domain resolves to this server with port 80 open`,
      }),
      upload: () => {
        const pack = packSource(o.source!);
        stopPacking = pack.stop;
        // The index's URL, when there is one, goes ahead of the tarball on stdin (receive_index).
        if (plan.release!.venv.index && !o.index) throw new Error(`the plan names a package index (${plan.release!.venv.index}) but none was given`);
        const stdin = o.index && plan.release!.venv.index ? indexThenTarball(o.index.reveal(), pack.stream) : pack.stream;
        return { command: `sh -c ${shQuote(releaseScript(plan.release!, ctx))}`, stdin, packed: pack.done };
      },
      activate: (withProvision) => activate(withProvision ? provisionLines(plan, provisioning) : []),
      health: () => healthOnlyScript(health, ctx),
      unlock: () => releaseLockScript(lock.dir, token),
    };
    const outcome = await applySteps(steps, scripts, run);
    lockHeld = false;
    const backedUp = backup?.id ?? elsewhere;
    return result({ health: outcome?.health, release: plan.release?.id, ...(backedUp ? { backup: backedUp } : {}) });
  } finally {
    // A script that ran to its end released the lock itself; this covers stopping before that.
    // On a broken connection the server-side script, if any, finishes and releases it.
    stopPacking?.();
    if (lockHeld) await shell.sudoScript(releaseLockScript(lock.dir, token)).catch(() => undefined);
    await shell.close();
  }
}

/**
 * The environment as this host's database work sees it: no database where it does not run; on a
 * db host that app and worker hosts elsewhere reach, the addresses they connect from.
 */
function hostDatabaseEnv(env: Environment, t: Topology): Environment {
  if (!env.database || !t.db) return { ...env, database: null };
  if (t.dbClients.length === 0) return env;
  const database: SharedDatabase = {
    ...env.database,
    clients: t.dbClients,
    listen: `localhost,${t.privateAddress}`,
    passwordFile: dbPasswordFile(env.app.name),
  };
  return { ...env, database };
}

async function desiredFor(o: HostRunOptions, facts: HostFacts): Promise<DesiredState> {
  return buildDesiredState(o.env, o.host, { engine: o.engine, facts, secrets: o.secrets, certificate: o.certificate, roles: o.roles });
}

/**
 * The facts script sends a file's content only when it differs from the first (assumed) render.
 * When it did not differ, the remote content IS that render, so the diff can still be shown.
 */
function knownContents(facts: GatheredFacts, assumed: DesiredState): void {
  for (const f of assumed.files) {
    const remote = facts.files.get(f.path);
    if (remote?.exists && remote.content === undefined && remote.sha256 === sha256(f.content)) remote.content = displayContent(f.content);
  }
}
