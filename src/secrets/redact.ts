/**
 * Redaction of text that came back from a server or a hook: any secret value in it becomes the
 * marker. Values shorter than 4 characters are left alone: they would redact half of any text.
 */
import { REDACTED, type Secret } from './secret.js';

export function redactValues(secrets: Secret[]): (text: string) => string {
  const values = secrets
    .filter((s) => s.known)
    .map((s) => s.reveal())
    .filter((v) => v.length >= 4)
    .sort((a, b) => b.length - a.length);
  return (text) => values.reduce((t, v) => t.split(v).join(REDACTED), text);
}
