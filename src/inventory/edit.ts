/**
 * Changing the user's inventory in place, the way a person would: every comment, key order and
 * all formatting outside the edited nodes stay as they were (yaml's Document API keeps them), and
 * the file is replaced atomically, so an interrupted write never leaves half an inventory.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, realpath, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { diffArrays } from 'diff';
import { isDeepStrictEqual } from 'node:util';
import { LineCounter, parseDocument, type Document } from 'yaml';
import { InventoryError, UsageError } from '../errors.js';
import { MAX_INVENTORY_BYTES, sizeProblem } from './load.js';
import { repeatedKeys } from './syntax.js';

/**
 * Reads `file`, lets `edit` change the parsed document, and writes it back if anything changed.
 * `edit` may throw to abandon the change; the file is then left untouched.
 */
export async function updateInventory(file: string, edit: (doc: Document) => void | Promise<void>): Promise<void> {
  let target: string;
  let source: string;
  try {
    // Through a symlink, replace the file it points at rather than the link.
    target = await realpath(file);
    source = await readFile(target, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(code === 'ENOENT' ? `${file}: no such inventory file` : `${file}: cannot read it (${code ?? String(err)})`, {
      hint: code === 'ENOENT' ? 'run `stack init` to write one, or pass -i FILE' : undefined,
    });
  }

  const size = Buffer.byteLength(source, 'utf8');
  if (size > MAX_INVENTORY_BYTES) throw new InventoryError([sizeProblem(file, size)]);
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  const errors = [
    ...doc.errors.map((e) => ({ offset: e.pos[0], message: e.message.split('\n')[0]! })),
    ...repeatedKeys(doc, lines).map((r) => ({ offset: r.offset, message: `Map keys must be unique; ${r.key} is already set on line ${r.firstLine}` })),
  ];
  if (errors.length > 0) {
    throw new InventoryError(
      errors.map((e) => {
        const pos = lines.linePos(e.offset);
        return { file, line: pos.line, column: pos.col, field: '', message: `YAML syntax error: ${e.message}; fix it before stack edits the file` };
      }),
    );
  }
  await edit(doc);
  const updated = keepOriginalLines(source, doc);
  if (updated === source) return;

  const mode = (await stat(target)).mode & 0o7777;
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(updated, 'utf8');
      // The rename must not land before the data does, or a crash could leave an empty file.
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new UsageError(`${file}: cannot write it (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      hint: `check that the directory ${path.dirname(target)} is writable`,
    });
  }
}

/**
 * yaml re-prints the whole document: comments survive, but the user's alignment of trailing
 * comments does not. So lines the edit did not change are taken from the original text; the
 * result is re-parsed and used only if it means exactly what the edited document means.
 */
function keepOriginalLines(source: string, doc: Document): string {
  // lineWidth 0: long scalars such as host keys stay on one line instead of being folded.
  const printed = doc.toString({ lineWidth: 0, flowCollectionPadding: false });
  const before = source.split('\n');
  const after = printed.split('\n');
  const norm = (line: string) =>
    line
      .replace(/\s+#/, ' #')
      .replace(/([[{]) +/g, '$1')
      .replace(/ +([\]}])/g, '$1')
      .trimEnd();
  const merged: string[] = [];
  let i = 0;
  for (const change of diffArrays(before, after, { comparator: (a, b) => norm(a) === norm(b) })) {
    const n = change.count ?? change.value.length;
    if (change.added) merged.push(...change.value);
    else if (!change.removed) merged.push(...before.slice(i, i + n));
    if (!change.added) i += n;
  }
  const text = merged.join('\n');
  const lines = new LineCounter();
  const reparsed = parseDocument(text, { lineCounter: lines, uniqueKeys: false });
  const clean = reparsed.errors.length === 0 && repeatedKeys(reparsed, lines).length === 0;
  return clean && isDeepStrictEqual(reparsed.toJS(), doc.toJS()) ? text : printed;
}
