import { defineConfig } from 'vitest/config';

/**
 * Test files whose figures depend on having the machine to themselves (requests through deploys
 * under load, SIGKILL campaigns, a conversion under load, a balancer losing an app host under
 * load): they run last, one at a time.
 */
const LOAD = ['test/e2e/faults.test.ts', 'test/e2e/zero-downtime.test.ts', 'test/e2e/privileges.test.ts', 'test/e2e/topology.test.ts'];

/**
 * The e2e files run on Debian 12 (bookworm) servers, or on STACK_TEST_RELEASE's; these run once
 * more on Debian 13 (trixie): a deploy of gunicorn, uWSGI with TLS, the database (PostgreSQL 17
 * there, 15 on Debian 12), and deploys under load.
 */
const ON_TRIXIE = [
  'test/e2e/deploy.test.ts',
  'test/e2e/deploy-uwsgi-ssl.test.ts',
  'test/e2e/database.test.ts',
  'test/e2e/processes.test.ts',
  'test/e2e/redis.test.ts',
];
const LOAD_ON_TRIXIE = ['test/e2e/zero-downtime.test.ts'];
const TRIXIE = { STACK_TEST_RELEASE: 'trixie' };

export default defineConfig({
  test: {
    // Tests run the built CLI (dist/) as a user would; `npm test` builds first.
    testTimeout: 60_000,
    hookTimeout: 180_000,
    pool: 'forks',
    projects: [
      // Pure code, local tools (nginx -t, systemd-analyze) and the CLI: no root, no servers.
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], sequence: { groupOrder: 0 } } },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          exclude: LOAD,
          // Each file boots its own servers (or its own app on the shared one), so two files at a
          // time only share the CPU: most of a file's time is spent waiting on its servers.
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
          // Builds (or finds cached) the sandbox servers' root filesystem once, before any test.
          globalSetup: ['test/global-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e-load',
          include: LOAD,
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
          globalSetup: ['test/global-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e-trixie',
          include: ON_TRIXIE,
          env: TRIXIE,
          maxWorkers: 2,
          sequence: { groupOrder: 3 },
          globalSetup: ['test/global-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e-load-trixie',
          include: LOAD_ON_TRIXIE,
          env: TRIXIE,
          maxWorkers: 1,
          sequence: { groupOrder: 4 },
          globalSetup: ['test/global-setup.ts'],
        },
      },
    ],
  },
});
