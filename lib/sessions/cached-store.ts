import { isDeepStrictEqual } from 'node:util';
import { LastGoodSessions } from './last-good.ts';
import type { ProviderSessions } from './provider-sessions.ts';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from './store.ts';

/** What one instance tells the others about sessions it changed (see portal/storage/cluster.ts). */
export interface SessionEvent {
  kind: 'changed' | 'ended';
  ids: string[];
}

/** How the cache behaves while its store cannot be reached (see the class comment). */
export interface OutageOptions {
  /** How long after the store last vouched for a session its copy is still served; 0: never. */
  graceMs?: number;
  /**
   * Keys of session data that are bookkeeping, e.g. the last-use time written back now and then: a
   * change to these alone is kept in memory while the store cannot take it, rather than failing a
   * request that the grace lets through.
   */
  bookkeeping?: readonly string[];
}

/** How stale a cached answer may be (another process's writes are seen after this). */
export const CACHE_TTL_MS = 5_000;
export const CACHE_MAX_ENTRIES = 50_000;

/** SESSION_OUTAGE_GRACE's default: long enough for a database restart or fail-over, short enough to bound staleness. */
export const DEFAULT_OUTAGE_GRACE_MS = 5 * 60_000;

interface Entry {
  session: StoredSession | undefined;
  /** When this entry must be read from the store again: the cache TTL, or the session's expiry. */
  until: number;
}

/**
 * A read-through cache in front of a store, so the request path normally costs a map lookup
 * instead of a database round trip. Writes go through to the store first and then replace the
 * entry, so this process always reads its own writes. Another process's writes (the admin CLI
 * ending a user's sessions) are seen once an entry ages out: `ttlMs` bounds that staleness.
 *
 * Stale-if-error: while the store cannot be read (the database is down or hung), a signed-in user
 * goes on from the last copy the store vouched for, for `graceMs` (5 minutes by default), never past
 * the session's own expiry and never after this process learnt it ended (logout, revocation, another
 * instance's word). Once a read has failed, such reads are answered from memory at once, and one
 * read at a time asks the store whether it is back. Whatever truly needs the store (signing in or
 * out, a change to a session) still fails, with the store's error (a 503 for the database).
 */
export class CachedSessionStore implements SessionStore {
  private readonly entries = new Map<string, Entry>();
  private readonly endedListeners: ((ids: string[]) => void)[] = [];
  private readonly changedListeners: ((ids: string[]) => void)[] = [];

  /** Set when several instances share the store: tells the others to drop their cached copies. */
  publish: ((event: SessionEvent) => void) | undefined;

  /**
   * Set when the portal runs its own identity provider: ending every session of a user (revocation,
   * a disabled account) ends the provider's sessions of that user too, and endProviderSession()
   * ends the one behind a single revoked session. Otherwise the provider's cookie would sign the
   * browser straight back in at the next /login.
   */
  providerSessions: ProviderSessions | undefined;

  private readonly lastGood: LastGoodSessions;
  private readonly bookkeeping: ReadonlySet<string>;
  /** The store's last answer was a failure: reads with a good copy are not made to wait for it. */
  private failing = false;
  /** The one read that finds out whether a failing store is back. */
  private revalidating: Promise<unknown> | undefined;

  constructor(
    private readonly inner: SessionStore,
    private readonly ttlMs = CACHE_TTL_MS,
    private readonly maxEntries = CACHE_MAX_ENTRIES,
    outage: OutageOptions = {},
  ) {
    this.lastGood = new LastGoodSessions(outage.graceMs ?? DEFAULT_OUTAGE_GRACE_MS, maxEntries);
    this.bookkeeping = new Set(outage.bookkeeping ?? []);
  }

  /** Another instance changed or ended these sessions. */
  receive(event: SessionEvent): void {
    // A changed session's copy goes too: it may be a single-use record another instance took.
    for (const id of event.ids) this.forget(id);
    const listeners = event.kind === 'ended' ? this.endedListeners : this.changedListeners;
    for (const listener of listeners) listener(event.ids);
  }

  /**
   * The cached answer for `id` when a fresh one is held, without a promise (the request path's fast
   * lane). Undefined: not cached, ask get(); `{ session: undefined }`: cached as "no such session".
   */
  peek(id: string): { readonly session: StoredSession | undefined } | undefined {
    const hit = this.entries.get(id);
    return hit && hit.until > Date.now() ? hit : undefined;
  }

  async get(id: string): Promise<StoredSession | undefined> {
    const now = Date.now();
    const hit = this.entries.get(id);
    if (hit && hit.until > now) return hit.session;
    const copy = this.failing ? this.lastGood.serve(id, now) : undefined;
    if (copy) {
      this.revalidate(id);
      return copy;
    }
    return this.read(id, now);
  }

  /**
   * The store's answer now, not the cached one (which is then replaced): for a change the cache
   * cannot have heard of, such as a revocation by the CLI. Falls back like get() when the store fails.
   */
  getFresh(id: string): Promise<StoredSession | undefined> {
    return this.read(id, Date.now());
  }

  /** A read from the store; when it fails, the last good copy if one is within bounds, else the store's error. */
  private async read(id: string, now: number): Promise<StoredSession | undefined> {
    let session: StoredSession | undefined;
    try {
      session = await this.attempt(() => this.inner.get(id));
    } catch (err) {
      const copy = this.lastGood.serve(id, Date.now());
      if (copy) return copy;
      throw err;
    }
    this.remember(id, session, now);
    return session;
  }

  /** Asks a failing store again in the background, one read at a time however many requests come. */
  private revalidate(id: string): void {
    this.revalidating ??= this.read(id, Date.now())
      .catch(() => undefined)
      .finally(() => {
        this.revalidating = undefined;
      });
  }

  /** Runs one call on the store, noting whether the store is failing. */
  private async attempt<T>(call: () => Promise<T>): Promise<T> {
    try {
      const result = await call();
      this.failing = false;
      return result;
    } catch (err) {
      this.failing = true;
      throw err;
    }
  }

  async set(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<void> {
    await this.attempt(() => this.inner.set(id, data, ttlMs, index));
    const now = Date.now();
    this.remember(id, { data, expiresAt: now + ttlMs }, now);
    this.publish?.({ kind: 'changed', ids: [id] });
  }

  async update(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<boolean> {
    // The store is known to be failing: a touch is not worth waiting on it for (a hung database
    // would cost the request its whole timeout); a read at a time finds out when it is back.
    if (this.failing && this.keepInMemory(id, data)) return true;
    let updated: boolean;
    try {
      updated = await this.attempt(() => this.inner.update(id, data, ttlMs, index));
    } catch (err) {
      if (this.keepInMemory(id, data)) return true;
      throw err;
    }
    const now = Date.now();
    if (updated) {
      this.remember(id, { data, expiresAt: now + ttlMs }, now);
      this.publish?.({ kind: 'changed', ids: [id] });
      for (const listener of this.changedListeners) listener([id]);
    } else {
      this.forget(id);
    }
    return updated;
  }

  /**
   * A change the store could not take, kept on the last good copy when it touches bookkeeping
   * alone (the last-use time): the copy served meanwhile carries it, and the store gets it with the
   * next write once it is back. Anything else (tokens, a sign-in) must reach the store or fail.
   */
  private keepInMemory(id: string, data: SessionData): boolean {
    const now = Date.now();
    const copy = this.lastGood.serve(id, now);
    if (!copy || this.bookkeeping.size === 0) return false;
    for (const key of new Set([...Object.keys(copy.data), ...Object.keys(data)])) {
      if (!this.bookkeeping.has(key) && !isDeepStrictEqual(copy.data[key], data[key])) return false;
    }
    // The fresh entry would still show the old bookkeeping; the amended copy is what is served now.
    this.entries.delete(id);
    return this.lastGood.amend(id, data, now);
  }

  /** Hears about every session this process ends (logout, revocation), e.g. to close its sockets. */
  onEnded(listener: (ids: string[]) => void): void {
    this.endedListeners.push(listener);
  }

  /**
   * Hears about every session that changed, here or (with session events shared) on another
   * instance: a token refresh, a touch. E.g. to re-check the sockets that session holds.
   */
  onChanged(listener: (ids: string[]) => void): void {
    this.changedListeners.push(listener);
  }

  async destroy(id: string): Promise<void> {
    // Forgotten before the store is asked: a logout that fails (store down) still serves no copy here.
    this.forget(id);
    await this.attempt(() => this.inner.destroy(id));
    this.forget(id);
    this.ended([id]);
  }

  /** Never served from the cache: single use is the store's to decide. */
  async take(id: string): Promise<StoredSession | undefined> {
    this.forget(id);
    const taken = await this.attempt(() => this.inner.take(id));
    this.forget(id);
    if (taken) this.publish?.({ kind: 'changed', ids: [id] });
    return taken;
  }

  async destroyBySubject(subject: string): Promise<number> {
    const ids = await this.inner.idsBySubject(subject);
    const count = await this.inner.destroyBySubject(subject);
    for (const id of ids) this.forget(id);
    this.ended(ids);
    await this.providerSessions?.endAccount(subject);
    return count;
  }

  /**
   * Ends the provider session one of ours began with (an administrator revoked that session, so
   * the browser must not be signed back in through the provider). Only that one: the user's other
   * browsers keep theirs. A no-op without a provider of our own.
   */
  /**
   * A session that recorded no provider session (made before that was noted) cannot name the one
   * behind it: then all of the account's go, or that browser would sign straight back in.
   * Returns whether more than the one went.
   */
  async endProviderSession(subject: string, idpSid: string | undefined): Promise<boolean> {
    if (!this.providerSessions) return false;
    if (idpSid !== undefined) {
      await this.providerSessions.endSession(subject, idpSid);
      return false;
    }
    await this.providerSessions.endAccount(subject);
    return true;
  }

  private ended(ids: string[]): void {
    if (ids.length === 0) return;
    for (const listener of this.endedListeners) listener(ids);
    this.publish?.({ kind: 'ended', ids });
  }

  idsBySubject(subject: string): Promise<string[]> {
    return this.inner.idsBySubject(subject);
  }

  idsByIdpSession(idpSid: string): Promise<string[]> {
    return this.inner.idsByIdpSession(idpSid);
  }

  /** Forgets one cached entry and its last good copy (another instance changed it, or it ended). */
  forget(id: string): void {
    this.entries.delete(id);
    this.lastGood.forget(id);
  }

  async sweep(now = Date.now()): Promise<number> {
    for (const [id, entry] of this.entries) if (entry.until <= now) this.entries.delete(id);
    this.lastGood.sweep(now);
    return this.inner.sweep(now);
  }

  private remember(id: string, session: StoredSession | undefined, now: number): void {
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: dropping the first key evicts the oldest entry.
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.delete(id);
    const until = Math.min(now + this.ttlMs, session?.expiresAt ?? Infinity);
    this.entries.set(id, { session, until });
    if (session) this.lastGood.vouch(id, session, now);
    else this.lastGood.forget(id);
  }
}
