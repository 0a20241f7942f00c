/**
 * `systemd-analyze verify` on rendered units, locally, inside a scratch root that holds the
 * host's stock units and placeholder executables for every Exec*= path (the binaries themselves
 * exist only on the server, where deploy runs the same check for real). systemd-analyze exits 0
 * on unknown keys and unparsable values, so any output at all counts as a failure.
 */
import { chmod, cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import { StackError } from '../errors.js';
import type { CheckResult, ConfigFile } from './nginx.js';

const STOCK_UNITS = '/usr/lib/systemd/system';

export async function checkSystemdUnits(units: ConfigFile[]): Promise<CheckResult> {
  const found = await $({ quiet: true, nothrow: true })`command -v systemd-analyze`;
  if (found.exitCode !== 0 || !existsSync(STOCK_UNITS)) {
    throw new StackError('systemd-analyze is not available here, so units cannot be checked locally', {
      hint: 'run the check on a Linux machine with systemd installed, or leave out --check',
    });
  }
  const root = await mkdtemp(path.join(tmpdir(), 'stack-systemd-check-'));
  try {
    await mkdir(path.join(root, 'usr/lib/systemd'), { recursive: true });
    await cp(STOCK_UNITS, path.join(root, 'usr/lib/systemd/system'), { recursive: true });
    await symlink('usr/bin', path.join(root, 'bin'));
    await mkdir(path.join(root, 'usr/bin'), { recursive: true });
    await mkdir(path.join(root, 'etc/systemd/system'), { recursive: true });
    for (const unit of units) {
      await writeFile(path.join(root, 'etc/systemd/system', path.basename(unit.path)), unit.content);
      for (const exe of executables(unit.content)) {
        const target = path.join(root, exe);
        if (existsSync(target)) continue;
        await mkdir(path.dirname(target), { recursive: true });
        await writeFile(target, '#!/bin/sh\n');
        await chmod(target, 0o755);
      }
    }
    const outputs: string[] = [];
    let ok = true;
    for (const unit of units) {
      const r = await $({ quiet: true, nothrow: true })`systemd-analyze verify --root=${root} ${`/etc/systemd/system/${path.basename(unit.path)}`}`;
      const out = (r.stderr + r.stdout).trim().replaceAll(root, '');
      if (r.exitCode !== 0 || out) ok = false;
      if (out) outputs.push(out);
    }
    return { tool: 'systemd-analyze verify', ok, output: outputs.join('\n') };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Absolute executables named by Exec*= lines (prefixes such as `-` or `+` stripped). */
export function executables(unit: string): string[] {
  const out = new Set<string>();
  for (const m of unit.matchAll(/^Exec[A-Za-z]+=[-+!@:]*(\/\S+)/gm)) out.add(m[1]!);
  return [...out];
}
