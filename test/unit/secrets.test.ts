/** Secret values: redacted in every printable form, revealed only on purpose. */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseInventory } from '../../src/inventory/load.js';
import { Secret, type SecretText, REDACTED } from '../../src/secrets/secret.js';
import { envFileContent } from '../../src/views/envfile.js';

const VALUE = 'p@ss"word$with\\odd`chars';

describe('Secret', () => {
  it.each([
    ['String()', (s: Secret) => String(s)],
    ['template literal', (s: Secret) => `${s}`],
    ['JSON.stringify', (s: Secret) => JSON.stringify({ s })],
    ['util.inspect', (s: Secret) => inspect(s)],
    ['concatenation', (s: Secret) => `x${s}`],
  ])('%s shows the redacted marker only', (_, show) => {
    const out = show(new Secret('DB', VALUE));
    expect(out).toContain(REDACTED);
    expect(out).not.toContain('p@ss');
  });

  it('reveals the value on purpose, and refuses when there is none', () => {
    expect(new Secret('DB', VALUE).reveal()).toBe(VALUE);
    expect(() => new Secret('DB').reveal()).toThrow(/no value/);
  });
});

describe('the environment file', () => {
  const env = parseInventory(
    stringify({
      app: { name: 'blog', wsgi: 'blog.wsgi:application', env: { MODE: 'live' }, secrets: ['DB'] },
      environments: { prod: { domains: ['blog.example.com'], hosts: [{ address: '192.0.2.1' }] } },
    }),
    'inventory.yml',
  ).environments.prod!;

  it('redacts secrets in its printable form and quotes them for systemd when revealed', () => {
    const content: SecretText = envFileContent(env, new Map([['DB', new Secret('DB', VALUE)]]));
    expect(String(content)).toContain(`DB="${REDACTED}"`);
    expect(String(content)).not.toContain('p@ss');
    expect(JSON.stringify({ content })).not.toContain('p@ss');
    expect(content.reveal()).toContain('DB="p@ss\\"word\\$with\\\\odd\\`chars"\n');
    expect(content.reveal()).toContain('MODE="live"\n');
  });
});
