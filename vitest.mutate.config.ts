import { defineConfig } from 'vitest/config';

/**
 * The test set for mutation runs (`npm run mutate`, see docs/mutation-testing.md): the fast unit
 * tests, plus the session-store contract against the real MariaDB and Redis, since the SQL and
 * Redis stores can only be exercised through those services. Stryker's vitest runner sets the
 * pool and worker count itself (one thread per Stryker worker).
 */
export default defineConfig({
  test: {
    include: ['tests/unit/**/*.test.ts', 'tests/session-stores.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
