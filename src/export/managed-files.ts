/**
 * The managed files of an environment as Ansible ships them: each host's rendered files, shared
 * when every host has the same bytes, and turned into templates only where the content depends
 * on something known at run time on the server (its CPU count, its nginx version, a secret from
 * the controller's environment). Pure: desired states in, files and task data out.
 *
 * stack renders a file with the facts it reads from each server; the export cannot read them,
 * so it renders each host twice more with other facts and compares. A file that changes with the
 * CPU count becomes a template whose only variable is the count; one that changes with nginx's
 * version ships in both forms, chosen by the version the server reports.
 */
import { StackError } from '../errors.js';
import type { Host } from '../inventory/schema.js';
import type { FileContent } from '../secrets/secret.js';
import type { DesiredFile, DesiredState } from '../state/desired.js';

/** CPU counts no real server reports and no template prints by chance: primes, far apart in text. */
export const CPUS_A = 7919;
export const CPUS_B = 7907;
/** Either side of the one nginx version the views test (1.25.1: `http2 on;`). */
export const NGINX_BEFORE: [number, number, number] = [1, 22, 1];
export const NGINX_AFTER: [number, number, number] = [1, 26, 3];
export const NGINX_THRESHOLD = '1.25.1';

/**
 * Ansible's template module with delimiters no managed file contains, so that a file's own
 * braces, `{%` and `{#` (nginx, shell, Python) are copied byte for byte and only these markers
 * are Jinja.
 */
export const DELIMITERS = {
  variable_start_string: '[[stack:',
  variable_end_string: ':stack]]',
  block_start_string: '[[stack-block:',
  block_end_string: ':stack-block]]',
  comment_start_string: '[[stack-comment:',
  comment_end_string: ':stack-comment]]',
} as const;

/** What stands in for a secret's value while the env file is rendered: only [A-Za-z0-9_@], which systemd's quoting keeps as it is. */
export function secretSentinel(name: string): string {
  return `@@STACK_SECRET_${name}@@`;
}

/** One host, rendered three ways (src/commands/export.ts makes them with buildDesiredState). */
export interface HostRender {
  host: Host;
  /** The facts stack assumes (nginx before 1.25.1), CPUS_A CPUs, secrets as sentinels. */
  base: DesiredState;
  /** The same with nginx at NGINX_AFTER. */
  newerNginx: DesiredState;
  /** The same with CPUS_B CPUs. */
  otherCpus: DesiredState;
}

/** How a managed file reaches the server. */
export type Delivery =
  /** roles/stack/files/SRC, copied as it is. */
  | { kind: 'copy'; src: string }
  /** One of two files, by the server's nginx version. */
  | { kind: 'nginx'; before: string; after: string }
  /** roles/stack/templates/SRC with DELIMITERS. */
  | { kind: 'template'; src: string }
  /** A file on the controller, outside the export (a private key the inventory points at). */
  | { kind: 'local'; src: string };

export interface ManagedFile {
  path: string;
  mode: string;
  owner: string;
  group: string;
  notify: string[];
  validate?: 'nginx' | 'systemd';
  /** The hosts that have it; all of them when every host does. */
  hosts: string[];
  /** By host address; the same object for hosts that share the bytes. */
  delivery: Map<string, Delivery>;
}

export interface RoleFile {
  /** Relative to roles/stack/. */
  path: string;
  content: string;
}

const reveal = (c: FileContent): string => (typeof c === 'string' ? c : c.reveal());

/**
 * The managed files of every host, and the files of the role that carry them. `localKey` is the
 * private key of `ssl: { cert, key }` on the controller: shipped from there, never copied into
 * the export.
 */
export function managedFiles(hosts: HostRender[], secretNames: readonly string[], localKey?: string): { files: ManagedFile[]; roleFiles: RoleFile[] } {
  const roleFiles = new Map<string, string>();
  const byPath = new Map<string, ManagedFile>();
  // Content already placed, by its role path: identical bytes on several hosts share one file.
  const store = (dir: 'files' | 'templates', host: string, path: string, content: string, shared: boolean, suffix = ''): string => {
    const rel = `${shared ? 'all' : host}${path}${suffix}`;
    const prior = roleFiles.get(`${dir}/${rel}`);
    if (prior !== undefined && prior !== content) throw new Error(`two contents for ${dir}/${rel}`);
    roleFiles.set(`${dir}/${rel}`, content);
    return rel;
  };

  for (const h of hosts) {
    const address = h.host.address;
    for (const f of h.base.files) {
      const other = byPath.get(f.path);
      if (other && (other.mode !== f.mode || other.owner !== f.owner || other.group !== f.group || other.notify.join() !== f.notify.join())) {
        throw new StackError(`${f.path} has other attributes on ${address} than on ${other.hosts[0]}; the export keeps one set per file`);
      }
      const entry: ManagedFile = other ?? {
        path: f.path,
        mode: f.mode,
        owner: f.owner,
        group: f.group,
        notify: f.notify,
        ...(f.validate ? { validate: f.validate } : {}),
        hosts: [],
        delivery: new Map(),
      };
      entry.hosts.push(address);
      byPath.set(f.path, entry);
      entry.delivery.set(address, deliveryOf(h, f, hosts, secretNames, localKey, store));
    }
  }
  return { files: [...byPath.values()], roleFiles: [...roleFiles].map(([path, content]) => ({ path, content })) };
}

type Store = (dir: 'files' | 'templates', host: string, path: string, content: string, shared: boolean, suffix?: string) => string;

function deliveryOf(h: HostRender, f: DesiredFile, all: HostRender[], secretNames: readonly string[], localKey: string | undefined, store: Store): Delivery {
  if (f.secret) {
    if (!localKey) throw new StackError(`${f.path} is a secret file the export cannot reference`);
    return { kind: 'local', src: localKey };
  }
  const content = reveal(f.content);
  const newer = reveal(fileIn(h.newerNginx, f.path).content);
  const cpus = reveal(fileIn(h.otherCpus, f.path).content);
  // Shared when every host renders the same bytes (in every variant), else one copy per host.
  const shared = all.every((o) => {
    const same = (s: DesiredState, text: string) => s.files.some((x) => x.path === f.path && reveal(x.content) === text);
    return same(o.base, content) && same(o.newerNginx, newer) && same(o.otherCpus, cpus);
  });
  const secret = secretNames.some((n) => content.includes(secretSentinel(n)));
  if (content !== cpus || secret) {
    if (content !== newer) throw new StackError(`${f.path} depends both on the CPU count and on nginx's version; the export cannot template it`);
    return { kind: 'template', src: store('templates', h.host.address, f.path, toTemplate(f.path, content, cpus, secretNames), shared, '.j2') };
  }
  if (content !== newer) {
    return {
      kind: 'nginx',
      before: store('files', h.host.address, f.path, content, shared, `.nginx-before-${NGINX_THRESHOLD}`),
      after: store('files', h.host.address, f.path, newer, shared, `.nginx-${NGINX_THRESHOLD}-and-later`),
    };
  }
  return { kind: 'copy', src: store('files', h.host.address, f.path, content, shared) };
}

function fileIn(state: DesiredState, path: string): DesiredFile {
  const f = state.files.find((x) => x.path === path);
  if (!f) throw new Error(`${path} is missing from a variant of the desired state`);
  return f;
}

const v = (expression: string) => `${DELIMITERS.variable_start_string} ${expression} ${DELIMITERS.variable_end_string}`;

/**
 * systemd's quoting in the env file (src/views/envfile.ts), done by Jinja on the controller's
 * value: a backslash before \, ", $ and `, backslashes first.
 */
export function secretExpression(name: string): string {
  return `lookup('env', '${name}') | replace('\\\\', '\\\\\\\\') | replace('"', '\\\\"') | replace('$', '\\\\$') | replace('\`', '\\\\\`')`;
}

/** The CPU-dependent and secret parts of a file as template variables; proven by rendering the other count back. */
export function toTemplate(path: string, content: string, otherCpus: string, secretNames: readonly string[]): string {
  for (const marker of Object.values(DELIMITERS)) {
    if (content.includes(marker)) throw new StackError(`${path} contains "${marker}", which the export uses as a template marker`);
  }
  const cpuValues = (n: number) => [String(n * 2 + 1), String(n)] as const;
  const [workersA, cpusA] = cpuValues(CPUS_A);
  const [workersB, cpusB] = cpuValues(CPUS_B);
  if (content !== otherCpus && otherCpus !== content.replaceAll(workersA, workersB).replaceAll(cpusA, cpusB)) {
    throw new StackError(`${path} depends on the server's CPU count in a way the export cannot template`, {
      hint: 'set cpus: on the host (or gateway.workers) in the inventory, so the file is the same on every run',
    });
  }
  // Replaced by functions: a replacement string would read `$'` and `$\`` in the expression as patterns.
  let text = content.replaceAll(workersA, () => v('stack_cpus * 2 + 1')).replaceAll(cpusA, () => v('stack_cpus'));
  for (const name of secretNames) text = text.replaceAll(secretSentinel(name), () => v(secretExpression(name)));
  return text;
}
