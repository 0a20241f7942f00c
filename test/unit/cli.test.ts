/** The CLI as a person meets it: real processes, exit codes, what lands on stdout and stderr. */
import { mkdtempSync, mkdirSync, readFileSync, statSync, writeFileSync, readlinkSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, stack } from '../helpers/cli.js';

const EXAMPLE = path.join(ROOT, 'inventory.example.yml');
const noTrace = /^\s+at /m;

function project(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-cli-'));
  cpSync(EXAMPLE, path.join(dir, 'inventory.yml'));
  return dir;
}

describe('stack --help and --version', () => {
  it('lists the commands and the exit codes', () => {
    const r = stack(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/init/);
    expect(r.stdout).toMatch(/render/);
    expect(r.stdout).toMatch(/Exit codes: 0 ok, 1 failure, 2 usage or inventory error/);
  });

  it('prints the version from package.json', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(stack(['--version']).stdout.trim()).toBe(pkg.version);
  });

  it('exits 2 on an unknown command or option', () => {
    expect(stack(['deplyo']).code).toBe(2);
    expect(stack(['render', '--bogus']).code).toBe(2);
  });
});

describe('stack render', () => {
  it('prints every file with a header naming host, path, mode and owner', () => {
    const r = stack(['render', 'prod', '-i', EXAMPLE]);
    expect(r.code).toBe(0);
    for (const p of ['/etc/nginx/sites-available/hello.conf', '/etc/systemd/system/hello.service', '/etc/hello/gunicorn.conf.py', '/etc/hello/env']) {
      expect(r.stdout).toContain(`==> 203.0.113.10:${p}`);
    }
    expect(r.stdout).toContain('(0600 root:root, generated: environment file)');
    expect(r.stdout).toContain('SECRET_KEY="[REDACTED]"');
  });

  it('never prints a secret value, even when the environment holds it', () => {
    const r = stack(['render', 'prod', '-i', EXAMPLE], { env: { SECRET_KEY: 'hunter2-very-secret' } });
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('hunter2-very-secret');
  });

  it('writes a tree per host with --out, modes included', () => {
    const out = mkdtempSync(path.join(tmpdir(), 'stack-out-'));
    const r = stack(['render', 'prod', '-i', EXAMPLE, '--out', out]);
    expect(r.code).toBe(0);
    const base = path.join(out, '203.0.113.10');
    expect(readFileSync(path.join(base, 'etc/nginx/sites-available/hello.conf'), 'utf8')).toContain('server_name hello.example.com;');
    expect(statSync(path.join(base, 'etc/hello/env')).mode & 0o777).toBe(0o600);
    expect(readlinkSync(path.join(base, 'etc/nginx/sites-enabled/hello.conf'))).toBe('../sites-available/hello.conf');
  });

  it('limits output to one role with --only', () => {
    const r = stack(['render', 'prod', '-i', EXAMPLE, '--only', 'web']);
    expect(r.stdout).toContain('sites-available/hello.conf');
    expect(r.stdout).not.toContain('hello.service');
    const bad = stack(['render', 'prod', '-i', EXAMPLE, '--only', 'db']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no role named db/);
  });

  it('checks the files with the real tools with --check', () => {
    const r = stack(['render', 'prod', '-i', EXAMPLE, '--check', '--only', 'web,app']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/ok: nginx -t accepts/);
    expect(r.stderr).toMatch(/ok: systemd-analyze verify accepts/);
  });

  it('picks the only environment when none is named, and suggests a near name', () => {
    expect(stack(['render', '-i', EXAMPLE]).code).toBe(0);
    const r = stack(['render', 'prd', '-i', EXAMPLE]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no environment "prd"; did you mean "prod"\?/);
    expect(r.stderr).not.toMatch(noTrace);
  });

  it('says how to start when there is no inventory, with a trace only under --debug', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'stack-empty-'));
    const r = stack(['render'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/inventory.yml: no such inventory file/);
    expect(r.stderr).toMatch(/stack init/);
    expect(r.stderr).not.toMatch(noTrace);
    const debug = stack(['--debug', 'render'], { cwd: dir });
    expect(debug.stderr).toMatch(noTrace);
  });
});

describe('template overrides', () => {
  it('uses a project .hbs override, partials included, and says so', () => {
    const dir = project();
    mkdirSync(path.join(dir, '.stack/templates/nginx/partials'), { recursive: true });
    writeFileSync(path.join(dir, '.stack/templates/nginx/partials/headers.hbs'), 'add_header X-Custom "from-partial" always;\n');
    const r = stack(['render', 'prod'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('add_header X-Custom "from-partial" always;');
    expect(r.stdout).not.toContain('X-Content-Type-Options');
  });

  it('uses a project .ejs override of the unit and reports it', () => {
    const dir = project();
    mkdirSync(path.join(dir, '.stack/templates/systemd'), { recursive: true });
    writeFileSync(
      path.join(dir, '.stack/templates/systemd/app.service.ejs'),
      '[Unit]\nDescription=<%= description %> & more\n[Service]\nType=notify\nUser=<%= user %>\nExecStart=<%= execStart %>\n',
    );
    const r = stack(['render', 'prod', '--check'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('override: using .stack/templates/systemd/app.service.ejs instead of the built-in template');
    expect(r.stdout).toContain('(0644 root:root, override .stack/templates/systemd/app.service.ejs)');
    // No HTML escaping: `&` stays `&`.
    expect(r.stdout).toContain('Description=hello (gunicorn), deployed by stack & more');
  });

  it('rejects a misspelt variable with the template file and position, exit 2', () => {
    const dir = project();
    mkdirSync(path.join(dir, '.stack/templates/gunicorn'), { recursive: true });
    writeFileSync(path.join(dir, '.stack/templates/gunicorn/gunicorn.conf.py.hbs'), 'bind = "{{bind}}"\nworkers = {{wokers}}\n');
    const r = stack(['render', 'prod'], { cwd: dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\.stack\/templates\/gunicorn\/gunicorn\.conf\.py\.hbs: line 2, column 13: "wokers" is not a field/);
    expect(r.stderr).not.toMatch(noTrace);
  });

  it('fails render --check when an override breaks nginx', () => {
    const dir = project();
    mkdirSync(path.join(dir, '.stack/templates/nginx'), { recursive: true });
    writeFileSync(path.join(dir, '.stack/templates/nginx/site.conf.hbs'), 'server { listen 80; server_name {{canonical}}; proxy_pass_typo on; }\n');
    const r = stack(['render', 'prod', '--check'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nginx -t rejected the rendered configuration/);
    expect(r.stderr).toMatch(/unknown directive "proxy_pass_typo"/);
  });
});
