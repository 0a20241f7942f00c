/**
 * `stack maintenance ENV on [--message TEXT] | off`: nginx answers every request of the site
 * with a 503 page (Retry-After) except the health check and ACME challenges. The page is a file
 * on the server that the site's configuration looks for on every request: switching needs no
 * reload, and deploys, which never touch it, keep maintenance on until `off`.
 */
import { hostname, userInfo } from 'node:os';
import path from 'node:path';
import pc from 'picocolors';
import { runScript } from '../apply/run-script.js';
import { auditFile } from '../facts/audit.js';
import { call, heredoc, step, wrap } from '../remote/script.js';
import { TemplateEngine } from '../templates/engine.js';
import { displayContent } from '../secrets/secret.js';
import { layoutFor } from '../views/layout.js';
import { selectEnvironment } from './environment.js';
import { forEachHost } from './hosts.js';
import { hostRoles } from '../inventory/resolve.js';
import type { GlobalOptions } from './options.js';

export const DEFAULT_MAINTENANCE_MESSAGE = 'This site is down for maintenance and will be back shortly.';

/** Text as HTML: the page template is rendered without escaping (it is a configuration engine). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

export async function runMaintenance(envName: string | undefined, state: 'on' | 'off', options: { message?: string }, globals: GlobalOptions): Promise<void> {
  const { inventory, env } = await selectEnvironment(globals.inventory, envName);
  const layout = layoutFor(env.app, env.gateway);
  let page = '';
  if (state === 'on') {
    // Overridable like every template: .stack/templates/maintenance/page.html.hbs (or .ejs).
    const engine = new TemplateEngine(path.resolve(inventory.dir, inventory.data.templates), inventory.dir);
    page = displayContent(
      (await engine.render('maintenance/page.html', { app: env.app.name, message: escapeHtml(options.message ?? DEFAULT_MAINTENANCE_MESSAGE) })).content,
    );
  }
  const who = `${userInfo().username}@${hostname()}`;
  await forEachHost(inventory, env, globals, async (shell, host, progress) => {
    // The page is nginx's: only the web hosts have one.
    if (!hostRoles(host).includes('web')) return;
    const ctx = { layout, lock: null, audit: { file: auditFile(layout.app), who, command: `maintenance ${env.name} ${state}` } };
    const lines =
      state === 'on'
        ? [
            step('maintenance page on'),
            ...heredoc(`${call('maintenance_on', layout.maintenance_page)} <<'STACK_PAGE' || fail 'write the maintenance page'`, 'STACK_PAGE', page),
          ]
        : [step('maintenance page off'), `${call('maintenance_off', layout.maintenance_page)} || fail 'remove the maintenance page'`];
    await runScript(shell, host.address, progress, { stdin: wrap(ctx, [...lines, `audit ok ''`], { releaseLock: false }), what: `maintenance ${state}` });
    progress.line(
      state === 'on'
        ? `${pc.yellow('maintenance on:')} ${host.address} answers 503 (${env.app.health} still reaches the app); deploys keep it on until \`stack maintenance ${env.name} off\``
        : `${pc.green('maintenance off:')} ${host.address} serves the app again`,
    );
  });
}
