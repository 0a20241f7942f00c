/**
 * Roles are data (roles/*.yml): which files, packages, users, directories, services and handlers
 * make up each part of the stack. This module reads and checks them; src/state/desired.ts turns
 * them into the desired state of one host.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import * as v from 'valibot';

export const BUILTIN_ROLES = fileURLToPath(new URL('../../roles/', import.meta.url));

/** `when: { gateway: uwsgi }`: every key must match the host's context. */
const Condition = v.record(v.string(), v.union([v.string(), v.boolean()]));

const FileEntry = v.strictObject({
  path: v.string(),
  template: v.optional(v.string()),
  view: v.optional(v.picklist(['nginx', 'unit', 'gunicorn', 'uwsgi', 'database', 'redis'])),
  generator: v.optional(v.picklist(['env', 'certificate', 'certificate-chain', 'certificate-key', 'db-backup'])),
  when: v.optional(Condition),
  mode: v.pipe(v.string(), v.regex(/^0[0-7]{3}$/)),
  owner: v.string(),
  group: v.string(),
  validate: v.optional(v.picklist(['nginx', 'systemd'])),
  notify: v.optional(v.array(v.string()), []),
});

const RoleSchema = v.strictObject({
  description: v.string(),
  packages: v.optional(v.array(v.union([v.string(), v.strictObject({ name: v.string(), when: Condition })])), []),
  users: v.optional(v.array(v.strictObject({ name: v.string(), home: v.string(), system: v.boolean() })), []),
  // `absent: true`: the user must NOT be in the group (taken out on the next setup or deploy).
  memberships: v.optional(v.array(v.strictObject({ user: v.string(), group: v.string(), absent: v.optional(v.boolean()) })), []),
  dirs: v.optional(v.array(v.strictObject({ path: v.string(), mode: v.string(), owner: v.string(), group: v.string(), when: v.optional(Condition) })), []),
  files: v.optional(v.array(FileEntry), []),
  links: v.optional(v.array(v.strictObject({ path: v.string(), target: v.string(), notify: v.optional(v.array(v.string()), []) })), []),
  removes: v.optional(v.array(v.strictObject({ path: v.string(), notify: v.optional(v.array(v.string()), []) })), []),
  services: v.optional(v.array(v.union([v.string(), v.strictObject({ name: v.string(), when: Condition })])), []),
  handlers: v.optional(
    // `service`: the service a handler (re)starts, so a planned start is not done twice.
    v.record(v.string(), v.strictObject({ description: v.string(), command: v.string(), service: v.optional(v.string()) })),
    {},
  ),
});

export type Role = v.InferOutput<typeof RoleSchema> & { name: string };
export type RoleFile = v.InferOutput<typeof FileEntry>;
export type Condition = v.InferOutput<typeof Condition>;

/** All roles, in a fixed order: app before web, so units exist before nginx points at them. */
export function loadRoles(dir = BUILTIN_ROLES): Role[] {
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.yml'))
    .map((f) => f.slice(0, -4))
    .sort();
  return names.map((name) => {
    const file = path.join(dir, `${name}.yml`);
    const result = v.safeParse(RoleSchema, parse(readFileSync(file, 'utf8')));
    if (!result.success) {
      const issue = result.issues[0];
      throw new Error(`${file}: ${v.getDotPath(issue) ?? ''}: ${issue.message}`);
    }
    for (const f of result.output.files) {
      if ((f.template === undefined) === (f.generator === undefined)) throw new Error(`${file}: ${f.path}: give either template or generator`);
    }
    return { name, ...result.output };
  });
}

export function matches(condition: Condition | undefined, context: Record<string, string | boolean>): boolean {
  if (!condition) return true;
  return Object.entries(condition).every(([key, want]) => context[key] === want);
}
