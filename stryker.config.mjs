// @ts-check
/**
 * Mutation testing of the security modules: `npm run mutate` (slow; not part of `npm test` or CI).
 * What is mutated, how to read the results and the last run's figures: docs/mutation-testing.md.
 */
import { readFileSync } from 'node:fs';

/**
 * The lines of `file` from the line that starts with `first` to the closing brace of the function
 * that starts with `last`, as a Stryker mutate range ("file:start-end"). Found afresh at every run,
 * so edits elsewhere in the file do not shift what is mutated.
 */
function functionLines(file, first, last) {
  const lines = readFileSync(new URL(file, import.meta.url), 'utf8').split('\n');
  const start = lines.findIndex((line) => line.startsWith(first));
  const lastStart = lines.findIndex((line) => line.startsWith(last));
  const end = lastStart < 0 ? -1 : lines.findIndex((line, i) => i > lastStart && line === '}');
  if (start < 0 || end < 0) throw new Error(`stryker.config.mjs: ${first} … ${last} not found in ${file}; update the mutate list`);
  return `${file}:${start + 1}-${end + 1}`;
}

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  packageManager: 'npm',
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutate.config.ts', related: false },
  coverageAnalysis: 'perTest',
  mutate: [
    'lib/paths.ts',
    'lib/return-to.ts',
    'portal/http/csrf.ts',
    'lib/gate.ts',
    'lib/levels.ts',
    'lib/oidc/token-verifier.ts',
    'lib/hooks/idp-webhook.ts',
    'portal/directory/provider-webhook.ts',
    'lib/sessions/lifetime.ts',
    'lib/sessions/sql-store.ts',
    'lib/sessions/redis-store.ts',
    'lib/sessions/cached-store.ts',
    'portal/apps/response-rules.ts',
    // The proxy's header rules: which request headers a client may not send (their own module now)
    // and the portal-cookie rules still in proxy.ts.
    'portal/apps/client-headers.ts',
    functionLines('portal/apps/proxy.ts', 'function stripPortalCookies', 'function keepPortalSetCookie'),
  ],
  ignorePatterns: ['dist', 'data', 'coverage', 'bench/results', 'tests/screenshots', 'reports', '.ci/results.json'],
  // Two cores, shared: never more than two test runners.
  concurrency: 2,
  // A generous allowance: the machine is shared and the store tests talk to MariaDB and Redis.
  timeoutFactor: 4,
  timeoutMS: 20_000,
  dryRunTimeoutMinutes: 15,
  reporters: ['clear-text', 'progress-append-only', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
