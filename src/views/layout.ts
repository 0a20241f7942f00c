/**
 * Where everything lives on the server. Views, roles (through their `{placeholders}`) and the
 * deploy steps all read paths from here, so a path is spelt in one place only.
 */
import type { App, Gateway } from '../inventory/schema.js';

export interface Layout {
  app: string;
  /**
   * Builds each release (virtualenv, pip, build hooks) before it is sealed. Not the app's user:
   * an attacker who has the app's identity must not be able to touch a release being built.
   */
  build_user: string;
  /** nginx's user on Debian and Ubuntu: reads static files and media, connects to the socket. */
  web_user: string;
  /** /srv/<app>: releases/, shared/, current -> releases/<id> */
  root: string;
  releases: string;
  /**
   * Virtualenvs, one per requirements and Python (venvs/KEY), sealed like releases; each
   * release's .venv links to its own. A new release with the same requirements reuses one.
   */
  venvs: string;
  shared: string;
  current: string;
  venv: string;
  config_dir: string;
  env_file: string;
  run_dir: string;
  socket: string;
  unit: string;
  acme_webroot: string;
  /** While `stack maintenance ENV on` holds, this page exists and nginx answers 503 with it. */
  maintenance_page: string;
  cert_dir: string;
  /** The media folder (absolute), or empty when the app has none. */
  media_dir: string;
  /** Database backups: root's only (0700), one dump and one .meta per backup. */
  backup_dir: string;
  /** The backup's units: NAME-db-backup.service run by NAME-db-backup.timer. */
  backup_unit: string;
  /** Runs when a backup fails (OnFailure=) and records why, for `status` and `db backups`. */
  backup_failed_unit: string;
  /** Groups every unit of the app (web, processes, jobs): `systemctl stop APP.target`. */
  target: string;
  /** The app's own Redis: an instance of Debian's redis-server@.service, on a unix socket only. */
  redis_unit: string;
  redis_conf: string;
  redis_socket: string;
  /** Its data (dump.rdb): a folder of its own in /var/lib/redis, redis's alone. */
  redis_data: string;
}

/**
 * A process's template unit (`blog.worker@.service`); instance N is `blog.worker@N.service`. A
 * dot, not a dash, after the app's name: app names have none, so `blog.*` never takes in the
 * units of an app called blog-api.
 */
export function processUnit(layout: Layout, name: string, instance?: number): string {
  return `${layout.app}.${name}@${instance ?? ''}.service`;
}

/** A scheduled job's service and timer, without the suffix: `blog.job.clearsessions`. */
export function jobUnit(layout: Layout, name: string): string {
  return `${layout.app}.job.${name}`;
}

/** The program the backup timer runs (db.sh with its entry point), shared by every app. */
export const BACKUP_PROGRAM = '/usr/local/lib/stack/db-backup';

export function layoutFor(app: App, gateway: Gateway): Layout {
  const root = `/srv/${app.name}`;
  const current = `${root}/current`;
  const runDir = `/run/${app.name}`;
  return {
    app: app.name,
    build_user: `${app.name}-build`,
    web_user: 'www-data',
    root,
    releases: `${root}/releases`,
    venvs: `${root}/venvs`,
    shared: `${root}/shared`,
    current,
    venv: `${current}/.venv`,
    config_dir: `/etc/${app.name}`,
    env_file: `/etc/${app.name}/env`,
    run_dir: runDir,
    socket: `${runDir}/${gateway.server}.sock`,
    unit: `${app.name}.service`,
    acme_webroot: '/var/www/_letsencrypt',
    maintenance_page: `/var/www/_maintenance/${app.name}.html`,
    cert_dir: `/etc/ssl/stack/${app.name}`,
    media_dir: app.media?.path ?? '',
    backup_dir: `/var/backups/stack/${app.name}`,
    backup_unit: `${app.name}-db-backup`,
    backup_failed_unit: `${app.name}-db-backup-failed.service`,
    target: `${app.name}.target`,
    redis_unit: `redis-server@${app.name}.service`,
    redis_conf: `/etc/redis/redis-${app.name}.conf`,
    redis_socket: `/run/redis-${app.name}/redis-server.sock`,
    redis_data: `/var/lib/redis/${app.name}`,
  };
}

/** Fills `{name}` placeholders (as used in roles/*.yml) from the layout. */
export function expandPlaceholders(template: string, layout: Layout): string {
  return template.replace(/\{([a-z_]+)\}/g, (whole, key: string) => {
    const value = (layout as unknown as Record<string, string>)[key];
    if (value === undefined) throw new Error(`unknown placeholder ${whole} in a role definition`);
    return value;
  });
}
