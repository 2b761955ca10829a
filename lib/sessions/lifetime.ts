/** The server-side limits on a session, whatever its cookie says. */
export interface SessionLimits {
  /** Ends a session unused for this long (rolling). */
  idleMs: number;
  /** Ends a session this long after sign-in. */
  lifetimeMs: number;
}

export interface SessionTimes {
  authAt: number;
  seenAt?: number;
}

/** Why a session is over, or undefined while it is alive. */
export function sessionEnded(session: SessionTimes, limits: SessionLimits, now = Date.now()): 'lifetime' | 'idle' | undefined {
  if (now - session.authAt > limits.lifetimeMs) return 'lifetime';
  if (now - (session.seenAt ?? session.authAt) > limits.idleMs) return 'idle';
  return undefined;
}

/**
 * How often `seenAt` is written back: a tenth of the idle timeout, at most once a minute. The idle
 * timeout is then enforced to within that margin, and a busy user costs a session write a minute
 * rather than one per request.
 */
export function touchIntervalMs(limits: SessionLimits): number {
  return Math.min(60_000, Math.max(1_000, Math.floor(limits.idleMs / 10)));
}

export interface TokenTimes {
  refresh?: string | undefined;
  expiresAt?: number | undefined;
  issuedAt?: number | undefined;
}

/**
 * When the access token should be refreshed: once within a quarter of its life of expiring (at
 * most a minute); undefined when there is no refresh token to do it with (or no expiry known).
 */
export function tokenRefreshAt(tokens: TokenTimes): number | undefined {
  if (!tokens.refresh || tokens.expiresAt === undefined) return undefined;
  const life = tokens.issuedAt !== undefined ? tokens.expiresAt - tokens.issuedAt : 240_000;
  return tokens.expiresAt - Math.min(60_000, Math.max(0, life / 4));
}

/** Whether the access token should be refreshed now (tokenRefreshAt has passed). */
export function tokenRefreshDue(tokens: TokenTimes, now = Date.now()): boolean {
  const at = tokenRefreshAt(tokens);
  return at !== undefined && at <= now;
}
