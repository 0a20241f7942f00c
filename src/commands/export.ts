/**
 * `stack export ansible ENV --out DIR`: the pipeline stopped after templates (like render), each
 * host rendered with the facts the export must leave to the server, and the code packed as a
 * deploy ships it; src/export/ansible.ts turns that into the playbook's files, written here.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import type { GlobalOptions } from './options.js';
import { selectEnvironment } from './environment.js';
import { UsageError } from '../errors.js';
import { exportAnsible, type ExportRelease } from '../export/ansible.js';
import { CPUS_A, CPUS_B, type HostRender, NGINX_AFTER, NGINX_BEFORE, secretSentinel } from '../export/managed-files.js';
import { loadCustomCertificate } from '../certs/custom.js';
import { checkWsgiModule } from '../release/wsgi.js';
import { hasRequirements, packSource, readSource } from '../release/source.js';
import { venvVersion } from '../release/venv.js';
import { loadRoles } from '../roles/load.js';
import { Secret } from '../secrets/secret.js';
import { buildDesiredState } from '../state/desired.js';
import { TemplateEngine } from '../templates/engine.js';
import type { Inventory } from '../inventory/load.js';
import type { Environment } from '../inventory/resolve.js';

export interface ExportOptions {
  out: string;
  force?: boolean;
}

export async function runExport(format: string, envName: string | undefined, options: ExportOptions, globals: GlobalOptions): Promise<void> {
  if (format !== 'ansible')
    throw new UsageError(`stack export: no format "${format}"`, { hint: 'the one format is ansible: stack export ansible ENV --out DIR' });
  const out = path.resolve(options.out);
  if (existsSync(out) && readdirSync(out).length > 0 && !options.force) {
    throw new UsageError(`${options.out} is not empty; the export writes into an empty folder only`, {
      hint: 'give a new folder, or --force to write over what an earlier export wrote there (other files are kept)',
    });
  }
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const files = exportAnsible({
    env,
    hosts: await renderHosts(inventory, env),
    identityFiles: identityFiles(inventory, env),
    release: await packRelease(inventory, env, globals.inventory),
    certificateKey: typeof env.ssl === 'object' ? path.resolve(inventory.dir, env.ssl.key.replace(/^~(?=\/|$)/, homedir())) : undefined,
  });
  // The role is the export's own: with --force, an earlier export's role goes as a whole, so that
  // no file of an older rendering stays behind. Anything else in DIR is left alone.
  if (options.force) await rm(path.join(out, 'roles', 'stack'), { recursive: true, force: true });
  for (const f of files) {
    const target = path.join(out, f.path);
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, f.content, { mode: f.mode ?? 0o644 });
  }
  const rel = path.relative(process.cwd(), out) || '.';
  globals.output.print(`wrote ${files.length} files for ${env.hosts.length} host(s) of ${env.name} under ${rel}/\n`);
  if (env.app.secrets.length > 0)
    globals.output.note(`the playbook reads ${env.app.secrets.join(', ')} from its environment (lookup('env', NAME)); export them first`);
  globals.output.note(`run: ansible-playbook -i ${rel}/inventory.yml ${rel}/site.yml`);
}

/** Each host three times: as render assumes it, with a newer nginx, and with another CPU count. */
export async function renderHosts(inventory: Inventory, env: Environment): Promise<HostRender[]> {
  const engine = new TemplateEngine(path.resolve(inventory.dir, inventory.data.templates), inventory.dir);
  const roles = loadRoles();
  const certificate = loadCustomCertificate(inventory, env);
  checkWsgiModule(inventory, env);
  // Stand-ins for the secrets: the export never reads their values.
  const secrets = new Map(env.app.secrets.map((n) => [n, new Secret(n, secretSentinel(n))]));
  const render = (host: Environment['hosts'][number], nginxVersion: [number, number, number], cpus: number) =>
    buildDesiredState(env, host, { engine, roles, certificate, secrets, facts: { nginxVersion, cpus: host.cpus ?? cpus } });
  const hosts: HostRender[] = [];
  for (const host of env.hosts) {
    hosts.push({
      host,
      base: await render(host, NGINX_BEFORE, CPUS_A),
      newerNginx: await render(host, NGINX_AFTER, CPUS_A),
      otherCpus: await render(host, NGINX_BEFORE, CPUS_B),
    });
  }
  return hosts;
}

export function identityFiles(inventory: Inventory, env: Environment): Map<string, string> {
  const files = new Map<string, string>();
  for (const h of env.hosts) {
    if (h.identity_file) files.set(h.address, path.resolve(inventory.dir, h.identity_file.replace(/^~(?=\/|$)/, homedir())));
  }
  return files;
}

/** The code as `stack deploy` would ship it now: the same file list, tarball and virtualenv digest. */
export async function packRelease(inventory: Inventory, env: Environment, inventoryFile: string): Promise<ExportRelease> {
  const sourceDir = path.resolve(inventory.dir, env.app.source);
  const source = await readSource(sourceDir, { exclude: env.app.exclude, inventoryFile: path.resolve(inventoryFile) });
  checkWsgiModule(inventory, env, source.fileList);
  let requirements: string | null = null;
  if (env.app.requirements) {
    const file = path.join(sourceDir, env.app.requirements);
    if (!existsSync(file) || !source.fileList.includes(env.app.requirements)) {
      throw new UsageError(`app.requirements: ${env.app.requirements} is not shipped from ${env.app.source}`, {
        hint: 'fix the path (relative to app.source) or remove the key',
      });
    }
    requirements = hasRequirements(readFileSync(file, 'utf8')) ? env.app.requirements : null;
  }
  const index = env.app.index_url ? { url: new Secret('app.index_url', env.app.index_url), from: 'app.index_url' } : null;
  const venv = venvVersion(sourceDir, source, requirements, index);
  const pack = packSource(source);
  const chunks: Buffer[] = [];
  for await (const chunk of pack.stream) chunks.push(chunk as Buffer);
  await pack.done;
  const git = await $({ quiet: true, nothrow: true, cwd: sourceDir })`git rev-parse HEAD`;
  return {
    tarball: Buffer.concat(chunks),
    sourceHash: source.hash,
    fileList: source.fileList,
    venvDigest: venv.digest,
    requirements,
    gitCommit: git.exitCode === 0 ? git.stdout.trim() : null,
    inventoryHash: createHash('sha256').update(readFileSync(inventoryFile)).digest('hex'),
    indexUrl: env.app.index_url ?? null,
  };
}
