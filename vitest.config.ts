import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Tests run the built CLI (dist/) as a user would; `npm test` builds first.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    projects: [
      // Pure code, local tools (nginx -t, systemd-analyze) and the CLI: no root, no servers.
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          // Builds (or finds cached) the sandbox servers' root filesystem once, before any test.
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
});
