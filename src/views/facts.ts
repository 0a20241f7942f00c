/**
 * What the views need to know about a server. `stack deploy` reads these from the host itself;
 * `stack render` has no server, so it takes them from the inventory or assumes Debian 12.
 */
import type { Environment } from '../inventory/resolve.js';
import type { Host } from '../inventory/schema.js';

export interface HostFacts {
  /** nginx version as [major, minor, patch]; decides e.g. `listen ... http2` vs `http2 on`. */
  nginxVersion: [number, number, number];
  /** CPU count when known; with workers: auto the gateway computes it on the server otherwise. */
  cpus?: number;
}

/** Debian 12 (bookworm) ships nginx 1.22.1. */
export const DEFAULT_NGINX_VERSION = '1.22.1';

export function parseNginxVersion(text: string): [number, number, number] {
  const [major = 0, minor = 0, patch = 0] = text.split('.').map((n) => Number.parseInt(n, 10));
  return [major, minor, patch];
}

export function assumedFacts(env: Environment, host: Host): HostFacts {
  return {
    nginxVersion: parseNginxVersion(env.nginx.version ?? DEFAULT_NGINX_VERSION),
    cpus: host.cpus,
  };
}

export function versionAtLeast(v: [number, number, number], min: [number, number, number]): boolean {
  for (let i = 0; i < 3; i++) {
    if (v[i]! !== min[i]!) return v[i]! > min[i]!;
  }
  return true;
}
