import type { DatabaseTarget } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { reasonOf } from './availability.ts';
import { openDatabase, type DatabaseOptions } from './database.ts';
import type { Database } from './schema.ts';
import { isDatabaseUnreachable } from './unreachable.ts';

/**
 * Opening the database at start-up, when it may not be up yet (a machine booting, a container
 * started before its database): each attempt that finds nobody there is reported in one line and
 * tried again after a growing pause, until `startTimeoutMs` has passed; then start-up stops with one
 * clear message. A database that answers and refuses (a wrong password, a missing grant) is not
 * waited on: that is configuration, and start-up stops at once.
 */
export interface StartAttempt {
  /** `host:port` of the server, never the credentials. */
  where: string;
  attempt: number;
  /** The driver's code: ECONNREFUSED, ETIMEDOUT, … */
  reason: string;
  retryInMs: number;
  /** The whole wait start-up allows, ms. */
  startTimeoutMs: number;
}

/** Start-up gave up on the database; main prints the message alone (it is a ConfigError). */
export class DatabaseStartError extends ConfigError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super([message]);
    this.name = 'DatabaseStartError';
    this.message = `Atrium cannot start: ${message}`;
    if (options.cause !== undefined) this.cause = options.cause;
  }
}

const FIRST_PAUSE_MS = 500;
const LONGEST_PAUSE_MS = 5_000;

export async function openDatabaseAtStart(
  target: DatabaseTarget,
  options: DatabaseOptions & { startTimeoutMs: number; onRetry: (attempt: StartAttempt) => void },
): Promise<Database> {
  if (target.kind === 'sqlite') return openDatabase(target, options);
  const where = serverOf(target.url);
  const started = Date.now();
  let pause = FIRST_PAUSE_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await openDatabase(target, options);
    } catch (err) {
      const reason = reasonOf(err);
      if (!isDatabaseUnreachable(err)) {
        const said = err instanceof Error ? err.message : String(err);
        throw new DatabaseStartError(`the database at ${where} refused the portal: ${said} (${reason}). Check DATABASE_URL (user, password, grants).`, { cause: err });
      }
      const waited = Date.now() - started;
      if (waited + pause > options.startTimeoutMs) {
        throw new DatabaseStartError(
          `no database answered at ${where} within ${Math.round(waited / 1000)} s (${attempt} attempt${attempt === 1 ? '' : 's'}, last: ${reason}). ` +
            'Start the database or correct DATABASE_URL; DATABASE_START_TIMEOUT sets how long start-up waits.',
          { cause: err },
        );
      }
      options.onRetry({ where, attempt, reason, retryInMs: pause, startTimeoutMs: options.startTimeoutMs });
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(LONGEST_PAUSE_MS, pause * 2);
    }
  }
}

/** `host:port` of a mysql:// URL (3306 when it names none): what log lines name, never the credentials. */
export function serverOf(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || '3306'}`;
}

