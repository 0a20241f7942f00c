/** Facts parsing, planning and the scripts built from a plan: pure code, no server. */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { factScript } from '../../src/facts/fact.js';
import { hostFact, parseFacts } from '../../src/facts/host.js';
import { parseInventory } from '../../src/inventory/load.js';
import { changeCount, planDeploy, sha256 } from '../../src/plan/plan.js';
import { nextReleaseId, releaseIdAt } from '../../src/release/id.js';
import { type ActivateOptions, activateScript, provisionLines, type RunContext } from '../../src/apply/scripts.js';
import { shQuote } from '../../src/remote/quote.js';
import { Secret, SecretText, displayContent } from '../../src/secrets/secret.js';
import { parseSecretsFile } from '../../src/secrets/load.js';
import { buildDesiredState, type DesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { redactEnvFileText } from '../../src/views/envfile.js';
import { SYSTEM_VENV } from '../helpers/plans.js';

const SECRET = 'sk-live-0123456789';

async function desired(): Promise<DesiredState> {
  const env = parseInventory(
    stringify({
      app: { name: 'blog', wsgi: 'blog.wsgi:application', secrets: ['SECRET_KEY'] },
      environments: { prod: { domains: ['blog.example.com'], hosts: [{ address: '192.0.2.1' }] } },
    }),
    'inventory.yml',
  ).environments.prod!;
  return buildDesiredState(env, env.hosts[0]!, {
    engine: new TemplateEngine('/nonexistent', '/'),
    facts: { nginxVersion: [1, 22, 1] },
    secrets: new Map([['SECRET_KEY', new Secret('SECRET_KEY', SECRET)]]),
  });
}

/** What the facts script would print for a server that already has exactly the desired state. */
function convergedOutput(d: DesiredState): string {
  const lines = ['nginx\t1.22.1', 'cpus\t2', 'os\tdebian 12'];
  for (const f of d.files) lines.push(`file\t${f.path}\t${sha256(f.content)}\t${Number(f.mode).toString()}\t${f.owner}\t${f.group}`);
  for (const l of d.links) lines.push(`link\t${l.path}\t${l.target}`);
  for (const dir of d.dirs) lines.push(`dir\t${dir.path}\t${dir.mode.replace(/^0/, '')}\t${dir.owner}\t${dir.group}`);
  for (const p of d.packages) lines.push(`pkg\t${p}\tii `);
  lines.push('user\tblog\tblog', 'user\tblog-build\tblog-build', 'user\twww-data\twww-data');
  for (const s of d.services) lines.push(`service\t${s}\tenabled\tactive`);
  lines.push('current\treleases/20260101T000000Z', 'releases\t20260101T000000Z');
  return lines.join('\n');
}

describe('facts', () => {
  it('asks for everything in one script and quotes paths for sh', async () => {
    const d = await desired();
    const script = factScript(hostFact(d, { files: new Map(d.files.map((f) => [f.path, sha256(f.content)])), probes: [] }));
    for (const f of d.files) expect(script).toContain(`\nfact_file ${f.path} ${sha256(f.content)}\n`);
    expect(script).toContain(`\nfact_packages ${d.packages.join(' ')}\n`);
    expect(script).not.toContain(SECRET);
  });

  it('parses every record and redacts a secret in returned content', () => {
    const env = `STACK_APP="blog"\nSECRET_KEY="${SECRET}"\n`;
    const facts = parseFacts(
      [
        'nginx\t1.26.2',
        'cpus\t4',
        'file\t/etc/blog/env\tabc\t600\tblog\tblog',
        `content\t/etc/blog/env\t${Buffer.from(env).toString('base64')}`,
        'file\t/etc/nginx/sites-available/blog.conf\t-',
        'link\t/etc/nginx/sites-enabled/blog.conf\t-',
        'present\t/etc/nginx/sites-enabled/default',
        'dir\t/srv/blog\t750\tblog\tblog',
        'pkg\tnginx\tii ',
        'pkg\tcurl\trc ',
        'user\tblog\t-',
        'service\tnginx\tenabled\tactive',
        'current\t-',
        'releases\t',
      ].join('\n'),
      (_, c) => redactEnvFileText(c, ['SECRET_KEY']),
    );
    expect(facts.nginxVersion).toEqual([1, 26, 2]);
    expect(facts.cpus).toBe(4);
    expect(facts.files.get('/etc/blog/env')).toMatchObject({ exists: true, mode: '0600', owner: 'blog' });
    expect(facts.files.get('/etc/blog/env')!.content).toBe('STACK_APP="blog"\nSECRET_KEY="[REDACTED]"\n');
    expect(facts.files.get('/etc/nginx/sites-available/blog.conf')!.exists).toBe(false);
    expect(facts.links.get('/etc/nginx/sites-enabled/blog.conf')).toBeNull();
    expect(facts.present.has('/etc/nginx/sites-enabled/default')).toBe(true);
    expect(facts.dirs.get('/srv/blog')).toEqual({ mode: '0750', owner: 'blog', group: 'blog' });
    expect([...facts.packages]).toEqual(['nginx']);
    expect(facts.users.get('blog')).toBeNull();
    expect(facts.currentRelease).toBeNull();
  });
});

describe('planning', () => {
  it('plans nothing for a server already in the desired state', async () => {
    const d = await desired();
    const plan = planDeploy({ desired: d, facts: parseFacts(convergedOutput(d)) });
    expect(changeCount(plan)).toBe(0);
    expect(plan.handlers).toEqual([]);
  });

  it('plans everything for an empty server, handlers in order and once each', async () => {
    const d = await desired();
    const plan = planDeploy({ desired: d, facts: parseFacts('nginx\t\n'), code: { id: 'r1', sourceHash: 'x', requirements: null, venv: SYSTEM_VENV } });
    expect(plan.packages).toEqual(d.packages);
    expect(plan.users.map((u) => u.name)).toEqual(['blog', 'blog-build']);
    expect(plan.files.map((f) => f.action)).toEqual(d.files.map(() => 'create'));
    expect(plan.handlers.map((h) => h.name)).toEqual(['daemon-reload', 'restart-socket', 'restart-app', 'reload-nginx']);
    expect(plan.release).toMatchObject({ id: 'r1' });
    expect(plan.release!.copyFrom).toBeUndefined();
  });

  it('fires only the handlers of the files that changed, in a new release of the same code', async () => {
    const d = await desired();
    const out =
      convergedOutput(d).replace(/(file\t\/etc\/nginx\/sites-available\/blog.conf\t)[0-9a-f]{64}/, `$1${'0'.repeat(64)}`) +
      `\nmanifest\t${Buffer.from(JSON.stringify({ id: '20260101T000000Z', source_hash: 'same' })).toString('base64')}`;
    const plan = planDeploy({ desired: d, facts: parseFacts(out), code: { id: 'r2', sourceHash: 'same', requirements: null, venv: SYSTEM_VENV } });
    expect(plan.files.map((f) => f.file.path)).toEqual(['/etc/nginx/sites-available/blog.conf']);
    expect(plan.handlers.map((h) => h.name)).toEqual(['reload-nginx']);
    expect(plan.release).toMatchObject({ id: 'r2', copyFrom: '20260101T000000Z' });
    expect(changeCount(plan)).toBe(1);
  });

  it('makes no release when neither code nor configuration changed', async () => {
    const d = await desired();
    const out = `${convergedOutput(d)}\nmanifest\t${Buffer.from(JSON.stringify({ id: '20260101T000000Z', source_hash: 'same' })).toString('base64')}`;
    expect(
      planDeploy({ desired: d, facts: parseFacts(out), code: { id: 'r3', sourceHash: 'same', requirements: null, venv: SYSTEM_VENV } }).release,
    ).toBeNull();
  });

  it('notices a secret change without showing it', async () => {
    const d = await desired();
    const env = d.files.find((f) => f.path === '/etc/blog/env')!;
    const out =
      convergedOutput(d).replace(sha256(env.content), '1'.repeat(64)) +
      `\ncontent\t/etc/blog/env\t${Buffer.from(displayContent(env.content)).toString('base64')}`;
    const plan = planDeploy({ desired: d, facts: parseFacts(out) });
    expect(plan.files).toHaveLength(1);
    expect(plan.files[0]!.secretOnly).toBe(true);
    expect(plan.handlers.map((h) => h.name)).toEqual(['restart-app']);
  });

  it('fixes a mode without rewriting content', async () => {
    const d = await desired();
    const out = convergedOutput(d).replace(
      `/etc/blog/env\t${sha256(d.files.find((f) => f.path === '/etc/blog/env')!.content)}\t600`,
      `/etc/blog/env\t${sha256(d.files.find((f) => f.path === '/etc/blog/env')!.content)}\t644`,
    );
    const plan = planDeploy({ desired: d, facts: parseFacts(out) });
    expect(plan.files.map((f) => f.action)).toEqual(['attributes']);
  });

  it('leaves the site, code and restarts to deploy in setup', async () => {
    const d = await desired();
    const plan = planDeploy({ desired: d, facts: parseFacts('nginx\t\n'), scope: 'setup' });
    expect(plan.files.map((f) => f.file.validate)).toEqual(['systemd', 'systemd']);
    expect(plan.release).toBeNull();
    expect(plan.links).toEqual([]);
    expect(plan.handlers.map((h) => h.name)).not.toContain('restart-app');
  });
});

function ctx(d: DesiredState): RunContext {
  return { layout: d.layout, lock: { dir: '/var/lib/stack/blog.lock', token: 't' }, audit: null };
}

/** Activation with no health check, no hooks and no static folder, unless `extra` says otherwise. */
function activateOptions(extra: Partial<ActivateOptions> = {}): ActivateOptions {
  return { health: null, managedFiles: [], hooks: { build: [], before_activate: [], after_activate: [], timeout: 900 }, keep: 5, staticPath: null, ...extra };
}

describe('scripts', () => {
  it('carry secrets only inside base64 on stdin, never as text', async () => {
    const d = await desired();
    const plan = planDeploy({ desired: d, facts: parseFacts('nginx\t\n') });
    const script = activateScript(plan, ctx(d), activateOptions({ provision: provisionLines(plan, { layout: d.layout, staticPath: null }) }));
    expect(script).not.toContain(SECRET);
    const decoded = [...script.matchAll(/<<'(STACK_FILE_\w+)'[^\n]*\n([\s\S]*?)\n\1\n/g)].map((m) =>
      Buffer.from(m[2]!.replace(/\n/g, ''), 'base64').toString(),
    );
    expect(decoded.some((c) => c.includes(`SECRET_KEY="${SECRET}"`))).toBe(true);
  });

  it('validates nginx and the unit before any handler runs, and can undo', async () => {
    const d = await desired();
    const plan = planDeploy({ desired: d, facts: parseFacts('nginx\t\n') });
    const script = activateScript(plan, ctx(d), activateOptions());
    // Positions in the plan's own lines, after the library every script starts with.
    const own = script.slice(script.indexOf('trap on_exit EXIT'));
    const at = (s: string) => own.indexOf(s);
    expect(at('nginx -t')).toBeGreaterThan(0);
    expect(at('systemd-analyze verify')).toBeGreaterThan(0);
    expect(at('nginx -t')).toBeLessThan(at('systemctl daemon-reload'));
    expect(at('systemd-analyze verify')).toBeLessThan(at('systemctl restart'));
    expect(script).toMatch(/abort 'nginx -t'/);
  });

  it('run only when they arrived whole, and survive a dropped connection', async () => {
    const d = await desired();
    const plan = planDeploy({ desired: d, facts: parseFacts('nginx\t\n') });
    const script = activateScript(plan, ctx(d), activateOptions());
    expect(script.startsWith('stack_main() {\n')).toBe(true);
    expect(script.trimEnd().endsWith('}\nstack_main')).toBe(true);
    expect(script).toContain("trap '' HUP PIPE");
  });
});

describe('quoting and secrets files', () => {
  it.each([
    ['plain', 'plain'],
    ['/etc/nginx/a.conf', '/etc/nginx/a.conf'],
    ['two words', "'two words'"],
    ["it's", "'it'\\''s'"],
    ['$(rm -rf /)', "'$(rm -rf /)'"],
    ['', "''"],
  ])('shQuote(%j)', (input, want) => {
    expect(shQuote(input)).toBe(want);
  });

  it('reads NAME=value lines, quoted or not', () => {
    const m = parseSecretsFile('# c\nA=1\nexport B="two words"\nC=\'x=y\'\n\nbad line\n');
    expect([...m]).toEqual([
      ['A', '1'],
      ['B', 'two words'],
      ['C', 'x=y'],
    ]);
  });
});

describe('release ids', () => {
  it('are the UTC time to the millisecond', () => {
    expect(releaseIdAt(new Date(Date.UTC(2026, 11, 1, 2, 30, 0, 123)))).toBe('20261201T023000.123Z');
    expect(releaseIdAt(new Date(Date.UTC(2026, 11, 1, 2, 30, 0, 0)))).toBe('20261201T023000.000Z');
  });

  it.each([
    ['20261123T204431.500Z', [], '20261123T204431.500Z'],
    ['20261123T204431.501Z', ['20261123T204431.500Z'], '20261123T204431.501Z'],
    // Two deploys within one millisecond, and a clock behind the newest release.
    ['20261123T204431.500Z', ['20261123T204431.500Z'], '20261123T204431.501Z'],
    ['20261123T204430.000Z', ['20261123T204429.000Z', '20261123T204431.250Z'], '20261123T204431.251Z'],
    ['20261123T204431.999Z', ['20261123T204431.999Z'], '20261123T204432.000Z'],
    ['20261231T235959.999Z', ['20261231T235959.999Z'], '20270101T000000.000Z'],
    // Second-precision ids from earlier versions: one stands for the end of its second.
    ['20261123T204432.000Z', ['20261123T204431Z'], '20261123T204432.000Z'],
    ['20261123T204431.500Z', ['20261123T204431Z'], '20261123T204432.000Z'],
    ['20261123T204430.100Z', ['20261123T204429.900Z', '20261123T204431Z'], '20261123T204432.000Z'],
    ['20261123T204431.100Z', ['20261123T204430Z', '20261123T204431.050Z'], '20261123T204431.100Z'],
    ['20261231T235959.400Z', ['20261231T235959Z'], '20270101T000000.000Z'],
    // What is not a release id does not count.
    ['20261123T204431.500Z', ['20261123T204431.500Z', 'backup'], '20261123T204431.501Z'],
  ])('%s after %j is %s', (wanted, existing, want) => {
    expect(nextReleaseId(wanted, existing)).toBe(want);
  });

  // Deploy order: each id here is made after the one before it (the old id by an earlier version).
  const inOrder = ['20261123T204430.001Z', '20261123T204431.999Z', '20261123T204431Z', '20261123T204432.000Z', '20261123T204432.001Z'];

  it('sort in deploy order as strings, second-precision ones among them', () => {
    expect([...inOrder].reverse().sort()).toEqual(inOrder);
    expect(nextReleaseId(releaseIdAt(new Date(Date.UTC(2026, 10, 23, 20, 44, 31, 999))), inOrder.slice(0, 3))).toBe('20261123T204432.000Z');
  });

  it('sort in deploy order with sort -r on the server, which prunes the oldest', () => {
    for (const locale of ['C', 'C.UTF-8']) {
      const r = spawnSync('sort', ['-r'], {
        input: `${[2, 4, 0, 3, 1].map((i) => inOrder[i]).join('\n')}\n`,
        encoding: 'utf8',
        env: { ...process.env, LC_ALL: locale },
      });
      expect(r.stdout.trim().split('\n'), locale).toEqual([...inOrder].reverse());
    }
  });

  it('never plans a release over an existing one', async () => {
    const d = await desired();
    const plan = planDeploy({
      desired: d,
      facts: parseFacts('nginx\t\nreleases\t20261123T204431Z 20261123T204431.500Z\n'),
      code: { id: '20261123T204431.500Z', sourceHash: 'x', requirements: null, venv: SYSTEM_VENV },
    });
    expect(plan.release!.id).toBe('20261123T204432.000Z');
  });
});

describe('certificates in the plan', () => {
  it('a certificate request counts as a change and reloads nginx, in deploy and in setup', async () => {
    const d = await desired();
    const facts = parseFacts(convergedOutput(d));
    const certificate = {
      domains: ['blog.example.com'],
      email: 'ops@example.com',
      server: 'https://acme.test/dir',
      webroot: '/var/www/_letsencrypt',
      reason: 'no certificate yet',
    };
    expect(changeCount(planDeploy({ desired: d, facts }))).toBe(0);
    for (const scope of ['deploy', 'setup'] as const) {
      const plan = planDeploy({ desired: d, facts, certificate, scope });
      expect(changeCount(plan)).toBe(1);
      expect(plan.handlers.map((h) => h.name)).toEqual(['reload-nginx']);
    }
  });

  it("never asks the server for a secret file's content, and says only that it changed", async () => {
    const d = await desired();
    const key = {
      ...d.files[0]!,
      path: '/etc/ssl/stack/blog/privkey.pem',
      content: new SecretText([new Secret('TLS private key', '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n')]),
      secret: true,
      validate: 'nginx' as const,
      notify: ['reload-nginx'],
    };
    d.files.push(key);
    const script = factScript(hostFact(d, { files: new Map([[key.path, sha256(key.content)]]), probes: [], secret: new Set([key.path]) }));
    expect(script).toContain(`\nfact_file ${key.path} ${sha256(key.content)} secret\n`);
    const facts = parseFacts(`${convergedOutput(d).replace(new RegExp(`file\\t${key.path}\\t[0-9a-f]+`), `file\t${key.path}\t${'0'.repeat(64)}`)}`);
    const change = planDeploy({ desired: d, facts }).files.find((f) => f.file.path === key.path)!;
    expect(change).toMatchObject({ action: 'update', diff: '', secretOnly: true });
  });
});
