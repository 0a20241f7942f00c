/**
 * The app's user must never be able to make root read, install or run something it wrote.
 * Each attack here is made for real on a sandbox, from the strongest position an attacker who
 * got the app's identity has: a shell as that user OUTSIDE the unit's sandbox (what a hook or a
 * one-off command gets). The build user (a malicious pip package or build hook) attacks too.
 */
import { chmodSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runProgram } from '../../src/sandbox/sandbox.js';
import { stack, startStack } from '../helpers/cli.js';
import { exampleProject, PROJECT_SECRET, stackIn, editInventory as editProjectInventory } from '../helpers/project.js';
import { bootSandbox, rootExec, sshExec, type SandboxInfo } from '../helpers/sandbox.js';

let server: SandboxInfo;
let dir: string;

const run = (args: string[]) => stackIn(dir, args);
const root = (command: string) => rootExec(server, command);
/** A command as the app's user, outside any sandbox: exit code and output. */
async function asUser(user: string, command: string): Promise<{ code: number; out: string }> {
  const r = await sshExec(server, `runuser -u ${user} -- sh -c '${command.replace(/'/g, `'\\''`)}' 2>&1`, 'root');
  return { code: r.code, out: r.stdout.trim() };
}
async function get(pathname: string): Promise<{ status: number; body: string }> {
  const r = await runProgram('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '10', `http://${server.address}${pathname}`], 15_000);
  const nl = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl) };
}
const live = async () => (await root('readlink /srv/hello/current')).replace('releases/', '');
const wsgi = () => path.join(dir, 'example/hello/wsgi.py');

// biome-ignore lint/suspicious/noExplicitAny: the parsed inventory is edited freely, like a user would
const editInventory = (change: (doc: Record<string, any>) => void) => editProjectInventory(dir, change);

beforeAll(async () => {
  server = await bootSandbox('priv');
  dir = exampleProject(server, {
    hooks: {
      // Writes into the release before it is sealed (what collectstatic does).
      build: ["python -c \"open('static/built.txt', 'w').write('built by the build hook')\""],
      // Runs as the app on the sealed release: it must not be able to write there.
      before_activate: ['if touch cannot-write 2>/dev/null; then echo "the release is writable"; exit 1; fi; touch /srv/hello/shared/migrated'],
    },
  });
  editInventory((doc) => {
    doc.app.media = { url: '/media/', path: '/srv/hello/media' };
  });
  // Outside git, .gitignore still decides what ships; a file private locally stays private.
  const src = path.join(dir, 'example');
  writeFileSync(path.join(src, '.gitignore'), '.env\nid_rsa\ndb.sqlite3\n');
  for (const f of ['.env', 'id_rsa', 'db.sqlite3']) writeFileSync(path.join(src, f), `${f}: must never ship\n`, { mode: 0o600 });
  writeFileSync(path.join(src, 'private.txt'), 'only the app reads this\n');
  chmodSync(path.join(src, 'private.txt'), 0o600);
  expect(run(['setup', 'sbx']).code).toBe(0);
  const first = run(['deploy', 'sbx']);
  expect(first.code, first.stderr).toBe(0);
  writeFileSync(wsgi(), readFileSync(wsgi(), 'utf8').replace('"status": "ok"', '"status": "ok", "version": 2'));
  const second = run(['deploy', 'sbx']);
  expect(second.code, second.stderr).toBe(0);
}, 300_000);

describe('ownership: what each user may write and read', () => {
  it('gives the app only its state, media and runtime folders, and nginx only what it serves', async () => {
    const rel = `/srv/hello/releases/${await live()}`;
    const table = await root(
      `stat -c '%n %U:%G %a' /srv/hello /srv/hello/releases ${rel} ${rel}/hello/wsgi.py ${rel}/.venv/bin/python3 ${rel}/static ${rel}/static/built.txt ${rel}/private.txt ${rel}/.stack ${rel}/.stack-release.json /srv/hello/shared /srv/hello/media /etc/hello /etc/hello/env /etc/hello/gunicorn.conf.py /run/hello/gunicorn.sock /etc/systemd/system/hello.service`,
    );
    process.stderr.write(`[privileges] ownership after a deploy:\n${table}\n`);
    const row = (p: string) =>
      table
        .split('\n')
        .find((l) => l.startsWith(`${p} `))
        ?.split(' ')
        .slice(1)
        .join(' ');
    expect(row('/srv/hello')).toBe('root:hello 751');
    expect(row('/srv/hello/releases')).toBe('root:hello 751');
    expect(row(rel)).toBe('root:hello 751');
    expect(row(`${rel}/hello/wsgi.py`)).toBe('root:hello 640');
    expect(row(`${rel}/private.txt`)).toBe('root:hello 640');
    expect(row(`${rel}/static/built.txt`)).toBe('root:hello 644');
    expect(row(`${rel}/.stack`)).toBe('root:root 700');
    expect(row('/srv/hello/shared')).toBe('hello:hello 750');
    expect(row('/srv/hello/media')).toBe('hello:www-data 2750');
    expect(row('/etc/hello/env')).toBe('root:root 600');
    expect(row('/run/hello/gunicorn.sock')).toBe('hello:www-data 660');
    expect(await root('id -nG www-data')).not.toMatch(/\bhello\b/);
  });

  it('ships what .gitignore allows, and keeps private files from nginx', async () => {
    const rel = `/srv/hello/releases/${await live()}`;
    expect(await root(`ls -A ${rel}`)).not.toMatch(/^(\.env|id_rsa|db\.sqlite3)$/m);
    expect((await asUser('hello', `cat ${rel}/private.txt`)).out).toBe('only the app reads this');
    expect((await asUser('www-data', `cat ${rel}/private.txt`)).code).not.toBe(0);
  });

  it('lists in a dry run the files that would ship and did not before', async () => {
    const notes = path.join(dir, 'example/notes.txt');
    writeFileSync(notes, 'a file nobody meant to ship\n');
    const dry = run(['deploy', 'sbx', '--dry-run']);
    rmSync(notes);
    expect(dry.code).toBe(0);
    expect(dry.stdout + dry.stderr).toMatch(/ships new files: notes\.txt/);
  });

  it('refuses, before contacting the server, a static folder that is the release itself and a link out of the source', async () => {
    const liveBefore = await live();
    const inventory = readFileSync(path.join(dir, 'inventory.yml'), 'utf8');
    editInventory((doc) => {
      doc.app.static = { url: '/static/', path: '.' };
    });
    const dot = run(['deploy', 'sbx']);
    writeFileSync(path.join(dir, 'inventory.yml'), inventory);
    expect(dot.code).toBe(2);
    expect(dot.stderr).toMatch(/inventory\.yml:\d+:\d+: app\.static\.path: .*"\." is the release itself/);
    const link = path.join(dir, 'example/hello/key.pem');
    symlinkSync('/etc/ssh/ssh_host_ed25519_key', link);
    const out = run(['deploy', 'sbx']);
    rmSync(link);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/hello\/key\.pem -> \/etc\/ssh\/ssh_host_ed25519_key/);
    expect(await live()).toBe(liveBefore);
    expect((await get('/health')).status).toBe(200);
  });

  it('lets the hooks of each kind do what they are for', async () => {
    expect((await get('/static/built.txt')).body).toBe('built by the build hook');
    expect(await root('stat -c %U /srv/hello/shared/migrated')).toBe('hello');
  });
});

describe('attacks as the app user', () => {
  it('cannot change its code, virtualenv, settings or releases (attack 3)', async () => {
    const rel = `/srv/hello/releases/${await live()}`;
    for (const attempt of [
      `echo "import os" >> ${rel}/hello/wsgi.py`,
      `chmod u+w ${rel}/hello/wsgi.py`,
      `touch ${rel}/.venv/bin/evil`,
      `touch ${rel}/.venv/lib/evil.pth`,
      `echo EVIL=1 >> /etc/hello/env`,
      `cat /etc/hello/env`,
      `echo "import os" >> /etc/hello/gunicorn.conf.py`,
      `touch /srv/hello/evil`,
      `ln -sfn /tmp /srv/hello/current`,
      `mkdir /srv/hello/releases/99999999T999999Z`,
    ]) {
      const r = await asUser('hello', attempt);
      expect(r.code, `${attempt} must fail`).not.toBe(0);
    }
    // What an app needs stays writable.
    expect((await asUser('hello', 'touch /srv/hello/shared/state && umask 027 && echo upload > /srv/hello/media/up.txt')).code).toBe(0);
    expect((await get('/media/up.txt')).body).toBe('upload\n');
  });

  it('cannot make root install a planted configuration through rollback (attack 1)', async () => {
    const [older] = (await root('ls /srv/hello/releases')).split('\n');
    const rel = `/srv/hello/releases/${older}`;
    const plant = [
      `mkdir -p /srv/hello/shared/evil/config/etc/systemd/system`,
      `printf '[Service]\\nExecStartPre=+/bin/sh -c "id > /root/pwned"\\nExecStart=/bin/true\\n' > /srv/hello/shared/evil/config/etc/systemd/system/hello.service`,
    ].join(' && ');
    expect((await asUser('hello', plant)).code).toBe(0);
    for (const attempt of [
      `mv ${rel}/.stack ${rel}/.stack-away`,
      `mv /srv/hello/shared/evil ${rel}/.stack`,
      `mv ${rel} /srv/hello/shared/moved`,
      `rm -rf ${rel}/.stack`,
    ]) {
      expect((await asUser('hello', attempt)).code, `${attempt} must fail`).not.toBe(0);
    }
    const r = run(['rollback', 'sbx']);
    expect(r.code, r.stderr).toBe(0);
    expect(await root('test -e /root/pwned && echo pwned || echo clean')).toBe('clean');
    expect(await root('grep -c ExecStartPre /etc/systemd/system/hello.service || true')).toBe('0');
    expect((await get('/health')).status).toBe(200);
    // Forward again for the tests after this one.
    expect(run(['deploy', 'sbx']).code).toBe(0);
  });

  it('cannot reach a release while it is built, and the build cannot escape it (attack 2)', async () => {
    // The build hook plays a malicious package: it points .stack at /etc (activation writes
    // .stack/config and .stack/links as root), links code into the static folder, leaves a
    // process behind, and tries to write outside its release.
    editInventory((doc) => {
      doc.hooks.build = [
        ...doc.hooks.build,
        'ln -s /etc .stack; ln -s /etc .stack-release.json; ln -s ../hello/wsgi.py static/code.py; (sleep 600 >/dev/null 2>&1 &); touch /srv/hello/shared/from-build 2>/dev/null; echo "# build" >> /srv/hello/current/hello/wsgi.py 2>/dev/null; sleep 4',
      ];
    });
    writeFileSync(wsgi(), readFileSync(wsgi(), 'utf8').replace('"version": 2', '"version": 3'));
    const deploying = stack(['deploy', 'sbx'], { cwd: dir });
    expect(deploying.code, deploying.stderr).toBe(0);
    const rel = `/srv/hello/releases/${await live()}`;
    expect(await root(`stat -c '%F %U:%G %a' ${rel}/.stack`)).toBe('directory root:root 700');
    expect(await root(`test -f ${rel}/.stack-release.json && test ! -L ${rel}/.stack-release.json && echo file`)).toBe('file');
    expect(await root('ls -d /etc/config /etc/links 2>/dev/null || echo none')).toBe('none');
    expect(await root('pgrep -u hello-build || echo none')).toBe('none');
    expect(await root('test -e /srv/hello/shared/from-build && echo written || echo refused')).toBe('refused');
    expect(await root(`grep -c '# build' /srv/hello/releases/*/hello/wsgi.py | grep -v ':0$' || echo none`)).toBe('none');
    // nginx follows the link but cannot read the code behind it.
    expect((await get('/static/code.py')).status).toBe(403);
    expect((await get('/health')).status).toBe(200);
  });

  it('keeps nginx out of the code and the settings', async () => {
    const rel = `/srv/hello/releases/${await live()}`;
    for (const attempt of [`cat ${rel}/hello/wsgi.py`, 'cat /etc/hello/env', 'cat /etc/hello/gunicorn.conf.py', `ls ${rel}`]) {
      expect((await asUser('www-data', attempt)).code, `www-data: ${attempt} must fail`).not.toBe(0);
    }
  });

  it('keeps the unit as hardened as before (systemd-analyze security)', async () => {
    const out = await root('systemd-analyze security hello.service --no-pager | tail -n 1');
    const score = Number(out.match(/exposure level for hello\.service: ([\d.]+)/)?.[1]);
    process.stderr.write(`[privileges] ${out}\n`);
    expect(score).toBeLessThanOrEqual(3.0);
  });
});

describe('upgrade from the layout of before', () => {
  it('converts a server where the app owned its releases, with no request lost and no release lost', async () => {
    // Put the server back into the earlier layout, as earlier versions left it, then plant the
    // rollback attack in the older release the way it worked then.
    const releasesBefore = (await root('ls /srv/hello/releases')).split('\n');
    const older = releasesBefore[0]!;
    await root(
      [
        'for r in /srv/hello/releases/*; do find "$r" -path "$r/.stack" -prune -o -exec chown -h hello:hello {} +; chmod -R u+rwX,g+rX,g-w,o-rwx "$r/hello" "$r/static"; done',
        'chown hello:hello /srv/hello /srv/hello/releases && chmod 0750 /srv/hello /srv/hello/releases && chown -h hello:hello /srv/hello/current',
        'chown hello:hello /etc/hello/env && chmod 0600 /etc/hello/env',
        'chgrp -R hello /srv/hello/media && chmod g-s /srv/hello/media',
        // nginx's new workers (in the app's group) must serve before the socket changes group.
        'usermod -aG hello www-data && systemctl reload nginx && sleep 2',
        'sed -i "s/^SocketGroup=www-data/SocketGroup=hello/" /etc/systemd/system/hello.socket && systemctl daemon-reload && chgrp hello /run/hello/gunicorn.sock',
      ].join(' && '),
    );
    expect((await get('/health')).status).toBe(200);
    const planted = `mv /srv/hello/releases/${older}/.stack /srv/hello/releases/${older}/.stack-away && mkdir -p /srv/hello/releases/${older}/.stack/config && chmod 700 /srv/hello/releases/${older}/.stack`;
    expect((await asUser('hello', planted)).code).toBe(0);

    const load = loadLoop(4);
    writeFileSync(wsgi(), readFileSync(wsgi(), 'utf8').replace('"version": 3', '"version": 4'));
    const dry = run(['deploy', 'sbx', '--dry-run']);
    expect(dry.stdout + dry.stderr).toContain('seal the releases already there');
    expect(dry.stdout + dry.stderr).toContain('remove www-data from group hello');
    // Asynchronous: a blocking spawn would freeze the load loop while the deploy runs.
    const r = await startStack(['deploy', 'sbx'], { cwd: dir, limitMs: 240_000 }).done;
    expect(r.stdout + r.stderr).not.toContain(PROJECT_SECRET);
    const counts = await load.stop();
    process.stderr.write(`[privileges] upgrade under load: ${counts.total} requests, ${counts.failed} not 200\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`release ${older}: its recorded configuration is not the one stack made`);
    expect(counts.total).toBeGreaterThan(50);
    expect(counts.failed).toBe(0);

    const after = (await root('ls /srv/hello/releases')).split('\n');
    // Every release is kept but the tampered one, which can no longer be trusted (pruned first).
    for (const id of releasesBefore.filter((id) => id !== older).slice(-4)) expect(after).toContain(id);
    expect(await root("find /srv/hello/releases -path '*/.stack' -prune -o ! -user root -print | head -n 3")).toBe('');
    expect(await root('stat -c %U:%G:%a /srv/hello /etc/hello/env /srv/hello/media')).toBe('root:hello:751\nroot:root:600\nhello:www-data:2750');
    expect(await root('id -nG www-data')).not.toMatch(/\bhello\b/);
    // The tampered release can no longer be rolled back to; the others still can.
    const refused = run(['rollback', 'sbx', older]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/no recorded configuration|there is no release/);
    expect((await get('/health')).status).toBe(200);
  });
});

/** Requests on fresh connections until stopped, bounded to 5 minutes. */
function loadLoop(clients: number): { stop: () => Promise<{ total: number; failed: number }> } {
  let running = true;
  let total = 0;
  let failed = 0;
  const deadline = Date.now() + 300_000;
  const worker = async () => {
    while (running && Date.now() < deadline) {
      const r = await get('/health');
      total++;
      if (r.status !== 200) failed++;
    }
  };
  const workers = Array.from({ length: clients }, worker);
  return {
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return { total, failed };
    },
  };
}
