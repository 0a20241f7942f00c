import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds (or finds cached) the sandbox servers' root filesystem once, before any test.
    globalSetup: ['test/global-setup.ts'],
    // Tests run the built CLI (dist/) as a user would; `npm test` builds first.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
  },
});
