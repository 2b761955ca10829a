import { ServiceUnavailableError } from '../errors.ts';

/**
 * Telling "the database is not there" apart from "the database said no". Only the first becomes a
 * 503 (a request may work a moment later); a constraint violation or a bad query keeps its own
 * error, so code that handles those (and the log) sees them as before.
 */
const UNREACHABLE_CODES = new Set([
  // The network or the server's socket.
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  // mysql2: the server went away mid-conversation, or a query outlived its timeout.
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  // The server is there but cannot take us now, or is going down under us.
  'ER_CON_COUNT_ERROR',
  'ER_SERVER_SHUTDOWN',
  'ER_CONNECTION_KILLED',
  'ER_QUERY_INTERRUPTED',
  // No pooled connection came free in time (bounded-pool.ts).
  'ATRIUM_POOL_TIMEOUT',
]);

export function isDatabaseUnreachable(err: unknown): boolean {
  if (err instanceof DatabaseUnavailableError) return true;
  const e = err as { code?: unknown; fatal?: unknown; message?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  if (typeof e.code === 'string') return UNREACHABLE_CODES.has(e.code);
  // mysql2's "Can't add new command when connection is in closed state" and the like: a connection
  // that died under us carries `fatal` and no code.
  return e.fatal === true || e.message === 'Pool is closed.';
}

/** The 503 a request gets while the database cannot be reached; the driver's error is its cause. */
export class DatabaseUnavailableError extends ServiceUnavailableError {
  constructor(cause: unknown) {
    super('The database is not answering right now. Try again in a moment.', { cause });
  }
}

/** The error a caller sees: unreachable ones become DatabaseUnavailableError, anything else is left alone. */
export function asDatabaseError(err: unknown): unknown {
  return isDatabaseUnreachable(err) && !(err instanceof DatabaseUnavailableError) ? new DatabaseUnavailableError(err) : err;
}
