/**
 * `nginx -t` on rendered sites, locally. The sites are dropped into a small harness config whose
 * pid, logs and temp paths live in a scratch prefix; certificate and log paths that point at the
 * server's filesystem are rewritten to placeholders in that prefix. The server runs the same
 * check on its real tree before anything goes live; this one catches mistakes before a deploy.
 */
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import { CheckError, StackError } from '../errors.js';

export interface ConfigFile {
  path: string;
  content: string;
}

export interface CheckResult {
  tool: string;
  ok: boolean;
  output: string;
}

async function requireTool(name: string, pkg: string): Promise<string> {
  const found = await $({ quiet: true, nothrow: true })`command -v ${name}`;
  if (found.exitCode !== 0) {
    throw new StackError(`${name} is not installed here, so the rendered configuration cannot be checked locally`, {
      hint: `install it (Debian/Ubuntu: apt-get install ${pkg}) or leave out --check`,
    });
  }
  return found.stdout.trim();
}

export async function checkNginxSites(sites: ConfigFile[]): Promise<CheckResult> {
  const nginx = await requireTool('nginx', 'nginx');
  const prefix = await mkdtemp(path.join(tmpdir(), 'stack-nginx-check-'));
  try {
    await mkdir(path.join(prefix, 'sites'), { recursive: true });
    await mkdir(path.join(prefix, 'logs'), { recursive: true });
    const cert = path.join(prefix, 'placeholder.crt');
    const key = path.join(prefix, 'placeholder.key');
    await $({
      quiet: true,
    })`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=placeholder.invalid -keyout ${key} -out ${cert}`;
    for (const [i, site] of sites.entries()) {
      const content = site.content
        .replace(/^(\s*ssl_(?:certificate|trusted_certificate))\s+\S+;/gm, `$1 ${cert};`)
        .replace(/^(\s*ssl_certificate_key)\s+\S+;/gm, `$1 ${key};`)
        .replace(/^(\s*(?:access_log|error_log))\s+\/\S*?([^/\s;]+);/gm, `$1 ${prefix}/logs/$2;`);
      await writeFile(path.join(prefix, 'sites', `${i}-${path.basename(site.path)}`), content);
    }
    await writeFile(
      path.join(prefix, 'nginx.conf'),
      [
        `pid ${prefix}/nginx.pid;`,
        `error_log ${prefix}/logs/error.log;`,
        'events { worker_connections 64; }',
        'http {',
        '  include /etc/nginx/mime.types;',
        `  access_log ${prefix}/logs/access.log;`,
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/${t};`),
        `  include ${prefix}/sites/*;`,
        '}',
        '',
      ].join('\n'),
    );
    const result = await $({ quiet: true, nothrow: true })`${nginx} -t -q -c ${prefix}/nginx.conf -p ${prefix}`;
    const output = (result.stderr + result.stdout).replaceAll(`${prefix}/sites/`, '');
    return { tool: 'nginx -t', ok: result.exitCode === 0 && !/\[emerg\]/.test(output), output };
  } finally {
    await rm(prefix, { recursive: true, force: true });
  }
}

export function assertChecked(result: CheckResult): void {
  if (!result.ok) throw new CheckError(result.tool, result.output);
}
