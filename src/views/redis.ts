/**
 * The app's Redis instance (roles/redis.yml): the view model of its configuration file and of the
 * drop-in that gives the instance the app's group. Pure.
 *
 * The instance is Debian's `redis-server@APP.service` (the redis-server package's template unit,
 * which reads /etc/redis/redis-APP.conf). It listens on a unix socket only, mode 770; the drop-in
 * runs it as redis with the app's group, so the app's user (whose own group that is) may use the
 * socket and nobody else may: no other app, not the build user, and nobody is added to group redis.
 */
import type { Environment } from '../inventory/resolve.js';
import type { Layout } from './layout.js';

export interface RedisView {
  app: string;
  /** `redis-server@APP.service` */
  unit: string;
  /** `/etc/redis/redis-APP.conf`: the file Debian's template unit reads. */
  conf: string;
  /** The group the instance runs with, and the socket's: the app's own. */
  group: string;
  /** The runtime folder systemd makes for the instance (RuntimeDirectory=redis-APP). */
  runDir: string;
  socket: string;
  /** Socket mode: the owner (redis) and the group (the app); nobody else. */
  socketMode: string;
  pidfile: string;
  /** Where the instance keeps its data (dump.rdb): its own folder in /var/lib/redis, redis's alone. */
  dir: string;
  maxmemory: string;
  policy: string;
}

export function redisView(env: Environment, layout: Layout): RedisView {
  if (!env.redis) throw new Error('the redis role rendered for an environment without redis:');
  const runDir = layout.redis_socket.slice(0, layout.redis_socket.lastIndexOf('/'));
  return {
    app: env.app.name,
    unit: layout.redis_unit,
    conf: layout.redis_conf,
    group: layout.app,
    runDir,
    socket: layout.redis_socket,
    socketMode: '770',
    pidfile: `${runDir}/redis-server.pid`,
    dir: layout.redis_data,
    maxmemory: env.redis.maxmemory,
    policy: env.redis.policy,
  };
}
