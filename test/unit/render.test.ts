/**
 * Every built-in template against every fixture inventory: a snapshot of each rendered file,
 * the nginx sites through the real `nginx -t`, the units through `systemd-analyze verify`.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { $ } from 'zx';
import { loadInventory } from '../../src/inventory/load.js';
import { renderEnvironment } from '../../src/commands/render.js';
import { displayContent } from '../../src/secrets/secret.js';
import { checkNginxSites } from '../../src/checks/nginx.js';
import { checkSystemdUnits } from '../../src/checks/systemd.js';
import { parseNginxVersion, versionAtLeast } from '../../src/views/facts.js';
import { configFilesFor, type DesiredState } from '../../src/state/desired.js';

const FIXTURES = path.resolve(__dirname, '../fixtures/inventories');
const fixtures = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.yml'))
  .sort();

const localNginx = parseNginxVersion((await $({ quiet: true, nothrow: true })`nginx -v`).stderr.match(/nginx\/([\d.]+)/)?.[1] ?? '0.0.0');

async function statesOf(fixture: string): Promise<{ env: string; states: DesiredState[] }[]> {
  const inventory = await loadInventory(path.join(FIXTURES, fixture));
  const out = [];
  for (const [name, env] of Object.entries(inventory.environments)) out.push({ env: name, states: await renderEnvironment(inventory, env) });
  return out;
}

describe.each(fixtures)('%s', (fixture) => {
  it('renders every file as in its snapshot', async () => {
    for (const { env, states } of await statesOf(fixture)) {
      for (const state of states) {
        for (const f of state.files) {
          const snap = path.join('__snapshots__', fixture.replace(/\.yml$/, ''), env, state.host.address, `${f.path}.snap`);
          await expect(`${f.mode} ${f.owner}:${f.group}\n${displayContent(f.content)}`).toMatchFileSnapshot(snap);
        }
      }
    }
  });

  it('passes nginx -t', async () => {
    for (const { states } of await statesOf(fixture)) {
      for (const state of states) {
        const sites = configFilesFor(state, 'nginx');
        expect(sites).toHaveLength(1);
        const target = parseNginxVersion(sites[0]!.content.includes('http2 on;') ? '1.25.1' : '1.0.0');
        if (!versionAtLeast(localNginx, target)) {
          // Rendered for a newer nginx than this machine has: the local binary would reject
          // `http2 on;`, which proves nothing about the file. The server's own nginx -t decides.
          expect(sites[0]!.content).not.toMatch(/listen .*http2/);
          continue;
        }
        const result = await checkNginxSites(sites);
        expect(result.output).not.toMatch(/\[emerg\]/);
        expect(result.ok).toBe(true);
      }
    }
  });

  it('passes systemd-analyze verify with nothing on stderr', async () => {
    for (const { states } of await statesOf(fixture)) {
      for (const state of states) {
        const units = configFilesFor(state, 'systemd');
        expect(units.length).toBeGreaterThan(0);
        const result = await checkSystemdUnits(units);
        expect(result.output).toBe('');
        expect(result.ok).toBe(true);
      }
    }
  });
});

describe('the checks themselves catch broken files', () => {
  it('nginx -t rejects an unknown directive', async () => {
    const result = await checkNginxSites([{ path: '/etc/nginx/sites-available/x.conf', content: 'server { listen 80; bogus_directive on; }\n' }]);
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/unknown directive "bogus_directive"/);
  });

  it('systemd-analyze verify output on an unknown key fails the check', async () => {
    const unit = '[Unit]\nDescription=x\n[Service]\nExecStart=/usr/bin/true\nRestart=sometimes\nTypo=1\n';
    const result = await checkSystemdUnits([{ path: '/etc/systemd/system/x.service', content: unit }]);
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/Unknown key 'Typo'/);
  });
});
