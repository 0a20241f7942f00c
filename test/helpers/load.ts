/**
 * A bounded load loop for zero-downtime checks: a few concurrent clients, each on fresh
 * connections, counting every response. Only for sandbox or loopback addresses; it stops by
 * itself after `maxRequests` or `maxMs`, whichever comes first.
 */
import http from 'node:http';

export interface LoadResult {
  total: number;
  ok: number;
  /** status code or error code -> count, for everything that was not a 200 */
  failures: Record<string, number>;
  ms: number;
}

export function startLoad(
  url: string,
  o: { concurrency?: number; maxRequests?: number; maxMs?: number } = {},
): { stop: () => Promise<LoadResult>; snapshot: () => LoadResult } {
  const host = new URL(url).hostname;
  if (!/^(127\.|169\.254\.)/.test(host)) throw new Error(`load only goes to loopback or sandbox addresses, not ${host}`);
  const maxRequests = o.maxRequests ?? 20_000;
  const deadline = Date.now() + (o.maxMs ?? 60_000);
  const started = Date.now();
  const result: LoadResult = { total: 0, ok: 0, failures: {}, ms: 0 };
  let stopping = false;
  const agent = new http.Agent({ keepAlive: false });
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get(url, { agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          result.total++;
          if (res.statusCode === 200) result.ok++;
          else result.failures[String(res.statusCode)] = (result.failures[String(res.statusCode)] ?? 0) + 1;
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (err: NodeJS.ErrnoException) => {
        result.total++;
        const key = err.code ?? err.message;
        result.failures[key] = (result.failures[key] ?? 0) + 1;
        resolve();
      });
    });
  const worker = async () => {
    while (!stopping && result.total < maxRequests && Date.now() < deadline) await one();
  };
  const workers = Array.from({ length: o.concurrency ?? 4 }, worker);
  return {
    snapshot: () => ({ ...result, failures: { ...result.failures }, ms: Date.now() - started }),
    stop: async () => {
      stopping = true;
      await Promise.all(workers);
      agent.destroy();
      result.ms = Date.now() - started;
      return result;
    },
  };
}
