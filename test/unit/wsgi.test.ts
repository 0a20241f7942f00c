/** `app.wsgi` checked against the source before anything is rendered or sent. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { wsgiModuleFiles, wsgiProblem } from '../../src/release/wsgi.js';
import { stackInProcess } from '../helpers/in-process.js';

function source(files: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-wsgi-'));
  for (const f of files) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    writeFileSync(path.join(dir, f), '');
  }
  return dir;
}

describe('the wsgi module', () => {
  it.each([
    ['blog.wsgi:application', ['blog/wsgi.py', 'blog/wsgi/__init__.py']],
    ['app:app', ['app.py', 'app/__init__.py']],
    ['a.b.c:make_app()', ['a/b/c.py', 'a/b/c/__init__.py']],
  ])('%s lives in %j', (wsgi, files) => {
    expect(wsgiModuleFiles(wsgi)).toEqual(files);
  });

  it('is found as a module file or as a package', () => {
    expect(wsgiProblem('blog.wsgi:application', source(['blog/__init__.py', 'blog/wsgi.py']))).toBeNull();
    expect(wsgiProblem('blog.wsgi:application', source(['blog/wsgi/__init__.py']))).toBeNull();
  });

  it('names what it looked for when the module is not there (a project one folder down)', () => {
    const dir = source(['mysite/mysite/wsgi.py', 'mysite/manage.py']);
    expect(wsgiProblem('mysite.wsgi:application', dir)).toBe(
      `mysite.wsgi is not in ${dir}: neither mysite/wsgi.py nor a package mysite/wsgi/ is there; give the module's path from app.source, in dots`,
    );
  });

  it('must be shipped when a deploy lists what ships', () => {
    const dir = source(['blog/wsgi.py']);
    expect(wsgiProblem('blog.wsgi:application', dir, ['blog/wsgi.py'])).toBeNull();
    expect(wsgiProblem('blog.wsgi:application', dir, ['other.py'])).toMatch(/^blog\/wsgi\.py exists but is not shipped/);
  });

  it('is not judged without a source folder (render works without one)', () => {
    expect(wsgiProblem('blog.wsgi:application', path.join(tmpdir(), 'no-such-source-folder'))).toBeNull();
  });

  it('stops `stack render` at the line of app.wsgi, where the environment sets it', async () => {
    const dir = source(['site/wsgi.py']);
    const file = path.join(dir, 'inventory.yml');
    const doc = {
      app: { name: 'site', source: '.', wsgi: 'site.wsgi:application' },
      environments: { prod: { domains: ['site.example.com'], hosts: [{ address: '192.0.2.1' }], app: { wsgi: 'repo.wsgi:application' } } },
    };
    writeFileSync(file, stringify(doc));
    const r = await stackInProcess(['render', 'prod', '-i', file]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`${file}:\\d+:\\d+: environments\\.prod\\.app\\.wsgi: repo\\.wsgi is not in ${dir}`));
    doc.environments.prod.app.wsgi = 'site.wsgi:application';
    writeFileSync(file, stringify(doc));
    expect((await stackInProcess(['render', 'prod', '-i', file])).code).toBe(0);
  });
});
