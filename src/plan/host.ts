/**
 * Everything one host's command decides once its facts are in, as one pure function: which
 * certificate work is due (self-signed to generate, Let's Encrypt to ask for), the plan, whether
 * the code ships, whether the server has room for it, and the ordered steps apply will run.
 * `deploy --dry-run` prints exactly this; apply only carries it out.
 */
import { certificateNeed, letsEncryptCertFile, letsEncryptRenewalConf } from '../certs/letsencrypt.js';
import type { GatheredFacts } from '../facts/host.js';
import { type Environment, sslMode } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';
import { type SpaceNeed, spaceShortfall } from '../release/space.js';
import type { DesiredState } from '../state/desired.js';
import { tlsFor } from '../views/nginx.js';
import { planDatabase } from './database.js';
import { type CodeVersion, type Plan, planDeploy } from './plan.js';
import { planSteps, type Step } from './steps.js';

export interface HostPlanInput {
  env: Environment;
  host: Host;
  mode: 'deploy' | 'setup';
  /** Rendered with the host's real facts. */
  desired: DesiredState;
  facts: GatheredFacts;
  /** The code about to ship (deploy), or null (setup). */
  code: CodeVersion | null;
  /** Bytes of the source tarball, to check the server has room for it. */
  sourceBytes?: number;
  /** The clock, passed in: certificate validity is judged against it. */
  now: Date;
}

/** What provisioning needs beyond the plan. */
export interface Provisioning {
  layout: DesiredState['layout'];
  /** The static folder, relative to a release (kept readable for nginx when releases are sealed). */
  staticPath: string | null;
  /** setup: open the SSH port too when ufw is there. */
  sshPort?: number;
}

export interface HostPlan {
  plan: Plan;
  steps: Step[];
  provisioning: Provisioning;
  /** A new release is uploaded and built (not a configuration-only copy of the live one). */
  uploads: boolean;
  /** The server lacks room for the new release; the deploy must not start. */
  shortfall: SpaceNeed | null;
}

export function planHost(i: HostPlanInput): HostPlan {
  const { env, desired, facts } = i;
  const layout = desired.layout;
  const tls = tlsFor(env, layout);
  // Generated once on the server and kept: only when either file is missing.
  const selfSigned =
    sslMode(env.ssl) === 'self-signed' && tls && !(facts.present.has(tls.certificate) && facts.present.has(tls.certificateKey))
      ? { cert: tls.certificate, key: tls.certificateKey, domains: env.domains }
      : null;
  const certificate = certificateNeed(env, layout, facts.publicFiles.get(letsEncryptCertFile(env)), i.now, facts.publicFiles.get(letsEncryptRenewalConf(env)));
  const database = env.database ? planDatabase({ db: env.database, role: layout.app, facts: facts.database, host: i.host.address, env: env.name }) : null;
  const plan = planDeploy({ desired, facts, code: i.code, selfSigned, certificate, scope: i.mode, database });
  const provisioning: Provisioning = {
    layout,
    staticPath: env.app.static?.path ?? null,
    sshPort: i.mode === 'setup' ? (i.host.port ?? 22) : undefined,
  };
  const uploads = plan.release !== null && !plan.release.copyFrom && i.code !== null;
  const steps = planSteps(plan, { uploads, provisions: provisions(plan, provisioning), checksHealth: i.mode === 'deploy' });
  const shortfall = uploads && i.sourceBytes !== undefined ? spaceShortfall(facts.freeKib, i.sourceBytes) : null;
  return { plan, steps, provisioning, uploads, shortfall };
}

/** Whether provisioning has anything to do: the same conditions its script has lines for. */
export function provisions(plan: Plan, p: Provisioning): boolean {
  const u = plan.upgrade;
  return (
    plan.packages.length > 0 ||
    plan.users.length > 0 ||
    plan.memberships.length > 0 ||
    plan.leaves.length > 0 ||
    plan.dirs.length > 0 ||
    (u !== null && (u.sealReleases || u.media !== null || u.socketGroup !== null)) ||
    plan.selfSigned !== null ||
    plan.database !== null ||
    p.sshPort !== undefined
  );
}
