import type { ProviderSessions } from './provider-sessions.ts';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from './store.ts';

/** What one instance tells the others about sessions it changed (see portal/storage/cluster.ts). */
export interface SessionEvent {
  kind: 'changed' | 'ended';
  ids: string[];
}

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
 */
export class CachedSessionStore implements SessionStore {
  private readonly entries = new Map<string, Entry>();
  private readonly endedListeners: ((ids: string[]) => void)[] = [];

  /** Set when several instances share the store: tells the others to drop their cached copies. */
  publish: ((event: SessionEvent) => void) | undefined;

  /**
   * Set when the portal runs its own identity provider: ending every session of a user (revocation,
   * a disabled account) ends the provider's sessions of that user too, and endProviderSession()
   * ends the one behind a single revoked session. Otherwise the provider's cookie would sign the
   * browser straight back in at the next /login.
   */
  providerSessions: ProviderSessions | undefined;

  constructor(
    private readonly inner: SessionStore,
    private readonly ttlMs = 5_000,
    private readonly maxEntries = 50_000,
  ) {}

  /** Another instance changed or ended these sessions. */
  receive(event: SessionEvent): void {
    for (const id of event.ids) this.entries.delete(id);
    if (event.kind === 'ended') for (const listener of this.endedListeners) listener(event.ids);
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
    const session = await this.inner.get(id);
    this.remember(id, session, now);
    return session;
  }

  async set(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<void> {
    await this.inner.set(id, data, ttlMs, index);
    const now = Date.now();
    this.remember(id, { data, expiresAt: now + ttlMs }, now);
    this.publish?.({ kind: 'changed', ids: [id] });
  }

  async update(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<boolean> {
    const updated = await this.inner.update(id, data, ttlMs, index);
    const now = Date.now();
    if (updated) {
      this.remember(id, { data, expiresAt: now + ttlMs }, now);
      this.publish?.({ kind: 'changed', ids: [id] });
    } else {
      this.entries.delete(id);
    }
    return updated;
  }

  /** Hears about every session this process ends (logout, revocation), e.g. to close its sockets. */
  onEnded(listener: (ids: string[]) => void): void {
    this.endedListeners.push(listener);
  }

  async destroy(id: string): Promise<void> {
    this.entries.delete(id);
    await this.inner.destroy(id);
    this.entries.delete(id);
    this.ended([id]);
  }

  /** Never served from the cache: single use is the store's to decide. */
  async take(id: string): Promise<StoredSession | undefined> {
    this.entries.delete(id);
    const taken = await this.inner.take(id);
    this.entries.delete(id);
    if (taken) this.publish?.({ kind: 'changed', ids: [id] });
    return taken;
  }

  async destroyBySubject(subject: string): Promise<number> {
    const ids = await this.inner.idsBySubject(subject);
    const count = await this.inner.destroyBySubject(subject);
    for (const id of ids) this.entries.delete(id);
    this.ended(ids);
    await this.providerSessions?.endAccount(subject);
    return count;
  }

  /**
   * Ends the provider session one of ours began with (an administrator revoked that session, so
   * the browser must not be signed back in through the provider). Only that one: the user's other
   * browsers keep theirs. A no-op without a provider of our own.
   */
  async endProviderSession(subject: string, idpSid: string | undefined): Promise<void> {
    if (idpSid !== undefined) await this.providerSessions?.endSession(subject, idpSid);
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

  /** Forgets one cached entry (another instance changed it). */
  forget(id: string): void {
    this.entries.delete(id);
  }

  async sweep(now = Date.now()): Promise<number> {
    for (const [id, entry] of this.entries) if (entry.until <= now) this.entries.delete(id);
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
  }
}
