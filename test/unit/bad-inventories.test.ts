/**
 * Bad inventories: every mistake a user can make must be reported at the right line, for the right
 * field, with a message that says what to do, both by the loader and by the real CLI.
 *
 * 1. A corpus of bad files (test/fixtures/bad/*.yml). Each starts with one or more lines
 *    `# expect: LINE FIELD :: TEXT` (FIELD `-` for a YAML syntax error, which has no field).
 * 2. The same files through `stack render -i FILE`: exit 2, one-line errors, nothing on stdout.
 * 3. An injection matrix: every free-text field x every character that could break out of a
 *    generated config, built from a valid inventory and serialized with `yaml`, so the only
 *    thing wrong with each document is that one character.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { InventoryError, type InventoryProblem } from '../../src/errors.js';
import { parseInventory } from '../../src/inventory/load.js';
import { ROOT, stack } from '../helpers/cli.js';
import { stackInProcess } from '../helpers/in-process.js';

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

interface Expectation {
  line: number;
  /** '' for a YAML syntax error. */
  field: string;
  text: string;
}

interface Fixture {
  name: string;
  /** As given to the loader and the CLI: relative to the project root (the CLI's cwd). */
  file: string;
  source: string;
  expectations: Expectation[];
  /** Leading comment lines that start with `# expect` but do not follow the format. */
  malformed: string[];
}

const BAD_DIR = 'test/fixtures/bad';
const EXPECT_LINE = /^# expect: (\d+) (\S+) :: (.+)$/;

function readFixture(name: string): Fixture {
  const file = `${BAD_DIR}/${name}`;
  const source = readFileSync(path.join(ROOT, file), 'utf8');
  const expectations: Expectation[] = [];
  const malformed: string[] = [];
  for (const line of source.split('\n')) {
    if (!line.startsWith('# expect')) break;
    const m = EXPECT_LINE.exec(line);
    if (!m) {
      malformed.push(line);
      continue;
    }
    expectations.push({ line: Number(m[1]), field: m[2] === '-' ? '' : m[2]!, text: m[3]! });
  }
  return { name, file, source, expectations, malformed };
}

const fixtures = readdirSync(path.join(ROOT, BAD_DIR))
  .filter((f) => f.endsWith('.yml'))
  .sort()
  .map(readFixture);

/** Runs the loader and returns its problems; fails the test if it does not throw an InventoryError. */
function problemsOf(source: string, file: string): InventoryProblem[] {
  let thrown: unknown;
  try {
    const inventory = parseInventory(source, file);
    expect.fail(`${file} was accepted, but it should be rejected; environments: ${Object.keys(inventory.environments).join(', ')}`);
  } catch (err) {
    thrown = err;
  }
  if (!(thrown instanceof InventoryError)) {
    // An AssertionError from expect.fail above, or a crash: either way, not what we want.
    throw thrown;
  }
  return thrown.problems;
}

function describeProblems(problems: InventoryProblem[]): string {
  return problems.map((p) => `  ${p.line}:${p.column} ${p.field || '-'} :: ${p.message}`).join('\n');
}

function matches(p: InventoryProblem, e: Expectation): boolean {
  return p.line === e.line && p.field === e.field && p.message.includes(e.text);
}

describe('the bad-inventory corpus', () => {
  it('gives the same answer from a real process as in process (one fixture; the rest run in process)', async () => {
    const file = path.join(
      ROOT,
      'test/fixtures/bad',
      readdirSync(path.join(ROOT, 'test/fixtures/bad'))
        .filter((f) => f.endsWith('.yml'))
        .sort()[0]!,
    );
    const real = stack(['render', '-i', file]);
    expect(real.code).toBe(2);
    expect(await stackInProcess(['render', '-i', file])).toEqual(real);
  });

  it('has at least 30 fixtures, each with its expectations at the top', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(30);
    for (const f of fixtures) {
      expect(f.malformed, `${f.file}: malformed expect line`).toEqual([]);
      expect(f.expectations.length, `${f.file}: first line must be "# expect: LINE FIELD :: TEXT"`).toBeGreaterThan(0);
    }
  });
});

describe.each(fixtures)('$name', (fixture) => {
  it('is rejected by parseInventory with every expected problem, in line order', () => {
    expect(fixture.malformed).toEqual([]);
    expect(fixture.expectations.length).toBeGreaterThan(0);
    const problems = problemsOf(fixture.source, fixture.file);
    expect(problems.length).toBeGreaterThan(0);
    for (const p of problems) expect(p.file).toBe(fixture.file);

    const found = fixture.expectations.map((e) => problems.findIndex((p) => matches(p, e)));
    fixture.expectations.forEach((e, i) => {
      expect(found[i], `expected ${e.line} ${e.field || '-'} :: ${e.text}\nbut the problems were:\n${describeProblems(problems)}`).toBeGreaterThanOrEqual(0);
    });

    // Reported in line order: the problems list is sorted, and the expectations (listed in line
    // order) are found in the same order.
    const lines = problems.map((p) => p.line);
    expect(lines).toEqual([...lines].sort((a, b) => a - b));
    const expectedOrder = [...fixture.expectations].sort((a, b) => a.line - b.line);
    expect(fixture.expectations, 'list the expectations of a fixture in line order').toEqual(expectedOrder);
    expect(found).toEqual([...found].sort((a, b) => a - b));
  });

  it('makes `stack render -i FILE` exit 2 with file:line on stderr, no trace, nothing on stdout', async () => {
    const r = await stackInProcess(['render', '-i', fixture.file]);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stdout).toBe('');
    for (const e of fixture.expectations) expect(r.stderr).toContain(`${fixture.file}:${e.line}:`);
    for (const e of fixture.expectations) expect(r.stderr).toContain(e.text);
    expect(r.code).toBe(2);
  });
});

// ---------------------------------------------------------------------------------------------
// The injection matrix
// ---------------------------------------------------------------------------------------------

type Doc = Record<string, unknown>;
type Key = string | number;

/** A valid inventory with every free-text field set; each case changes one thing. */
function baseInventory(): Doc {
  return {
    app: {
      name: 'shop',
      source: 'src',
      wsgi: 'shop.wsgi:application',
      requirements: 'requirements.txt',
      static: { url: '/static/', path: 'static' },
      media: { url: '/media/', path: '/srv/shop/media' },
      health: '/healthz',
      env: { GREETING: 'Hello', PAGE_SIZE: 20 },
      secrets: ['SECRET_KEY', 'DATABASE_URL'],
    },
    gateway: { server: 'gunicorn', workers: 2, timeout: 30 },
    nginx: { client_max_body_size: '16m', version: '1.24' },
    templates: '.stack/templates',
    environments: {
      prod: {
        domains: ['shop.example.com', 'www.shop.example.com'],
        ssl: 'self-signed',
        hosts: [
          {
            address: '203.0.113.10',
            user: 'deploy',
            port: 22,
            host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
          },
        ],
      },
    },
  };
}

function setIn(doc: Doc, at: readonly Key[], value: unknown): void {
  let node = doc as Record<Key, unknown>;
  for (const key of at.slice(0, -1)) node = node[key] as Record<Key, unknown>;
  node[at[at.length - 1]!] = value;
}

function prod(doc: Doc): Record<string, unknown> {
  return (doc.environments as Record<string, Record<string, unknown>>).prod!;
}

const letsencrypt = (doc: Doc) => {
  prod(doc).ssl = 'letsencrypt';
  prod(doc).email = 'ops@example.com';
};
const customCert = (doc: Doc) => {
  prod(doc).ssl = { cert: 'certs/fullchain.pem', key: 'certs/privkey.pem' };
};

interface FieldCase {
  /** Name of the case, and (for value fields) the dotted path the error must carry. */
  field: string;
  /** Where the value goes. For `key` cases, the map the key is added to. */
  at: readonly Key[];
  /** The value is `prefix + CHAR + suffix`; `prefix + suffix` is a valid value (the control). */
  prefix: string;
  suffix: string;
  /** The character is put in a key of the map at `at` (whose value is `keyValue`), not in a value. */
  key?: boolean;
  keyValue?: string;
  /** A space is a legitimate character in this field. */
  spaceAllowed?: boolean;
  /** What else must be set for the field to be valid. */
  context?: (doc: Doc) => void;
  /** Text on the value's line, unique in the document; defaults to `prefix`. */
  marker?: string;
}

const FIELDS: FieldCase[] = [
  { field: 'app.name', at: ['app', 'name'], prefix: 'webshop', suffix: 'x' },
  { field: 'app.source', at: ['app', 'source'], prefix: 'frontend', suffix: '/app', spaceAllowed: true },
  { field: 'app.wsgi', at: ['app', 'wsgi'], prefix: 'shopapp.wsgi', suffix: ':application' },
  { field: 'app.requirements', at: ['app', 'requirements'], prefix: 'deps/base', suffix: '.txt' },
  { field: 'app.static.url', at: ['app', 'static', 'url'], prefix: '/assets', suffix: '/' },
  { field: 'app.static.path', at: ['app', 'static', 'path'], prefix: 'collected', suffix: '/static' },
  { field: 'app.media.url', at: ['app', 'media', 'url'], prefix: '/uploads', suffix: '/' },
  { field: 'app.media.path', at: ['app', 'media', 'path'], prefix: '/srv/shop/uploads', suffix: '/files' },
  { field: 'app.health', at: ['app', 'health'], prefix: '/status', suffix: '/ping' },
  { field: 'app.env.GREETING', at: ['app', 'env', 'GREETING'], prefix: 'Bonjour', suffix: 'monde', spaceAllowed: true },
  { field: 'app.env.<key>', at: ['app', 'env'], prefix: 'FEATURE', suffix: '_FLAG', key: true, keyValue: 'enabled' },
  { field: 'app.secrets[1]', at: ['app', 'secrets', 1], prefix: 'STRIPE', suffix: '_API_KEY' },
  { field: 'environments.prod.domains[1]', at: ['environments', 'prod', 'domains', 1], prefix: 'store', suffix: '.example.net' },
  { field: 'environments.prod.email', at: ['environments', 'prod', 'email'], prefix: 'admin', suffix: '@example.net', context: letsencrypt },
  {
    field: 'environments.prod.acme_server',
    at: ['environments', 'prod', 'acme_server'],
    prefix: 'https://acme.example.org/dir',
    suffix: 'ectory',
    context: letsencrypt,
  },
  { field: 'environments.prod.hosts[0].address', at: ['environments', 'prod', 'hosts', 0, 'address'], prefix: '198.51.100', suffix: '.7' },
  { field: 'environments.prod.hosts[0].user', at: ['environments', 'prod', 'hosts', 0, 'user'], prefix: 'release', suffix: '-bot' },
  {
    field: 'environments.prod.hosts[0].host_key',
    at: ['environments', 'prod', 'hosts', 0, 'host_key'],
    prefix: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5',
    suffix: 'AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
    // "TYPE BASE64": the one space is part of the format.
    spaceAllowed: true,
    // A long plain scalar may be folded after its first word.
    marker: 'ssh-ed25519',
  },
  { field: 'templates', at: ['templates'], prefix: 'overrides', suffix: '/nginx' },
  { field: 'environments.prod.ssl.cert', at: ['environments', 'prod', 'ssl', 'cert'], prefix: 'tls/shop-cert', suffix: '.pem', context: customCert },
  { field: 'environments.prod.ssl.key', at: ['environments', 'prod', 'ssl', 'key'], prefix: 'tls/shop-key', suffix: '.pem', context: customCert },
  { field: 'nginx.client_max_body_size', at: ['nginx', 'client_max_body_size'], prefix: '128', suffix: 'm' },
  { field: 'nginx.version', at: ['nginx', 'version'], prefix: '1.25', suffix: '.3' },
];

const BREAKOUT_CHARS = [';', '{', '}', "'", '"', '\n', '$', '\\'];

interface Built {
  text: string;
  field: string;
  marker: string;
}

/** The inventory with `value` in the field (for key cases, a key named `value`), as YAML. */
function build(c: FieldCase, value: string): Built {
  const doc = baseInventory();
  c.context?.(doc);
  if (c.key) {
    const map = c.at.reduce<unknown>((node, k) => (node as Record<Key, unknown>)[k], doc) as Record<string, unknown>;
    map[value] = c.keyValue;
  } else {
    setIn(doc, c.at, value);
  }
  return {
    text: stringify(doc),
    field: c.key ? `${c.field.replace(/\.<key>$/, '')}.${value}` : c.field,
    marker: c.marker ?? c.prefix,
  };
}

/**
 * 1-based line of the value, found by searching the text: the one line holding the marker, or,
 * when the value became a block scalar (`key: |-` then the text on the next lines), the line of
 * its `|`/`>` header, where the node starts.
 */
function lineOfValue(text: string, marker: string): number {
  const lines = text.split('\n');
  const hits = lines.flatMap((l, i) => (l.includes(marker) ? [i] : []));
  expect(hits, `marker ${JSON.stringify(marker)} must occur exactly once in:\n${text}`).toHaveLength(1);
  const i = hits[0]!;
  const previous = i > 0 ? lines[i - 1]! : '';
  const blockHeader = /(:|-)\s+[|>][1-9]?[-+]?[1-9]?\s*$/;
  return blockHeader.test(previous) ? i : i + 1;
}

const label = (ch: string) => (ch === ' ' ? 'a space' : JSON.stringify(ch));

const matrix = FIELDS.flatMap((c) => [...BREAKOUT_CHARS, ...(c.spaceAllowed ? [] : [' '])].map((ch) => ({ c, ch, name: `${c.field} with ${label(ch)}` })));

describe('the injection matrix', () => {
  it('starts from a valid inventory', () => {
    const inventory = parseInventory(stringify(baseInventory()), 'base.yml');
    expect(Object.keys(inventory.environments)).toEqual(['prod']);
  });

  it.each(FIELDS.map((c) => ({ c, name: c.field })))('control: $name without the character is accepted', ({ c }) => {
    const built = build(c, c.prefix + c.suffix);
    expect(() => parseInventory(built.text, 'control.yml')).not.toThrow();
    // The control's value really is where the field says.
    const parsed = parseInventory(built.text, 'control.yml');
    if (c.key) expect(Object.keys(parsed.data.app.env)).toContain(c.prefix + c.suffix);
    else {
      const got = c.at.reduce<unknown>((node, k) => (node as Record<Key, unknown>)[k], parsed.data);
      expect(got).toBe(c.prefix + c.suffix);
    }
  });

  it.each(matrix)('rejects $name at its field and line', ({ c, ch }) => {
    const value = c.prefix + ch + c.suffix;
    const built = build(c, value);
    const line = lineOfValue(built.text, built.marker);
    const problems = problemsOf(built.text, 'inject.yml');
    for (const p of problems) expect(p.file).toBe('inject.yml');
    const hit = problems.find((p) => p.field === built.field);
    expect(hit, `no problem for field ${JSON.stringify(built.field)}; input:\n${built.text}\nproblems:\n${describeProblems(problems)}`).toBeDefined();
    expect(hit!.line, `line of ${JSON.stringify(built.field)} in:\n${built.text}`).toBe(line);
    expect(hit!.message.length).toBeGreaterThan(0);
  });
});
