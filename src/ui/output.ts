/**
 * The one place where results reach the user. The entry point makes one Output from the global
 * flags (`-q`, `-v`, `--json`); commands hand it their results as data and it prints them as
 * text at that level or as one JSON document. stdout carries results only; progress, notes and
 * warnings go to stderr, so `stack releases --json | jq` reads nothing else. Every byte written
 * here passes through the redaction of the secret values it was told about.
 */
import pc from 'picocolors';
import { createProgress, type Progress, type ProgressStream } from './progress.js';
import { redactValues } from '../secrets/redact.js';
import type { Secret } from '../secrets/secret.js';
import { jsonOf } from './json.js';
import type { CommandResult, HostPart } from './results.js';
import {
  auditText,
  backupsText,
  certsText,
  deployHostLines,
  foldedDeployLines,
  lockText,
  noCertificatesText,
  releasesText,
  statusText,
  summaryLine,
} from './text.js';

/** `-q`: results, warnings and errors only; `-v`: each step's time, round trips, each host's steps. */
export type Level = 'quiet' | 'normal' | 'verbose';

export interface OutputOptions {
  level?: Level;
  json?: boolean;
  /** `--debug` has always added each host's round trips to a deploy's last line. */
  debug?: boolean;
  stdout?: ProgressStream;
  stderr?: ProgressStream;
}

export interface Output {
  readonly level: Level;
  readonly json: boolean;
  /** Steps as they run, on stderr. */
  readonly progress: Progress;
  /** From now on, these values never appear in anything written, text or JSON. */
  addSecrets(secrets: Iterable<Secret>): void;
  /** Result text of a command that has no result type (render): stdout, or stderr under --json. */
  print(text: string): void;
  /** stderr, at every level and with --json. */
  warn(text: string): void;
  /** stderr, hidden by -q. */
  note(text: string): void;
  /** stderr, only with -v. */
  detail(text: string): void;
  /** One host's part of a result, shown as soon as it is known; JSON waits for the whole. */
  host(part: HostPart): void;
  /** The whole result: the text still to show (a deploy's last line), or the JSON document. */
  result(r: CommandResult): void;
}

export function createOutput(o: OutputOptions = {}): Output {
  const level = o.level ?? 'normal';
  const json = o.json ?? false;
  const stdout = o.stdout ?? process.stdout;
  const stderr = o.stderr ?? process.stderr;
  const secrets: Secret[] = [];
  let redact = (text: string) => text;
  // Progress writes through the redaction too: a step's name can carry a hook's command line.
  const progress = createProgress({ isTTY: stderr.isTTY, write: (text) => stderr.write(redact(text)) }, level);
  // Through progress, so that a step's line on a terminal is finished before anything follows it.
  const err = (text: string) => progress.line(text);
  const out = (text: string) => stdout.write(redact(text));
  // Host parts already shown, so that result() shows only the rest.
  let shown = 0;

  const showHost = (part: HostPart) => {
    switch (part.kind) {
      case 'releases':
        return out(releasesText(part));
      case 'certs':
        return out(certsText(part, part.ssl));
      case 'lock':
        return out(lockText(part, part.action));
      case 'audit':
        return out(auditText(part));
      case 'deploy':
        for (const line of deployHostLines(part.result, part.env, part.dryRun, level)) err(line);
        return;
      case 'status':
        return out(statusText(part));
      case 'backups':
        return out(backupsText(part));
    }
  };

  return {
    level,
    json,
    progress,
    addSecrets(more) {
      secrets.push(...more);
      redact = redactValues(secrets);
    },
    print(text) {
      if (json) stderr.write(redact(text));
      else out(text);
    },
    warn(text) {
      err(`${pc.yellow('warning:')} ${text}`);
    },
    note(text) {
      if (level !== 'quiet') err(text);
    },
    detail(text) {
      if (level === 'verbose') err(text);
    },
    host(part) {
      if (json) return;
      showHost(part);
      shown++;
    },
    result(r) {
      if (json) {
        // Redacted value by value, not the document's text: there a secret with a quote in it is
        // escaped, and one that reads `true` would break the JSON.
        stdout.write(`${JSON.stringify(jsonOf(r), (_, v: unknown) => (typeof v === 'string' ? redact(v) : v), 2)}\n`);
        return;
      }
      if (r.kind === 'deploy' && r.dryRun && r.hosts.length > 1 && shown === 0) for (const line of foldedDeployLines(r.hosts, r.env, level)) err(line);
      else for (const part of hostParts(r).slice(shown)) showHost(part);
      shown = 0;
      if (r.kind === 'certs' && r.ssl === 'none') out(noCertificatesText(r.env));
      if (r.kind === 'deploy') err(summaryLine(r.hosts, r.dryRun, r.ms, level === 'verbose' || o.debug === true));
    },
  };
}

function hostParts(r: CommandResult): HostPart[] {
  switch (r.kind) {
    case 'releases':
      return r.hosts.map((h) => ({ kind: 'releases', ...h }));
    case 'certs':
      return r.hosts.map((h) => ({ kind: 'certs', ssl: r.ssl, ...h }));
    case 'lock':
      return r.hosts.map((h) => ({ kind: 'lock', action: r.action, ...h }));
    case 'audit':
      return r.hosts.map((h) => ({ kind: 'audit', ...h }));
    case 'deploy':
      return r.hosts.map((result) => ({ kind: 'deploy', env: r.env, dryRun: r.dryRun, result }));
    case 'status':
      return r.hosts.map((h) => ({ kind: 'status', ...h }));
    case 'backups':
      return r.hosts.map((h) => ({ kind: 'backups', ...h }));
  }
}
