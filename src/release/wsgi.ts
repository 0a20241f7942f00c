/**
 * Whether `app.wsgi` names a module that is really in the source: `blog.wsgi:application` needs
 * `blog/wsgi.py` (or a package `blog/wsgi/`) under `app.source`. Caught here, a wrong module is
 * one located error before anything is sent; on the server it would be a crash-looping unit.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { InventoryError } from '../errors.js';
import type { Inventory } from '../inventory/load.js';
import type { Environment } from '../inventory/resolve.js';

/** The files that would hold the module, relative to the source: a module file, then a package. */
export function wsgiModuleFiles(wsgi: string): string[] {
  const parts = wsgi.slice(0, wsgi.indexOf(':')).split('.');
  return [`${parts.join('/')}.py`, `${parts.join('/')}/__init__.py`];
}

/**
 * The module's problem, or null: with `shipped` (a deploy's file list) it must be shipped, else it
 * must exist in `sourceDir`. A source folder that does not exist is not judged here (render works
 * without one; deploy stops on it where the source is read).
 */
export function wsgiProblem(wsgi: string, sourceDir: string, shipped?: readonly string[]): string | null {
  if (!existsSync(sourceDir) || !statSync(sourceDir).isDirectory()) return null;
  const [file, pkg] = wsgiModuleFiles(wsgi) as [string, string];
  const packageDir = path.dirname(pkg);
  const found = existsSync(path.join(sourceDir, file)) ? file : existsSync(path.join(sourceDir, packageDir)) ? pkg : null;
  if (!found) {
    return `${wsgi.slice(0, wsgi.indexOf(':'))} is not in ${sourceDir}: neither ${file} nor a package ${packageDir}/ is there; give the module's path from app.source, in dots`;
  }
  if (shipped && found === file && !shipped.includes(file)) {
    return `${file} exists but is not shipped (untracked, ignored by .gitignore, or in app.exclude?)`;
  }
  return null;
}

/** Stops the command with the error at `app.wsgi` where the inventory sets it for this environment. */
export function checkWsgiModule(inventory: Inventory, env: Environment, shipped?: readonly string[]): void {
  const problem = wsgiProblem(env.app.wsgi, path.resolve(inventory.dir, env.app.source), shipped);
  if (!problem) return;
  const inEnvironment = inventory.data.environments[env.name]?.app?.wsgi !== undefined;
  throw new InventoryError([inventory.problemAt(inEnvironment ? ['environments', env.name, 'app', 'wsgi'] : ['app', 'wsgi'], problem)]);
}
