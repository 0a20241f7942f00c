/** A plan as a person reads it before saying yes: per-file diffs (secrets redacted), steps, handlers. */
import { createTwoFilesPatch } from 'diff';
import pc from 'picocolors';
import type { RestorePlan } from '../facts/restore.js';
import { displayContent } from '../secrets/secret.js';
import { describeDatabase } from './database.js';
import { describeParts } from './parts.js';
import { changeCount, type Plan, type ReleasePlan, type VenvPlan } from './plan.js';

export function colorDiff(diff: string): string {
  return diff
    .split('\n')
    .filter((l) => !l.startsWith('==='))
    .map((l) => {
      if (l.startsWith('+++') || l.startsWith('---')) return pc.bold(l);
      if (l.startsWith('+')) return pc.green(l);
      if (l.startsWith('-')) return pc.red(l);
      if (l.startsWith('@@')) return pc.cyan(l);
      return l;
    })
    .join('\n');
}

export function formatPlan(plan: Plan, label: string): string {
  const out: string[] = [];
  const n = changeCount(plan);
  out.push(pc.bold(`${label}: ${n === 0 ? 'nothing to change' : `${n} change${n === 1 ? '' : 's'}`}`));
  if (plan.packages.length) out.push(`  install packages: ${plan.packages.join(' ')}`);
  for (const u of plan.users) out.push(`  create system user ${u.name} (home ${u.home})`);
  for (const m of plan.memberships) out.push(`  add ${m.user} to group ${m.group}`);
  for (const m of plan.leaves) out.push(`  remove ${m.user} from group ${m.group}`);
  for (const d of plan.dirs) out.push(`  ${d.action === 'create' ? 'create directory' : 'set mode/owner of'} ${d.path} (${d.mode} ${d.owner}:${d.group})`);
  if (plan.upgrade?.sealReleases)
    out.push("  seal the releases already there: their code becomes root's and read-only to the app (a recorded configuration root did not make is removed)");
  if (plan.upgrade?.media) out.push(`  hand the uploads in ${plan.upgrade.media} to nginx's group`);
  if (plan.upgrade?.socketGroup) out.push(`  give the live socket ${plan.upgrade.socketGroup.path} to group ${plan.upgrade.socketGroup.group} (no restart)`);
  if (plan.database) out.push(...describeDatabase(plan.database).map((l) => (l.startsWith('  ') ? l : colorDiff(l))));
  if (plan.selfSigned) out.push(`  generate a self-signed certificate for ${plan.selfSigned.domains.join(', ')}`);
  if (plan.certificate) {
    const c = plan.certificate;
    out.push(`  obtain a certificate for ${c.domains.join(', ')} from ${c.server} (${c.reason})`);
  }
  for (const c of plan.files) {
    const f = c.file;
    const attrs = `${f.mode} ${f.owner}:${f.group}`;
    if (c.action === 'create') {
      out.push(`  ${pc.green('new file')} ${f.path} (${attrs})`);
      out.push(colorDiff(createTwoFilesPatch('/dev/null', f.path, '', displayContent(f.content), '', '', { context: 3 })));
    } else if (c.action === 'attributes') {
      out.push(`  ${pc.yellow('mode/owner')} ${f.path}: ${c.attributesBefore} -> ${attrs}`);
    } else {
      out.push(`  ${pc.yellow('changed')} ${f.path}${c.attributesBefore ? ` (${c.attributesBefore} -> ${attrs})` : ''}`);
      if (c.secretOnly) out.push('    (only secret values differ; they are not shown)');
      else out.push(colorDiff(c.diff));
    }
  }
  for (const l of plan.links) out.push(`  link ${l.path} -> ${l.target}`);
  for (const r of plan.removes) out.push(`  remove ${r}`);
  if (plan.release?.copyFrom) {
    // Only the configuration changed: no upload, no virtualenv, the code's files are linked.
    out.push(`  ${pc.green('new release')} ${plan.release.id} (code of ${plan.release.copyFrom}, new configuration)`);
  } else if (plan.release) {
    out.push(`  ${pc.green('new release')} ${plan.release.id} (source ${plan.release.sourceHash.slice(0, 12)})`);
    if (plan.release.venvPlan) out.push(`    virtualenv: ${describeVenv(plan.release, plan.release.venvPlan)}`);
  }
  const shipped = plan.release?.shipped;
  if (shipped && (shipped.added.length > 0 || shipped.removed.length > 0)) {
    // A new file in the upload is where a stray .env or key shows up first.
    const names = (list: string[]) => list.slice(0, 20).join(', ') + (list.length > 20 ? `, and ${list.length - 20} more` : '');
    if (shipped.added.length) out.push(`    ${pc.green('ships new files')}: ${names(shipped.added)}`);
    if (shipped.removed.length) out.push(`    ${pc.red('no longer ships')}: ${names(shipped.removed)}`);
  }
  for (const s of plan.enable) out.push(`  enable ${s}`);
  for (const s of plan.start) out.push(`  start ${s}`);
  if (plan.parts) out.push(...describeParts(plan.parts));
  if (plan.handlers.length) out.push(`  then: ${plan.handlers.map((h) => h.description).join(', ')}`);
  return out.join('\n');
}

/** Whether the new release's virtualenv is reused or built, and why (the index's URL is never shown). */
export function describeVenv(release: ReleasePlan, v: VenvPlan): string {
  if (v.reuse && v.sameCode) return `the sealed one for this package index and Python, ${v.key!.slice(0, 12)} (the code is the live release's)`;
  if (v.reuse) return `reused (requirements and Python unchanged, ${v.key!.slice(0, 12)})`;
  const why =
    v.key === null
      ? 'Python is not installed on the server yet'
      : v.sameCode
        ? "the code is the live release's, but its virtualenv was made for another package index or Python"
        : release.venv.followsCode
          ? 'the requirements install from the source, so it follows the code'
          : 'none on the server for these requirements and this Python';
  const pip = release.requirements
    ? `, then pip install -r ${release.requirements}${release.venv.index ? ` from the index in ${release.venv.index}` : ''}`
    : '';
  return `built (${why})${pip}`;
}

/** A rollback's dry run as a person reads it: a diff from live to recorded for each file, then links. */
export function formatRestore(plan: RestorePlan, label: string): string {
  const out = [`${label}: rollback to ${plan.target} would restore ${plan.files.length} file${plan.files.length === 1 ? '' : 's'}`];
  for (const f of plan.files) {
    const [mode, owner, group] = f.attributes.split(':');
    const attrs = `${mode?.padStart(4, '0')} ${owner}:${group}`;
    if (!f.contentChanged) {
      out.push(`  set mode/owner of ${f.path}: ${f.live ?? 'absent'} -> ${f.attributes}`);
    } else if (f.after === null) {
      out.push(`  ${f.path} (${attrs}): only secret content differs; it is not shown`);
    } else {
      out.push(`  restore ${f.path} (${attrs})`);
      out.push(colorDiff(createTwoFilesPatch(f.path, f.path, f.before ?? '', f.after, 'live', `release ${plan.target}`, { context: 3 })));
    }
  }
  for (const l of plan.links) out.push(`  link ${l.path} -> ${l.target} (now ${l.now ?? 'absent'})`);
  out.push('  then: reload systemd units, restart the app, reload nginx, check health (everything put back if any of it fails)');
  return out.join('\n');
}
