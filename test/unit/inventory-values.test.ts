/**
 * Values the loader must keep exactly as written, or refuse: numbers, booleans, env names,
 * sizes, durations, served folders, the new keys (app.exclude, hooks.build, hooks.timeout), and
 * the limits on the file itself (size, aliases). The corpus in bad-inventories.test.ts holds one
 * bad file per mistake; this file checks what is accepted and what it becomes, and the cases a
 * fixture cannot hold (a file over the size limit).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InventoryError, type InventoryProblem } from '../../src/errors.js';
import { loadInventory, MAX_INVENTORY_BYTES, parseInventory } from '../../src/inventory/load.js';
import { updateInventory } from '../../src/inventory/edit.js';
import { reservedEnvReason } from '../../src/inventory/env-names.js';
import { durationSeconds, sizeBytes } from '../../src/inventory/schema.js';
import { inventoryJsonSchemaText } from '../../src/inventory/export-schema.js';
import { ROOT, stack } from '../helpers/cli.js';

const ENVIRONMENTS = `environments:
  prod:
    domains: [blog.example.com]
    hosts:
      - address: 203.0.113.10
`;

/** An inventory with `app` lines (indented two spaces) and any further top-level text. */
function inventory(appLines: string, rest = ''): string {
  return `app:\n  name: blog\n  wsgi: blog.wsgi:application\n${appLines}${rest}${ENVIRONMENTS}`;
}

function problems(source: string): InventoryProblem[] {
  try {
    parseInventory(source, 'inventory.yml');
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
  return expect.fail(`accepted, but it should be refused:\n${source}`);
}

const prod = (source: string) => parseInventory(source, 'inventory.yml').environments.prod!;

describe('numbers in app.env', () => {
  it.each([
    ['20', 20],
    ['0', 0],
    ['-5', -5],
    ['0.25', 0.25],
    ['9007199254740991', 9007199254740991],
    ['"0x1F"', '0x1F'],
    ["'12345678901234567890'", '12345678901234567890'],
    ['true', true],
    ['false', false],
  ])('keeps %s', (written, value) => {
    expect(prod(inventory(`  env:\n    VALUE: ${written}\n`)).app.env.VALUE).toBe(value);
  });

  it.each([
    ['12345678901234567890', '12345678901234567000'],
    ['9007199254740993', '9007199254740992'],
    ['.inf', 'Infinity'],
    ['-.inf', '-Infinity'],
    ['.nan', 'NaN'],
    ['1e400', 'Infinity'],
    ['1e21', '1e+21'],
    ['0x1F', '31'],
    ['0o17', '15'],
    ['+12', '12'],
    ['012', '12'],
    ['1.50', '1.5'],
    ['1.0', '1'],
    ['-0', '0'],
    ['0.0000001', '1e-7'],
  ])('refuses %s, which would be written as %s, at its line', (written, rendered) => {
    const found = problems(inventory(`  env:\n    OK: yes please\n    VALUE: ${written}\n`));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ line: 6, field: 'app.env.VALUE' });
    expect(found[0]!.message).toContain(
      `would be written to the env file as ${rendered}; quote it to keep the text exactly: VALUE: ${JSON.stringify(written)}`,
    );
  });

  it.each(['True', 'FALSE'])('refuses the boolean %s, which would be written in lower case', (written) => {
    const [p] = problems(inventory(`  env:\n    DEBUG: ${written}\n`));
    expect(p).toMatchObject({ line: 5, field: 'app.env.DEBUG' });
    expect(p!.message).toContain(`quote it to keep the text exactly: DEBUG: "${written}"`);
  });

  it('refuses YAML 1.1 spellings (yes, 0b, sexagesimal) under a %YAML 1.1 directive', () => {
    const found = problems(`%YAML 1.1\n---\n${inventory('  env:\n    DEBUG: yes\n    MASK: 0b101\n    TIME: 1:30\n')}`);
    expect(found.map((p) => [p.line, p.field])).toEqual([
      [7, 'app.env.DEBUG'],
      [8, 'app.env.MASK'],
      [9, 'app.env.TIME'],
    ]);
  });

  it('checks the values a YAML 1.1 merge (<<) brings in, at the field they land in', () => {
    const source = `%YAML 1.1\n---\n${inventory('  health_check: &checks\n    timeout: 5\n', 'gateway:\n  <<: *checks\n  threads: 2\n')}`.replace(
      '    timeout: 5',
      '    timeout: 0x5',
    );
    expect(problems(source).map((p) => [p.line, p.field])).toEqual([
      [7, 'app.health_check.timeout'],
      [7, 'gateway.timeout'],
    ]);
  });

  it('checks a number reached through an alias, at the alias', () => {
    const found = problems(inventory('  env:\n    A: &n 0x10\n    B: *n\n'));
    expect(found.map((p) => [p.line, p.field])).toEqual([
      [5, 'app.env.A'],
      [6, 'app.env.B'],
    ]);
  });
});

describe('numeric fields', () => {
  it('accepts every bound, written in decimal', () => {
    const e = prod(
      inventory(
        '  health_check: { status: 599, timeout: 300, retries: 600 }\n',
        'gateway: { workers: 256, threads: 64, timeout: 3600, max_requests: 1000000000 }\nnginx: { hsts_max_age: 63072000 }\n',
      ).replace('      - address: 203.0.113.10\n', '      - { address: 203.0.113.10, port: 65535, cpus: 1024 }\n    keep: 100\n'),
    );
    expect(e.gateway).toMatchObject({ workers: 256, threads: 64, timeout: 3600, max_requests: 1000000000 });
    expect(e.nginx.hsts_max_age).toBe(63072000);
    expect(e.app.health_check).toEqual({ status: 599, timeout: 300, retries: 600 });
    expect(e.hosts[0]).toMatchObject({ port: 65535, cpus: 1024 });
    expect(e.keep).toBe(100);
  });

  it.each([
    ['gateway: { max_requests: 1000000001 }\n', 'gateway.max_requests', 'max_requests must be at most 1000000000'],
    ['gateway: { max_requests: -1 }\n', 'gateway.max_requests', 'max_requests must be at least 0'],
    ['nginx: { hsts_max_age: 63072001 }\n', 'nginx.hsts_max_age', 'hsts_max_age must be at most 63072000'],
    ['gateway: { threads: 65 }\n', 'gateway.threads', 'threads must be at most 64'],
    ['gateway: { timeout: 3601 }\n', 'gateway.timeout', 'timeout must be at most 3600'],
    ['gateway: { workers: 1e2 }\n', 'gateway.workers', 'workers must be a whole number from 1 to 256, written in plain decimal digits (not 1e2)'],
    ['nginx: { hsts_max_age: .inf }\n', 'nginx.hsts_max_age', 'hsts_max_age must be a whole number from 0 to 63072000'],
  ])('refuses %s', (rest, field, message) => {
    const found = problems(inventory('', rest));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ line: 4, field });
    expect(found[0]!.message).toContain(message);
  });

  it('reports a badly written number once, with its own message, not also the range', () => {
    const found = problems(inventory('', 'gateway: { timeout: 1e21 }\n'));
    expect(found).toHaveLength(1);
    expect(found[0]!.message).toBe('timeout must be a whole number from 1 to 3600, written in plain decimal digits (not 1e21)');
  });

  it('reports badly written numbers together with the other problems of the file', () => {
    const found = problems(inventory('  frobnicate: 1\n', 'gateway: { timeout: 0x10, server: apache }\n'));
    expect(found.map((p) => p.field)).toEqual(['app.frobnicate', 'gateway.timeout', 'gateway.server']);
  });
});

describe('env and secret names', () => {
  it.each([
    'PATH',
    'LD_PRELOAD',
    'LD_LIBRARY_PATH',
    'LD_AUDIT',
    'PYTHONPATH',
    'PYTHONHOME',
    'PYTHONSTARTUP',
    'PYTHONINSPECT',
    'PYTHONUSERBASE',
    'PYTHONEXECUTABLE',
    'PERL5LIB',
    'BASH_ENV',
    'ENV',
    'IFS',
    'HOME',
    'SHELL',
    'USER',
    'LOGNAME',
    'NOTIFY_SOCKET',
    'LISTEN_FDS',
    'LISTEN_PID',
    'LISTEN_FDNAMES',
    'INVOCATION_ID',
    'SYSTEMD_EXEC_PID',
    'STACK_APP',
    'STACK_ANYTHING',
    'GUNICORN_CMD_ARGS',
    'UWSGI_PROCESSES',
  ])('%s is reserved, with a reason', (name) => {
    expect(reservedEnvReason(name)).toMatch(/\w{4,}/);
  });

  it.each([
    'PYTHONWARNINGS',
    'PYTHONUNBUFFERED',
    'PYTHONDONTWRITEBYTECODE',
    'DJANGO_SETTINGS_MODULE',
    'path',
    'MY_PATH',
    'LD',
    'HOMEPAGE_URL',
    'STACKS',
    'SYSTEMD',
  ])('%s is allowed', (name) => {
    expect(reservedEnvReason(name)).toBeUndefined();
  });

  it('refuses a reserved name in env and in secrets, at the top level and in an environment', () => {
    const source = `${inventory('  env:\n    PATH: /bin\n  secrets: [LD_PRELOAD]\n')}    app:\n      env: { HOME: /tmp }\n      secrets: [STACK_ENV]\n`;
    expect(problems(source).map((p) => [p.line, p.field])).toEqual([
      [5, 'app.env.PATH'],
      [6, 'app.secrets[0]'],
      [13, 'environments.prod.app.env.HOME'],
      [14, 'environments.prod.app.secrets[0]'],
    ]);
  });
});

describe('sizes and durations', () => {
  it.each([
    ['0', 0],
    ['16m', 16 * 1024 ** 2],
    ['512K', 512 * 1024],
    ['1024g', 1024 ** 4],
    // The size as a double, rounded as JavaScript itself would (the check compares doubles).
    ['99999999999999999999g', Number('99999999999999999999') * 1024 ** 3],
  ])('%s is %d bytes', (size, bytes) => {
    expect(sizeBytes(size)).toBe(bytes);
  });

  it('accepts client_max_body_size up to 1024g and refuses more', () => {
    expect(prod(inventory('', 'nginx: { client_max_body_size: 1024g }\n')).nginx.client_max_body_size).toBe('1024g');
    expect(prod(inventory('', 'nginx: { client_max_body_size: "0" }\n')).nginx.client_max_body_size).toBe('0');
    for (const size of ['1025g', '1048577m', '"1099511627777"', '99999999999999999999g']) {
      const [p] = problems(inventory('', `nginx: { client_max_body_size: ${size} }\n`));
      expect(p).toMatchObject({ line: 4, field: 'nginx.client_max_body_size' });
      expect(p!.message).toContain('at most 1024g');
    }
  });

  it.each([
    ['90s', ['s', 'm', 'h'], 90],
    ['15m', ['s', 'm', 'h'], 900],
    ['1h', ['s', 'm', 'h'], 3600],
    ['120', ['s', 'm', 'h'], 120],
    ['1y', ['y'], 31536000],
    ['2M', ['M'], 5184000],
    ['1d', ['s', 'm', 'h'], undefined],
    ['15 m', ['m'], undefined],
  ] as const)('%s with units %j is %s seconds', (text, units, seconds) => {
    expect(durationSeconds(text, units)).toBe(seconds);
  });

  it('accepts a cache duration up to 10y and refuses more, or milliseconds', () => {
    const maxAge = (m: string) => inventory(`  static: { url: /static/, path: static, max_age: "${m}" }\n`);
    for (const ok of ['10y', '120M', '3650d', '315360000', '0', '30s']) expect(prod(maxAge(ok)).app.static?.max_age).toBe(ok);
    for (const bad of ['11y', '3651d', '315360001', '99999999999999999y', '500ms', '1yr', '1 y']) {
      const [p] = problems(maxAge(bad));
      expect(p).toMatchObject({ line: 4, field: 'app.static.max_age' });
    }
  });
});

describe('app.static.path', () => {
  it.each(['static', 'static/', './static', 'assets/static', 'public/./css'])('accepts %s', (folder) => {
    expect(prod(inventory(`  static: { url: /static/, path: ${folder} }\n`)).app.static?.path).toBe(folder);
  });

  it.each([
    ['.', 'is the release itself'],
    ['./', 'is the release itself'],
    ['./.', 'is the release itself'],
    ['"//"', 'drop the leading "/"'],
    ['..', 'remove ".."'],
    ['static/..', 'remove ".."'],
    ['static/../..', 'remove ".."'],
    ['/srv/blog/current/static', 'drop the leading "/"'],
    ['.git', 'hidden folder'],
    ['.stack/config', 'hidden folder'],
    ['static/.venv', 'hidden folder'],
  ])('refuses %s at its line', (folder, message) => {
    const [p] = problems(inventory(`  media: { url: /media/, path: /srv/blog/media }\n  static:\n    url: /static/\n    path: ${folder}\n`));
    expect(p).toMatchObject({ line: 7, field: 'app.static.path' });
    expect(p!.message).toContain(message);
  });
});

describe('app.exclude', () => {
  it('is empty by default, takes patterns, and an environment replaces the list', () => {
    expect(prod(inventory('')).app.exclude).toEqual([]);
    const source = inventory('  exclude: [node_modules/, "*.sqlite3", "!keep.sqlite3", "docs/**/*.md", " spaced name "]\n');
    expect(prod(source).app.exclude).toEqual(['node_modules/', '*.sqlite3', '!keep.sqlite3', 'docs/**/*.md', ' spaced name ']);
    const overridden = parseInventory(
      `${source}    app:\n      exclude: [tests/]\n  staging:\n    domains: [staging.example.com]\n    hosts: [{ address: 203.0.113.11 }]\n`,
      'inventory.yml',
    );
    expect(overridden.environments.prod!.app.exclude).toEqual(['tests/']);
    expect(overridden.environments.staging!.app.exclude).toHaveLength(5);
  });

  it.each([
    ['""', 'an empty pattern'],
    ['"a\\u0000b"', 'one line'],
    ['"a\\rb"', 'one line'],
    ['"a\\u007fb"', 'one line'],
    ['"a\\u2028b"', 'one line'],
    ['7', 'each pattern is text'],
    ['{ a: b }', 'each pattern is text'],
  ])('refuses the pattern %s', (pattern, message) => {
    const [p] = problems(inventory(`  exclude:\n    - ok/\n    - ${pattern}\n`));
    expect(p).toMatchObject({ line: 6, field: 'app.exclude[1]' });
    expect(p!.message).toContain(message);
  });
});

describe('hooks.build and hooks.timeout', () => {
  it('defaults: no build hooks, 15 minutes', () => {
    const e = prod(inventory(''));
    expect(e.hooks.build).toEqual([]);
    expect(e.hooks.timeout).toBe(900);
  });

  it('takes build hooks and a timeout at the top level, and an environment overrides each', () => {
    const top = 'hooks:\n  build: [python manage.py collectstatic --noinput]\n  before_activate: [python manage.py migrate --noinput]\n  timeout: 1h\n';
    const source = inventory('', top);
    expect(prod(source).hooks).toEqual({
      before_deploy: [],
      build: ['python manage.py collectstatic --noinput'],
      before_activate: ['python manage.py migrate --noinput'],
      after_activate: [],
      after_deploy: [],
      timeout: 3600,
    });
    const e = prod(`${source}    hooks:\n      build: [python manage.py compilemessages]\n      timeout: 90s\n`);
    expect(e.hooks.build).toEqual(['python manage.py compilemessages']);
    expect(e.hooks.before_activate).toEqual(['python manage.py migrate --noinput']);
    expect(e.hooks.timeout).toBe(90);
  });

  it.each([
    ['90s', 90],
    ['15m', 900],
    ['24h', 86400],
    ['1s', 1],
    ['600', 600],
    ['"600"', 600],
  ])('timeout %s is %d seconds', (written, seconds) => {
    expect(prod(inventory('', `hooks: { timeout: ${written} }\n`)).hooks.timeout).toBe(seconds);
  });

  it.each(['0', '0s', '25h', '1441m', '86401', '1d', '15 minutes', '1.5h', '1e3', 'true', '-5'])('refuses the timeout %s', (written) => {
    const [p] = problems(inventory('', `hooks:\n  timeout: ${written}\n`));
    expect(p).toMatchObject({ line: 5, field: 'hooks.timeout' });
  });

  it('refuses a build hook the way it refuses the other server hooks', () => {
    const found = problems(inventory('', 'hooks:\n  build: ["make\\nmake install", ""]\n  before_activate: ["make\\nmake install", ""]\n'));
    expect(found.map((p) => [p.field, p.message])).toEqual([
      ['hooks.build[0]', 'a hook is one line; put longer work in a script in your app and call that'],
      ['hooks.build[1]', 'an empty hook does nothing; remove it'],
      ['hooks.before_activate[0]', 'a hook is one line; put longer work in a script in your app and call that'],
      ['hooks.before_activate[1]', 'an empty hook does nothing; remove it'],
    ]);
  });
});

describe('app.name', () => {
  it('takes 26 characters, and refuses 27 and a name ending in -build', () => {
    expect(prod(inventory('').replace('name: blog', `name: ${'a'.repeat(26)}`)).app.name).toHaveLength(26);
    const [long] = problems(inventory('').replace('name: blog', `name: ${'a'.repeat(27)}`));
    expect(long).toMatchObject({ line: 2, field: 'app.name' });
    expect(long!.message).toContain('the limit is 26, because stack also creates the system user NAME-build');
    const [build] = problems(inventory('').replace('name: blog', 'name: shop-build'));
    expect(build!.message).toContain('must not end in "-build"');
    expect(prod(inventory('').replace('name: blog', 'name: build-tools')).app.name).toBe('build-tools');
  });
});

describe('aliases', () => {
  it('accepts a few ordinary aliases and expands them', () => {
    const source =
      inventory('  env: &vars { GREETING: Hello }\n') +
      '    app: { env: *vars }\n  staging:\n    domains: [staging.example.com]\n    hosts: &hosts\n      - address: 203.0.113.11\n  qa:\n    domains: [qa.example.com]\n    hosts: *hosts\n';
    const inv = parseInventory(source, 'inventory.yml');
    expect(inv.environments.prod!.app.env).toEqual({ GREETING: 'Hello' });
    expect(inv.environments.qa!.hosts).toEqual([{ address: '203.0.113.11' }]);
  });

  it('refuses the billion laughs at the line where the expansion passes the limit', () => {
    const levels = ['lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i < 10; i++)
      levels.push(
        `lol${i}: &l${i} [${Array(9)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      );
    const found = problems(`${levels.join('\n')}\n`);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ line: 5, field: '' });
    expect(found[0]!.message).toMatch(/^YAML alias: .*nested aliases multiply/);
  });

  it("places yaml's own alias limit, should it still stop the conversion, at the first nested alias", () => {
    // Within this file's limits (a few hundred aliases, tiny expansions), but yaml multiplies
    // the uses of an anchor by the aliases inside it and stops past maxAliasCount.
    const env = Array.from({ length: 990 }, (_, i) => `    K${i}: *v\n`).join('');
    const staging = (name: string) => `  ${name}:\n    domains: [${name}.example.com]\n    hosts: [{ address: 203.0.113.11 }]\n    app: { secrets: *s }\n`;
    const source = inventory(`  env:\n    V: &v SECRET\n${env}  secrets: &s [*v]\n`) + staging('qa') + staging('staging');
    const found = problems(source);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ field: '', line: source.split('\n').indexOf('    app: { secrets: *s }') + 1 });
    expect(found[0]!.message).toMatch(/^YAML alias: .*write the values out instead$/);
  });

  it('refuses more than 1000 aliases', () => {
    const env = Array.from({ length: 1001 }, (_, i) => `    K${i}: *v\n`).join('');
    const [p] = problems(inventory(`  secrets: [&v SECRET]\n  env:\n${env}`));
    expect(p).toMatchObject({ line: 1006, field: '' });
    expect(p!.message).toContain('more than 1000 aliases');
  });
});

describe('the size of the file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stack-inventory-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A valid inventory padded with comments to exactly `bytes` bytes. */
  function padded(bytes: number): string {
    const base = inventory('');
    const line = `# ${'x'.repeat(97)}\n`;
    let text = base;
    while (text.length + line.length <= bytes) text += line;
    return `${text + '#'.repeat(bytes - text.length - 1)}\n`;
  }

  it('loads an inventory of exactly 1 MiB', async () => {
    const file = path.join(dir, 'limit.yml');
    writeFileSync(file, padded(MAX_INVENTORY_BYTES));
    expect(Object.keys((await loadInventory(file)).environments)).toEqual(['prod']);
  });

  it('refuses one byte more, before parsing, saying the size and the limit', async () => {
    const file = path.join(dir, 'over.yml');
    const text = padded(MAX_INVENTORY_BYTES + 1);
    writeFileSync(file, text);
    const expected = { file, line: 1, column: 1, field: '' };
    const message = /^the file is 1\.0 MiB \(1,048,577 bytes\), over the limit of 1 MiB \(1,048,576 bytes\)/;
    await expect(loadInventory(file)).rejects.toThrow(InventoryError);
    const fromFile = await loadInventory(file).catch((err: InventoryError) => err.problems);
    expect(fromFile).toEqual([expect.objectContaining(expected)]);
    expect((fromFile as InventoryProblem[])[0]!.message).toMatch(message);
    // Also when the text is handed over directly; multi-byte characters count as bytes.
    const [p] = problems(text);
    expect(p!.message).toMatch(message);
    const [wide] = problems(`${inventory('')}# ${'é'.repeat(MAX_INVENTORY_BYTES / 2)}\n`);
    expect(wide!.message).toContain('over the limit of 1 MiB');
  });

  it('makes `stack render -i FILE` exit 2 with file:1:1, no trace', () => {
    const file = path.join(dir, 'huge.yml');
    writeFileSync(file, padded(3 * MAX_INVENTORY_BYTES));
    const r = stack(['render', '-i', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`${file}:1:1: the file is 3.0 MiB (3,145,728 bytes), over the limit of 1 MiB`);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('editing an inventory in place', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stack-edit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the rest of the file as it was', async () => {
    const file = path.join(dir, 'inventory.yml');
    const before = inventory('  env:\n    GREETING: Hello     # aligned comment\n');
    writeFileSync(file, before);
    await updateInventory(file, (doc) => doc.setIn(['environments', 'prod', 'hosts', 0, 'port'], 2222));
    expect(readFileSync(file, 'utf8')).toBe(before.replace('      - address: 203.0.113.10\n', '      - address: 203.0.113.10\n        port: 2222\n'));
  });

  it('refuses a repeated key and a file over the size limit, and leaves the file alone', async () => {
    const file = path.join(dir, 'repeated.yml');
    const repeated = inventory('  name: shop\n');
    writeFileSync(file, repeated);
    const err = await updateInventory(file, () => {}).catch((e: InventoryError) => e);
    expect(err).toBeInstanceOf(InventoryError);
    expect((err as InventoryError).problems[0]).toMatchObject({ line: 4, column: 3 });
    expect((err as InventoryError).problems[0]!.message).toContain('Map keys must be unique; "name" is already set on line 2');
    const big = path.join(dir, 'big.yml');
    writeFileSync(big, `${inventory('') + '#'.repeat(MAX_INVENTORY_BYTES)}\n`);
    const tooBig = await updateInventory(big, () => {}).catch((e: InventoryError) => e);
    expect((tooBig as InventoryError).problems[0]!.message).toContain('over the limit of 1 MiB');
    expect(readFileSync(file, 'utf8')).toBe(repeated);
  });
});

describe('the JSON schema for editors', () => {
  const schema = JSON.parse(readFileSync(path.join(ROOT, 'schema/inventory.schema.json'), 'utf8')) as {
    properties: Record<string, { properties: Record<string, Record<string, unknown>> }>;
  };

  it('is the schema the inventory code makes (run `npm run schema` after changing src/inventory/schema.ts)', () => {
    expect(readFileSync(path.join(ROOT, 'schema/inventory.schema.json'), 'utf8')).toBe(inventoryJsonSchemaText());
  });

  it('describes the new keys and the bounds', () => {
    const { app, hooks, gateway, nginx } = schema.properties;
    expect(app!.properties.exclude).toMatchObject({ type: 'array', default: [] });
    expect(app!.properties.name).toMatchObject({ maxLength: 26 });
    expect(hooks!.properties.build).toMatchObject({ type: 'array', default: [] });
    expect(String(hooks!.properties.build!.description)).toContain('before it is sealed');
    expect(String(hooks!.properties.before_activate!.description)).toContain('sealed (read-only) release');
    expect(hooks!.properties.timeout).toBeDefined();
    expect(gateway!.properties.max_requests).toMatchObject({ maximum: 1000000000 });
    expect(nginx!.properties.hsts_max_age).toMatchObject({ maximum: 63072000 });
  });
});

describe('env and secrets of an environment merge into the top-level ones', () => {
  const doc = (envApp: string) => `app:
  name: blog
  wsgi: blog.wsgi:application
  env:
    DJANGO_SETTINGS_MODULE: blog.settings
    DEBUG: "false"
  secrets: [SECRET_KEY, SENTRY_DSN]
environments:
  prod:
    domains: [blog.example.com]
    hosts:
      - address: 203.0.113.10
  try:
    domains: [try.example.com]
    hosts:
      - address: 203.0.113.11
    app:
${envApp}`;

  it('adds and overrides variables key by key, keeping the others', () => {
    const inv = parseInventory(doc('      env:\n        DEBUG: "true"\n        FEATURE: on-trial\n'), 'inventory.yml');
    expect(inv.environments.try!.app.env).toEqual({ DJANGO_SETTINGS_MODULE: 'blog.settings', DEBUG: 'true', FEATURE: 'on-trial' });
    expect(inv.environments.prod!.app.env).toEqual({ DJANGO_SETTINGS_MODULE: 'blog.settings', DEBUG: 'false' });
  });

  it('removes an inherited variable set to null', () => {
    const inv = parseInventory(doc('      env:\n        DEBUG: null\n'), 'inventory.yml');
    expect(inv.environments.try!.app.env).toEqual({ DJANGO_SETTINGS_MODULE: 'blog.settings' });
  });

  it('adds secrets to the inherited list, and -NAME removes one', () => {
    const inv = parseInventory(doc('      secrets: [-SENTRY_DSN, MAIL_PASSWORD]\n'), 'inventory.yml');
    expect(inv.environments.try!.app.secrets).toEqual(['SECRET_KEY', 'MAIL_PASSWORD']);
    expect(inv.environments.prod!.app.secrets).toEqual(['SECRET_KEY', 'SENTRY_DSN']);
  });

  it('points at the environment’s own list entry when an added secret repeats an inherited one', () => {
    const [p, ...rest] = problems(doc('      secrets: [MAIL_PASSWORD, SECRET_KEY]\n'));
    expect(rest).toEqual([]);
    expect(p).toMatchObject({ field: 'environments.try.app.secrets[1]', line: 18, message: expect.stringContaining('SECRET_KEY is listed twice') });
  });

  it('points at the environment’s own entry when a secret is also an env variable there', () => {
    const [p] = problems(doc('      env:\n        MAIL_PASSWORD: x\n      secrets: [MAIL_PASSWORD]\n'));
    expect(p).toMatchObject({ field: 'environments.try.app.secrets[0]', message: expect.stringContaining('both in env: and in secrets:') });
  });

  it('refuses to remove a secret that is not inherited, at its line', () => {
    const [p] = problems(doc('      secrets: [-MAIL_PASSWORD]\n'));
    expect(p).toMatchObject({ field: 'environments.try.app.secrets[0]', line: 18, message: expect.stringContaining('does not list MAIL_PASSWORD') });
  });

  it('checks a removed name like any secret name', () => {
    const [p] = problems(doc('      secrets: [-PATH]\n'));
    expect(p).toMatchObject({ field: 'environments.try.app.secrets[0]', message: expect.stringContaining('PATH cannot be set by the app') });
  });
});

describe('app.packages', () => {
  it('takes Debian package names', () => {
    expect(prod(inventory('  packages: [python3-django, libjpeg62-turbo, g++, python3.11-dev]\n')).app.packages).toEqual([
      'python3-django',
      'libjpeg62-turbo',
      'g++',
      'python3.11-dev',
    ]);
  });

  it.each(['Python3-Django', 'python3-django=2:3.2', '-f', 'a', 'x;rm'])('refuses %s at its line', (name) => {
    const [p] = problems(inventory(`  packages: [${JSON.stringify(name)}]\n`));
    expect(p).toMatchObject({ field: 'app.packages[0]', line: 4, message: expect.stringContaining('Debian package name') });
  });
});
