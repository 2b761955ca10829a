import { loadConfig } from '../../lib/config.ts';
import { ConfigError } from '../../lib/errors.ts';

/** Every problem loadConfig reports for `env` (none: it loads); any other error is rethrown. */
export function configProblems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}
