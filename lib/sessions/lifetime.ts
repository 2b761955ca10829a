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
