/** `stack render ENV`: the pipeline stopped after templates, written to a folder or printed. */
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pc from 'picocolors';
import type { GlobalOptions } from './options.js';
import { selectEnvironment } from './environment.js';
import { UsageError } from '../errors.js';
import { displayContent } from '../secrets/secret.js';
import { buildDesiredState, configFilesFor, type DesiredState } from '../state/desired.js';
import { loadCustomCertificate } from '../certs/custom.js';
import { checkWsgiModule } from '../release/wsgi.js';
import { TemplateEngine } from '../templates/engine.js';
import { assumedFacts } from '../views/facts.js';
import { loadRoles } from '../roles/load.js';
import type { Environment } from '../inventory/resolve.js';
import type { Inventory } from '../inventory/load.js';

export interface RenderOptions {
  out?: string;
  only?: string;
  check?: boolean;
}

/** Desired state of every host of an environment, with the facts `render` can assume. */
export async function renderEnvironment(inventory: Inventory, env: Environment, only?: string[]): Promise<DesiredState[]> {
  const engine = new TemplateEngine(path.resolve(inventory.dir, inventory.data.templates), inventory.dir);
  const roles = loadRoles();
  if (only) {
    const unknown = only.filter((r) => !roles.some((role) => role.name === r));
    if (unknown.length > 0) throw new UsageError(`--only: no role named ${unknown.join(', ')}`, { hint: `roles: ${roles.map((r) => r.name).join(', ')}` });
  }
  // A custom certificate is checked here too: what render shows is what deploy would upload.
  const certificate = loadCustomCertificate(inventory, env);
  checkWsgiModule(inventory, env);
  const states: DesiredState[] = [];
  for (const host of env.hosts) {
    states.push(await buildDesiredState(env, host, { engine, facts: assumedFacts(env, host), only, roles, certificate }));
  }
  return states;
}

export async function runRender(envName: string | undefined, options: RenderOptions, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const only = options.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const states = await renderEnvironment(inventory, env, only);

  for (const override of new Set(states.flatMap((s) => s.files.map((f) => f.override).filter(Boolean)))) {
    globals.output.note(`${pc.yellow('override:')} using ${override} instead of the built-in template`);
  }

  if (options.out) {
    for (const state of states) await writeTree(options.out, state);
    const count = states.reduce((n, s) => n + s.files.length, 0);
    globals.output.print(`wrote ${count} files for ${states.length} host(s) of ${env.name} under ${options.out}/\n`);
  } else {
    for (const state of states) globals.output.print(stateText(state));
  }

  if (options.check) {
    const { checkNginxSites, assertChecked } = await import('../checks/nginx.js');
    const { checkSystemdUnits } = await import('../checks/systemd.js');
    for (const state of states) {
      for (const result of [await checkNginxSites(configFilesFor(state, 'nginx')), await checkSystemdUnits(configFilesFor(state, 'systemd'))]) {
        assertChecked(result);
        globals.output.note(`${pc.green('ok:')} ${result.tool} accepts the files for ${state.host.address}`);
      }
    }
  }
}

/** Every file of a host under a header naming its path, mode, owner and origin; secrets redacted. */
function stateText(state: DesiredState): string {
  const out: string[] = [];
  for (const f of state.files) {
    const origin = f.override ? `override ${f.override}` : f.source;
    out.push(`${pc.bold(`==> ${state.host.address}:${f.path}`)} ${pc.dim(`(${f.mode} ${f.owner}:${f.group}, ${origin})`)}\n`, displayContent(f.content), '\n');
  }
  for (const l of state.links) out.push(`${pc.bold(`==> ${state.host.address}:${l.path}`)} ${pc.dim(`-> ${l.target}`)}\n\n`);
  return out.join('');
}

async function writeTree(outDir: string, state: DesiredState): Promise<void> {
  const base = path.join(outDir, state.host.address);
  for (const f of state.files) {
    const target = path.join(base, f.path);
    await mkdir(path.dirname(target), { recursive: true });
    // Rendered secrets are always redacted, but the env file is still written privately.
    await writeFile(target, displayContent(f.content), { mode: Number.parseInt(f.mode, 8) });
  }
  for (const l of state.links) {
    const target = path.join(base, l.path);
    await mkdir(path.dirname(target), { recursive: true });
    await rm(target, { force: true });
    await symlink(path.relative(path.dirname(l.path), l.target), target);
  }
}
