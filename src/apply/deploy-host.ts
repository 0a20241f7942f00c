/**
 * One host, one command: connect once, gather facts in one round trip, plan, then either print
 * the plan (dry run) or carry it out in as few round trips as the plan allows.
 */
import pc from 'picocolors';
import type { Progress } from '../cli/progress.js';
import { factsScript, parseFacts, type GatheredFacts } from '../facts/gather.js';
import type { Environment } from '../inventory/resolve.js';
import { sslMode } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { changeCount, planDeploy, sha256, type Plan, type ReleasePlan } from '../plan/plan.js';
import { formatPlan } from '../plan/print.js';
import { packSource, type SourceTree } from '../release/source.js';
import { displayContent, type Secret } from '../secrets/secret.js';
import { connectHost, type RemoteShell } from '../ssh/connect.js';
import { buildDesiredState, type DesiredState } from '../state/desired.js';
import type { TemplateEngine } from '../templates/engine.js';
import { redactEnvFileText } from '../views/envfile.js';
import { assumedFacts, type HostFacts } from '../views/facts.js';
import { tlsFor } from '../views/nginx.js';
import { activateScript, healthOnlyScript, provisionScript, releaseScript, type HealthCheck } from './scripts.js';
import { runScript } from './run-script.js';
import { StackError } from '../errors.js';
import { shQuote } from '../remote/quote.js';

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
  releaseId: string;
  by: string;
  askSudoPassword?: () => Promise<string>;
  timeoutMs?: number;
  /** For tests and benchmarks: an already open connection. */
  shell?: RemoteShell;
}

export interface HostRunResult {
  host: string;
  plan: Plan;
  changes: number;
  execs: number;
  ms: number;
  health?: string;
}

export async function runHost(o: HostRunOptions): Promise<HostRunResult> {
  const started = Date.now();
  const shell = o.shell ?? (await connectHost(o.host, { baseDir: o.baseDir, askSudoPassword: o.askSudoPassword, timeoutMs: o.timeoutMs }));
  const execsBefore = shell.execCount;
  try {
    // First render with what can be assumed, to know which files to ask about; then again with
    // the host's real facts (nginx version, CPUs).
    const assumed = await desiredFor(o, assumedFacts(o.env, o.host));
    const tls = tlsFor(o.env, assumed.layout);
    const request = {
      files: new Map(assumed.files.map((f) => [f.path, sha256(f.content)])),
      probes: tls ? [tls.certificate, tls.certificateKey] : [],
    };
    o.progress.step(o.host.address, 'gather facts');
    const r = await shell.sudoScript(factsScript(assumed, request));
    if (r.code !== 0) throw new StackError(`${shell.label}: could not gather facts: ${r.stderr.trim() || `exit ${r.code}`}`);
    o.progress.end(true);
    const facts = parseFacts(r.stdout, (path, content) => (path === assumed.layout.env_file ? redactEnvFileText(content, o.env.app.secrets) : content));
    const desired = await desiredFor(o, {
      nginxVersion: facts.nginxVersion ?? assumedFacts(o.env, o.host).nginxVersion,
      cpus: o.host.cpus ?? facts.cpus ?? undefined,
    });
    knownContents(facts, assumed);

    const release = o.mode === 'deploy' ? planRelease(o, facts) : null;
    const selfSigned =
      sslMode(o.env.ssl) === 'self-signed' && tls && !(facts.present.has(tls.certificate) && facts.present.has(tls.certificateKey))
        ? { cert: tls.certificate, key: tls.certificateKey, domains: o.env.domains }
        : null;
    const plan = planDeploy({ desired, facts, release, selfSigned, scope: o.mode });

    if (o.dryRun) {
      o.progress.line(formatPlan(plan, `${shell.label} (${o.env.name})`));
      return { host: o.host.address, plan, changes: changeCount(plan), execs: shell.execCount - execsBefore, ms: Date.now() - started };
    }

    const health: HealthCheck | null =
      o.mode === 'deploy'
        ? { path: o.env.app.health, host: o.env.domains[0]!, https: tls !== null, app: desired.layout.unit, timeout: 15 }
        : null;
    const provision = provisionScript(plan, o.mode === 'setup' ? (o.host.port ?? 22) : undefined);
    let outcome;
    if (plan.release && o.source) {
      if (provision) await runScript(shell, o.host.address, o.progress, { stdin: provision, what: 'provision' });
      const pack = packSource(o.source);
      await Promise.all([
        pack.done,
        runScript(shell, o.host.address, o.progress, {
          command: `sh -c ${shQuote(releaseScript(plan.release, desired.layout, o.by))}`,
          stdin: pack.stream,
          what: `upload release ${plan.release.id}`,
        }),
      ]);
      outcome = await runScript(shell, o.host.address, o.progress, { stdin: activateScript(plan, desired.layout, health), what: 'activate' });
    } else if (changeCount(plan) > 0 || plan.handlers.length > 0) {
      outcome = await runScript(shell, o.host.address, o.progress, { stdin: activateScript(plan, desired.layout, health, { provision, noCodeYet: !facts.currentRelease && !plan.release }), what: 'activate' });
    } else if (health) {
      outcome = await runScript(shell, o.host.address, o.progress, { stdin: healthOnlyScript(health), what: 'health check' });
    }
    return { host: o.host.address, plan, changes: changeCount(plan), execs: shell.execCount - execsBefore, ms: Date.now() - started, health: outcome?.health };
  } finally {
    if (!o.shell) await shell.close();
  }
}

async function desiredFor(o: HostRunOptions, facts: HostFacts): Promise<DesiredState> {
  return buildDesiredState(o.env, o.host, { engine: o.engine, facts, secrets: o.secrets });
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

function planRelease(o: HostRunOptions, facts: GatheredFacts): ReleasePlan | null {
  if (!o.source) return null;
  if (facts.manifest && facts.manifest.source_hash === o.source.hash && facts.currentRelease) return null;
  return { id: o.releaseId, sourceHash: o.source.hash, requirements: o.requirements ?? null };
}


export function summaryLine(results: HostRunResult[], dryRun: boolean, ms: number, debug = false): string {
  const changes = results.reduce((n, r) => n + r.changes, 0);
  const verb = dryRun ? 'would change' : 'changed';
  const hosts = results
    .map((r) => `${r.host}: ${r.changes} change${r.changes === 1 ? '' : 's'}${r.health ? `, health ${r.health}` : ''}${debug ? `, ${r.execs} ssh round trips` : ''}`)
    .join('; ');
  return `${dryRun ? pc.yellow('dry run:') : pc.green('done:')} ${verb} ${changes} thing${changes === 1 ? '' : 's'} on ${results.length} host${results.length === 1 ? '' : 's'} in ${(ms / 1000).toFixed(1)}s (${hosts})`;
}
