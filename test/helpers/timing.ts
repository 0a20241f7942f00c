/** The time each step of an e2e file took: printed as each ends, and as a table at the end (the figures for reports). */
export function stepTimer(tag: string) {
  const rows: [string, number][] = [];
  return {
    async timed<T>(label: string, step: () => T | Promise<T>): Promise<T> {
      const started = performance.now();
      try {
        return await step();
      } finally {
        const ms = performance.now() - started;
        rows.push([label, ms]);
        process.stderr.write(`[${tag}] ${label}: ${(ms / 1000).toFixed(1)}s\n`);
      }
    },
    report(): void {
      const lines = rows.map(([l, ms]) => `  ${l.padEnd(52)} ${(ms / 1000).toFixed(1).padStart(6)}s`);
      process.stderr.write(`[${tag}] timings:\n${lines.join('\n')}\n`);
    },
  };
}
