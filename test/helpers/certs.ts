/**
 * Throwaway certificate authorities and certificates, made with the real openssl, for tests of
 * custom certificates (and the CA a local ACME server uses). Dates can be set, so expired and
 * not-yet-valid certificates are real ones too.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
}

export interface Ca {
  dir: string;
  cert: string;
  key: string;
  name: string;
}

/** A CA; with `parent`, an intermediate signed by it. */
export function makeCa(name: string, parent?: Ca): Ca {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-ca-'));
  const cert = path.join(dir, 'ca.pem');
  const key = path.join(dir, 'ca.key');
  const ext = ['-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'];
  if (!parent) {
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '3650',
        '-subj',
        `/CN=${name}`,
        '-keyout',
        key,
        '-out',
        cert,
        ...ext,
      ],
      dir,
    );
  } else {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', key, '-out', 'ca.csr'], dir);
    writeFileSync(path.join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
    openssl(
      ['x509', '-req', '-in', 'ca.csr', '-CA', parent.cert, '-CAkey', parent.key, '-CAcreateserial', '-days', '3650', '-extfile', 'ca.ext', '-out', cert],
      dir,
    );
  }
  mkdirSync(path.join(dir, 'db'));
  writeFileSync(path.join(dir, 'db/index'), '');
  return { dir, cert, key, name };
}

export interface IssueOptions {
  /** DNS names or IPv4 addresses, in the subjectAltName. */
  names: string[];
  /** openssl ca dates, YYYYMMDDHHMMSSZ; default: valid from yesterday for 90 days. */
  start?: string;
  end?: string;
}

/** A server certificate and its key, issued by `ca`; returns the file paths. */
export function issue(ca: Ca, o: IssueOptions): { cert: string; key: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'stack-cert-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      `/CN=${o.names[0]}`,
      '-keyout',
      key,
      '-out',
      path.join(dir, 'req.csr'),
    ],
    dir,
  );
  const san = o.names.map((n) => (/^\d+\.\d+\.\d+\.\d+$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
  writeFileSync(
    path.join(dir, 'ca.cnf'),
    [
      '[ca]',
      'default_ca = c',
      '[c]',
      `database = ${ca.dir}/db/index`,
      `new_certs_dir = ${ca.dir}/db`,
      `serial = ${dir}/serial`,
      'default_md = sha256',
      'policy = p',
      'unique_subject = no',
      '[p]',
      'commonName = supplied',
      '[ext]',
      `subjectAltName = ${san}`,
      'basicConstraints = CA:FALSE',
      'extendedKeyUsage = serverAuth',
      '',
    ].join('\n'),
  );
  writeFileSync(path.join(dir, 'serial'), `${Date.now().toString(16).padStart(16, '0')}\n`);
  const day = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
  const start = o.start ?? day(new Date(Date.now() - 86_400_000));
  const end = o.end ?? day(new Date(Date.now() + 90 * 86_400_000));
  openssl(
    [
      'ca',
      '-batch',
      '-config',
      'ca.cnf',
      '-cert',
      ca.cert,
      '-keyfile',
      ca.key,
      '-in',
      'req.csr',
      '-out',
      cert,
      '-startdate',
      start,
      '-enddate',
      end,
      '-extensions',
      'ext',
      '-notext',
    ],
    dir,
  );
  return { cert, key };
}

export const read = (file: string) => readFileSync(file, 'utf8');
