import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores here: two files at a time keeps the real services (MariaDB, Chromium) responsive.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
