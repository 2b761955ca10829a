/**
 * The contract every session backend keeps (SQL now, Redis when REDIS_URL is set). One shared test
 * suite (tests/session-store.suite.ts) runs against each backend.
 */
export type SessionData = Record<string, unknown>;

export interface SessionIndex {
  subject: string | null;
  idpSid?: string | null;
}

export interface StoredSession {
  data: SessionData;
  /** Epoch ms after which the session no longer exists. */
  expiresAt: number;
}

export interface SessionStore {
  /** The session, or undefined when it does not exist or has expired. */
  get(id: string): Promise<StoredSession | undefined>;
  /**
   * Creates or replaces a session that expires `ttlMs` from now, indexed by user (`subject`) and by
   * the provider's session id (`idpSid`, for back-channel logout).
   */
  set(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<void>;
  /**
   * Replaces a session only while it still exists (and has not expired); false when it is gone.
   * Edits use this, so a request that was in flight when a session ended cannot bring it back.
   */
  update(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<boolean>;
  destroy(id: string): Promise<void>;
  /**
   * Reads and removes a record in one step: of any number of concurrent callers, exactly one gets
   * it (single-use records such as sign-in hand-off codes). Undefined when it is gone or expired.
   */
  take(id: string): Promise<StoredSession | undefined>;
  /** Ends every session of one user (logout everywhere, a disabled account); returns how many. */
  destroyBySubject(subject: string): Promise<number>;
  /** Ids of one user's live sessions. */
  idsBySubject(subject: string): Promise<string[]>;
  /** Ids of the live sessions that began with one provider session. */
  idsByIdpSession(idpSid: string): Promise<string[]>;
  /** Removes expired sessions; returns how many. Backends that expire by themselves return 0. */
  sweep(now?: number): Promise<number>;
}
