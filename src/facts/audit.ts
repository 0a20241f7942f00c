/** The audit log on a host (/var/log/stack/NAME.log, one JSON line per deploy or rollback). */
import { shCommand } from '../remote/quote.js';
import { records, type Fact } from './fact.js';

export interface AuditEntry {
  time: string;
  who: string;
  command: string;
  release: string | null;
  result: string;
  step: string;
}

/** An entry, or the line as it was when it is not one (a log edited by hand). */
export type AuditRow = AuditEntry | { raw: string };

export function auditFile(app: string): string {
  return `/var/log/stack/${app}.log`;
}

export function auditFact(file: string, lines: number): Fact<AuditRow[]> {
  return {
    what: 'read the audit log',
    lines: [shCommand('fact_audit', file, String(Number.isInteger(lines) && lines > 0 ? lines : 20))],
    parse: parseAudit,
  };
}

export function parseAudit(output: string): AuditRow[] {
  return records(output, 'audit').map((f) => {
    const raw = f.join('\t');
    try {
      const e = JSON.parse(raw) as AuditEntry;
      return typeof e === 'object' && e !== null && 'time' in e ? e : { raw };
    } catch {
      return { raw };
    }
  });
}
