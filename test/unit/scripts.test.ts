/**
 * The root scripts built from fixture plans, snapshotted: each is the shell library plus one
 * line per action of the plan, and the same plan always gives the same text. And the rule that
 * keeps it so: no fixed shell logic in TypeScript strings, only the plan's data.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { convergedFacts } from '../helpers/plans.js';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { healthCheckFor } from '../../src/apply/deploy-host.js';
import { releaseLockScript } from '../../src/apply/lock.js';
import { rollbackOutcome } from '../../src/apply/run-script.js';
import {
  type ActivateOptions,
  activateScript,
  healthOnlyScript,
  LOCK_LIBRARY,
  provisionLines,
  REMOTE_LIBRARY,
  releaseScript,
  rollbackScript,
  type RunContext,
  wrap,
} from '../../src/apply/scripts.js';
import { certificateNeed, obtainCertificateScript } from '../../src/certs/letsencrypt.js';
import { parseFacts } from '../../src/facts/host.js';
import { parseInventory } from '../../src/inventory/load.js';
import type { Environment } from '../../src/inventory/resolve.js';
import { type Plan, planDeploy, sha256 } from '../../src/plan/plan.js';
import { Secret } from '../../src/secrets/secret.js';
import { buildDesiredState, type DesiredState } from '../../src/state/desired.js';
import { TemplateEngine } from '../../src/templates/engine.js';
import { tlsFor } from '../../src/views/nginx.js';
import { ROOT } from '../helpers/cli.js';

const LIVE = '20261130T120000.000Z';
const NEW = '20261201T000000.000Z';

function environment(ssl: 'self-signed' | 'letsencrypt'): Environment {
  return parseInventory(
    stringify({
      app: { name: 'blog', wsgi: 'blog.wsgi:application', secrets: ['SECRET_KEY'], static: { url: '/static/', path: 'static' } },
      hooks: {
        build: ['python manage.py collectstatic --noinput'],
        before_activate: ['python manage.py migrate'],
        after_activate: ['echo "deployed $STACK_APP"'],
      },
      environments: {
        prod: { domains: ['blog.example.com', 'www.blog.example.com'], ssl, email: 'ops@example.com', hosts: [{ address: '192.0.2.1' }] },
      },
    }),
    'inventory.yml',
  ).environments.prod!;
}

async function desiredOf(env: Environment): Promise<DesiredState> {
  return buildDesiredState(env, env.hosts[0]!, {
    engine: new TemplateEngine('/nonexistent', '/'),
    facts: { nginxVersion: [1, 22, 1], cpus: 2 },
    secrets: new Map([['SECRET_KEY', new Secret('SECRET_KEY', 'not-a-real-secret')]]),
  });
}

const converged = (d: DesiredState, sourceHash: string, changedFile?: string) => convergedFacts(d, { release: LIVE, sourceHash }, changedFile);

const code = {
  id: NEW,
  sourceHash: 'new',
  requirements: 'requirements.txt',
  venv: { digest: 'd'.repeat(64), index: 'app.index_url', followsCode: false },
  fileList: ['blog/wsgi.py', 'requirements.txt'],
};

/** Every script of the fixture plans, built from nothing but the fixtures. */
async function buildAll(): Promise<Record<string, string>> {
  const env = environment('self-signed');
  const d = await desiredOf(env);
  const { layout } = d;
  const ctx: RunContext = {
    layout,
    lock: { dir: '/var/lib/stack/blog.lock', token: '6f1c2a4e-token' },
    audit: { file: '/var/log/stack/blog.log', who: 'dev@laptop', command: 'deploy prod' },
  };
  const health = healthCheckFor(env, true, layout);
  const tls = tlsFor(env, layout)!;
  const options = (plan: Plan, extra: Partial<ActivateOptions> = {}): ActivateOptions => ({
    health,
    noCodeYet: false,
    managedFiles: d.files.map((f) => f.path),
    hooks: env.hooks,
    keep: env.keep,
    staticPath: 'static',
    manifest: { by: 'dev@laptop', gitCommit: 'abc123', inventoryHash: 'inv-hash', created: '2026-12-01T00:00:00Z' },
    provision: [],
    ...extra,
    ...(plan.release ? {} : { manifest: undefined }),
  });

  // An empty server: everything to provision, the first release.
  const first = planDeploy({
    desired: d,
    facts: parseFacts('nginx\t1.22.1\nfree\t10000000'),
    code,
    selfSigned: { cert: tls.certificate, key: tls.certificateKey, domains: env.domains },
  });
  // The same, as `setup` sees it: no code yet, the unit's interpreter missing.
  const setup = planDeploy({ desired: d, facts: parseFacts('nginx\t1.22.1\nfree\t10000000'), scope: 'setup' });
  // A server in the layout of before releases were sealed, with www-data still in the app's group.
  const upgrade: Plan = {
    ...first,
    leaves: [{ user: layout.web_user, group: layout.app }],
    upgrade: { sealReleases: true, media: `${layout.root}/media`, socketGroup: { path: layout.socket, group: layout.web_user } },
  };
  const configOnly = planDeploy({ desired: d, facts: parseFacts(converged(d, 'same', d.files[0]!.path)), code: { ...code, sourceHash: 'same' } });
  const newCode = planDeploy({ desired: d, facts: parseFacts(converged(d, 'old')), code });
  expect(configOnly.release?.copyFrom).toBe(LIVE);
  expect(newCode.release?.copyFrom).toBeUndefined();

  const provisioning = { layout, staticPath: 'static', sshPort: 22 };
  const letsEncrypt = environment('letsencrypt');
  const request = certificateNeed(letsEncrypt, layout, undefined, new Date('2026-12-01T00:00:00Z'))!;
  const standIn = (await desiredOf(letsEncrypt)).acmeStandIn!;
  return {
    provision: wrap(ctx, provisionLines(upgrade, provisioning), { releaseLock: false }),
    release: releaseScript(first.release!, ctx),
    'activate, first deploy': activateScript(first, ctx, options(first)),
    'activate, setup with provisioning folded in': activateScript(
      setup,
      ctx,
      options(setup, { health: null, noCodeYet: true, provision: provisionLines(setup, provisioning) }),
    ),
    'activate, configuration only': activateScript(
      configOnly,
      ctx,
      options(configOnly, { hooks: { ...env.hooks, build: [], before_activate: [], after_activate: [] } }),
    ),
    'activate, new code with hooks': activateScript(newCode, ctx, options(newCode)),
    rollback: rollbackScript(LIVE, { ...ctx, audit: { ...ctx.audit!, command: `rollback prod ${NEW} -> ${LIVE}` } }, health),
    health: healthOnlyScript(health, ctx),
    certificate: obtainCertificateScript(request, ctx, standIn),
    unlock: releaseLockScript(ctx.lock!.dir, ctx.lock!.token),
  };
}

/**
 * A script with the library it carries and the base64 of the files it writes each folded into
 * one line: the snapshot shows the plan's own lines (the library has its tests in
 * remote-sh.test.ts, the files theirs in render.test.ts). The whole text is compared by the
 * test of determinism.
 */
function ownLines(script: string): string {
  const library = script.includes(REMOTE_LIBRARY) ? REMOTE_LIBRARY : LOCK_LIBRARY;
  expect(script.split(library)).toHaveLength(2);
  return script
    .replace(library, `# (${library === REMOTE_LIBRARY ? 'src/remote/sh: lib, lock, provision, venv, release, activate, certs' : 'src/remote/sh/lock.sh'})`)
    .replace(/(<<'(STACK_\w+)'.*\n)([A-Za-z0-9+/=\n]*?)\n\2\n/g, (_, start: string, tag: string, data: string) => {
      const bytes = Buffer.from(data.replace(/\n/g, ''), 'base64').length;
      return `${start}# (${bytes} bytes in base64, sha256 ${sha256(Buffer.from(data.replace(/\n/g, ''), 'base64').toString('utf8')).slice(0, 12)})\n${tag}\n`;
    });
}

describe('scripts of fixture plans', async () => {
  const scripts = await buildAll();

  it('are the same text every time they are built', async () => {
    expect(await buildAll()).toEqual(scripts);
  });

  it.each(Object.keys(scripts))('%s', (name) => {
    expect(ownLines(scripts[name]!)).toMatchSnapshot();
  });

  it('run only when they arrived whole: one function, called on the last line', () => {
    for (const script of Object.values(scripts)) {
      expect(script.startsWith('stack_main() {\n')).toBe(true);
      expect(script.endsWith('\n}\nstack_main\n')).toBe(true);
    }
  });

  it('parse as sh', () => {
    for (const [name, script] of Object.entries(scripts)) {
      // -n: read the whole script, run nothing.
      const r = spawnSync('dash', ['-n'], { input: script, encoding: 'utf8' });
      expect(`${r.stderr}exit ${r.status}`, name).toBe('exit 0');
    }
  });
});

/**
 * Fixed shell logic written in TypeScript strings, line by line: what a script built as an
 * array of lines, or a template literal, would contain if its logic had not gone into
 * src/remote/sh. The plan's data lines (calls with values, `step` texts, heredoc data, variable
 * settings) match none of these.
 */
const FIXED_SHELL: [RegExp, string][] = [
  [/^\s*(if|elif|while|until)\s.*;\s*(then|do)(\s|;|$)/, 'a condition'],
  [/^\s*(if|elif|while|until)\s+(!\s+)?\[/, 'a condition'],
  [/^\s*for\s+\w+(\s+in\s|\s*;?\s*do\b)/, 'a loop'],
  [/^\s*case\s+\S+\s+in(\s|$)/, 'a case'],
  [/^\s*(then|else|fi|do|done|esac|;;)\s*(;|$|\|\||&&|[|>)])/, 'the end of a compound command'],
  [/;\s*(fi|done|esac)\s*$/, 'a compound command'],
  [/(^|[\s;&|({])[A-Za-z_][\w-]*\s*\(\)\s*\{/, 'a function definition'],
  [/(\|\||&&)\s*\{\s|^\s*\{\s/, 'a command group'],
  [/\$\{?(TMPD|UNDO)\b/, "the script's own temporary files"],
];

/** Every string literal and template literal of a TypeScript file, `${...}` parts as X, with its line. */
function literals(file: string, text: string): { line: number; text: string }[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: { line: number; text: string }[] = [];
  const visit = (node: ts.Node): void => {
    let value: string | null = null;
    if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) value = node.text;
    else if (ts.isTemplateExpression(node)) value = node.head.text + node.templateSpans.map((s) => `X${s.literal.text}`).join('');
    if (value !== null) out.push({ line: source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1, text: value });
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** Where `text` (a TypeScript file) writes fixed shell: "line: what: the shell". */
function fixedShell(file: string, text: string): string[] {
  const found: string[] = [];
  for (const literal of literals(file, text)) {
    for (const line of literal.text.split('\n')) {
      const rule = FIXED_SHELL.find(([re]) => re.test(line));
      if (rule) found.push(`${literal.line}: ${rule[1]}: ${line.trim()}`);
    }
  }
  return found;
}

describe('remote shell lives in src/remote/sh', () => {
  // TypeScript source given to the check: template literals of it, placeholders included.
  it.each([
    ['an if of a script built as lines', `lines.push(\`if ! \${install} >"$TMPD/apt" 2>&1; then\`, 'fi');`],
    ['a loop', `const l = \`for r in \${q(dir)}/*; do [ -e "$r" ] || continue; done\`;`],
    ['a one-line condition', `return \`if [ ! -e \${q(dir)} ]; then rm -rf \${q(dir)}; fi\\n\`;`],
    ['a function defined in a string', `lines.push(\`audit() { mkdir -p \${q(dir)}; }\`);`],
    ['a multi-line template', 'const s = `\n  case "$1" in\n    a) exit 1 ;;\n  esac\n`;'],
    ['a command group', `lines.push(\`\${build} || { tail -n 25 "$TMPD/build" >&2; fail 'x'; }\`);`],
    ['the temporary files of the script', `lines.push(\`\${h.command} 2>"$TMPD/handler"\`);`],
  ])('the check finds %s', (_, code) => {
    expect(fixedShell('example.ts', code)).not.toEqual([]);
  });

  it.each([
    ['a call with the plan data', `lines.push(\`\${call('install_packages', ...plan.packages)} || fail 'install packages'\`);`],
    ['a step', `lines.push(\`step \${q(\`create system user \${u.name}\`)}\`);`],
    ['variables set to the plan values', `lines.push(\`AUDIT_FILE=\${q(file)} AUDIT_WHO=\${q(who)}\`);`],
    ['a hint in English', "hint: 'if the server was rebuilt and you verified the new fingerprint, run `stack trust ENV --replace`'"],
    ['a message', `progress.line(\`done: changed \${n} things; then: reload nginx\`);`],
  ])('the check lets %s pass', (_, code) => {
    expect(fixedShell('example.ts', code)).toEqual([]);
  });

  it('finds no fixed shell in any TypeScript string under src/', () => {
    const src = path.join(ROOT, 'src');
    const found = readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      // The sandbox runs commands on this machine (it boots the test servers), never on a server.
      .filter((f) => !f.startsWith(`sandbox${path.sep}`))
      .flatMap((f) => fixedShell(f, readFileSync(path.join(src, f), 'utf8')).map((where) => `src/${f}:${where}`));
    expect(found).toEqual([]);
  });
});

describe('what a failed activation left live', () => {
  it('names the previous release and its health answer', () => {
    expect(rollbackOutcome('200')).toBe('rolled back to the previous release, which answers its health check');
    expect(rollbackOutcome('502 (the app crashed; systemd had to restart it)')).toBe('rolled back to the previous release, whose health check answered 502');
    expect(rollbackOutcome(undefined)).toBeUndefined();
  });

  it('says when there was no previous release, and who answers instead', () => {
    expect(rollbackOutcome('none 404', 'GET /health')).toBe(
      "there was no previous release to go back to: the app's units are stopped and disabled until a deploy succeeds; GET /health now answers 404 (from nginx's default site or another app's on this server, not this app)",
    );
    expect(rollbackOutcome('none 502', 'GET /health')).toMatch(/now answers 502 \(nginx has no app behind the site\)$/);
    expect(rollbackOutcome('none 000', 'GET /health')).toMatch(/now answers 000 \(nothing answers on that port\)$/);
    expect(rollbackOutcome('none')).toBe("there was no previous release to go back to: the app's units are stopped and disabled until a deploy succeeds");
  });
});
