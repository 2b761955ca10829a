import type { SessionData, StoredSession } from './store.ts';

interface Copy {
  session: StoredSession;
  /** When the store last vouched for it (a read or a write that succeeded). */
  goodAt: number;
}

/**
 * The last copy of each live session the store vouched for, kept for stale-if-error: while the
 * store cannot be read, a signed-in user goes on working from it for `graceMs` after the store last
 * vouched for it, never past the session's own expiry. A session known to have ended (logout,
 * revocation, the store saying it is gone) has no copy here: forget() is called for each.
 */
export class LastGoodSessions {
  private readonly copies = new Map<string, Copy>();

  constructor(
    readonly graceMs: number,
    private readonly maxEntries: number,
  ) {}

  /** The store vouched for this session just now. */
  vouch(id: string, session: StoredSession, now: number): void {
    if (this.graceMs <= 0) return;
    this.copies.delete(id);
    if (this.copies.size >= this.maxEntries) {
      // Maps iterate in insertion order: the first key is the copy vouched for longest ago.
      const oldest = this.copies.keys().next().value;
      if (oldest !== undefined) this.copies.delete(oldest);
    }
    this.copies.set(id, { session, goodAt: now });
  }

  /** The copy to serve while the store cannot be read, if there is one still within bounds. */
  serve(id: string, now: number): StoredSession | undefined {
    const copy = this.copies.get(id);
    if (!copy) return undefined;
    if (now - copy.goodAt > this.graceMs || copy.session.expiresAt <= now) {
      this.copies.delete(id);
      return undefined;
    }
    return copy.session;
  }

  /**
   * Replaces the data of a copy in memory only (a change the store could not take, see
   * CachedSessionStore.update), keeping when it was vouched for and when it expires: an outage
   * never stretches a session.
   */
  amend(id: string, data: SessionData, now: number): boolean {
    const current = this.serve(id, now);
    if (!current) return false;
    this.copies.set(id, { session: { data, expiresAt: current.expiresAt }, goodAt: this.copies.get(id)!.goodAt });
    return true;
  }

  forget(id: string): void {
    this.copies.delete(id);
  }

  /** Drops the copies no outage could serve any more. */
  sweep(now: number): void {
    for (const [id, copy] of this.copies) if (now - copy.goodAt > this.graceMs || copy.session.expiresAt <= now) this.copies.delete(id);
  }
}
