import { ServiceUnavailableError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from './store.ts';

/**
 * After a failure the store is not asked again for this long: a hung server would otherwise cost
 * every read its command timeout. Meanwhile reads are answered from the last good copies.
 */
const REST_AFTER_FAILURE_MS = 1_000;
const MAX_REMEMBERED = 50_000;
const MAX_PENDING = 10_000;

interface LastGood {
  session: StoredSession;
  /** When the store last confirmed this session (read or written): the grace counts from here. */
  vouchedAt: number;
}

/** A write the store could not take, replayed when it is back. */
type Pending = { kind: 'update'; data: SessionData; expiresAt: number; index: SessionIndex } | { kind: 'destroy' };

/**
 * Stale-if-error for a shared session store that can go away (Redis): while it does, signed-in
 * users keep working from the last copy this instance saw of their session, for at most `graceMs`
 * (SESSION_OUTAGE_GRACE) after the store last confirmed it. Their edits (the idle touch, refreshed
 * tokens) and sign-outs are kept here and replayed when the store is back. What truly needs the
 * store fails at once with a 503: a new session (sign-in), single-use records, and the look-ups by
 * user or provider session (revocation, back-channel logout).
 *
 * The price, bounded by the grace: another instance does not hear of a sign-out here until the
 * store is back, and a session unknown to this instance cannot be used at all meanwhile.
 */
export class OutageGraceStore implements SessionStore {
  private readonly lastGood = new Map<string, LastGood>();
  private readonly pending = new Map<string, Pending>();
  private failedAt: number | undefined;
  private flushing = false;

  constructor(
    private readonly inner: SessionStore,
    private readonly log: Logger,
    private readonly graceMs: number,
  ) {}

  async get(id: string): Promise<StoredSession | undefined> {
    if (this.pending.get(id)?.kind === 'destroy') return undefined;
    if (!this.resting()) {
      try {
        const session = await this.inner.get(id);
        this.succeeded();
        // An edit made here during the outage is newer than what the store holds until it is replayed.
        if (this.pending.has(id)) return this.lastGood.get(id)?.session ?? session;
        if (session) this.vouch(id, session);
        else this.lastGood.delete(id);
        return session;
      } catch (err) {
        this.failed(err);
      }
    }
    return this.graceCopy(id).session;
  }

  async set(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<void> {
    // A new session must be in the store, or no other instance could honour its cookie.
    await this.needsStore(() => this.inner.set(id, data, ttlMs, index));
    this.pending.delete(id);
    this.vouch(id, { data, expiresAt: Date.now() + ttlMs });
  }

  async update(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<boolean> {
    if (this.pending.get(id)?.kind === 'destroy') return false;
    if (!this.resting()) {
      try {
        const updated = await this.inner.update(id, data, ttlMs, index);
        this.succeeded();
        this.pending.delete(id);
        if (updated) this.vouch(id, { data, expiresAt: Date.now() + ttlMs });
        else this.lastGood.delete(id);
        return updated;
      } catch (err) {
        this.failed(err);
      }
    }
    const copy = this.graceCopy(id);
    this.keepPending(id, { kind: 'update', data, expiresAt: Date.now() + ttlMs, index });
    // The grace still counts from the store's last word, not from this edit.
    copy.session = { data, expiresAt: Date.now() + ttlMs };
    return true;
  }

  async destroy(id: string): Promise<void> {
    this.lastGood.delete(id);
    if (!this.resting()) {
      try {
        await this.inner.destroy(id);
        this.succeeded();
        this.pending.delete(id);
        return;
      } catch (err) {
        this.failed(err);
      }
    }
    // Ended here at once; in the store (for the other instances) when it is back.
    this.keepPending(id, { kind: 'destroy' });
  }

  async take(id: string): Promise<StoredSession | undefined> {
    this.lastGood.delete(id);
    return this.needsStore(() => this.inner.take(id));
  }

  destroyBySubject(subject: string): Promise<number> {
    return this.needsStore(() => this.inner.destroyBySubject(subject));
  }

  idsBySubject(subject: string): Promise<string[]> {
    return this.needsStore(() => this.inner.idsBySubject(subject));
  }

  idsByIdpSession(idpSid: string): Promise<string[]> {
    return this.needsStore(() => this.inner.idsByIdpSession(idpSid));
  }

  async sweep(now = Date.now()): Promise<number> {
    for (const [id, good] of this.lastGood) if (good.session.expiresAt <= now || now - good.vouchedAt > this.graceMs) this.lastGood.delete(id);
    return this.inner.sweep(now);
  }

  /**
   * Replays the writes kept during an outage (call it when the store is back; a success does it
   * too). An edit of a session that ended meanwhile stays undone, as update() promises.
   */
  async flushPending(): Promise<void> {
    if (this.flushing || this.pending.size === 0) return;
    this.flushing = true;
    let replayed = 0;
    try {
      for (const [id, write] of [...this.pending]) {
        if (write.kind === 'destroy') await this.inner.destroy(id);
        else if (write.expiresAt > Date.now()) {
          if (!(await this.inner.update(id, write.data, write.expiresAt - Date.now(), write.index))) this.lastGood.delete(id);
        }
        // A newer write may have gone straight through meanwhile: then it is not ours to drop.
        if (this.pending.get(id) === write) this.pending.delete(id);
        replayed += 1;
      }
      this.log.info({ replayed }, 'session store back: writes kept during the outage replayed');
    } catch (err) {
      this.failed(err);
    } finally {
      this.flushing = false;
    }
  }

  private async needsStore<T>(work: () => Promise<T>): Promise<T> {
    if (this.resting()) throw unavailable();
    try {
      const result = await work();
      this.succeeded();
      return result;
    } catch (err) {
      this.failed(err);
      throw unavailable(err);
    }
  }

  /** The copy a request may use while the store is away, or a 503 when there is none (or it is too old). */
  private graceCopy(id: string): LastGood {
    const good = this.lastGood.get(id);
    const now = Date.now();
    if (good && good.session.expiresAt > now && now - good.vouchedAt <= this.graceMs) return good;
    throw unavailable();
  }

  private vouch(id: string, session: StoredSession): void {
    // Re-inserted, so the Map's order is least recently vouched first (the first to go when full).
    this.lastGood.delete(id);
    if (this.lastGood.size >= MAX_REMEMBERED) {
      const oldest = this.lastGood.keys().next().value;
      if (oldest !== undefined) this.lastGood.delete(oldest);
    }
    this.lastGood.set(id, { session, vouchedAt: Date.now() });
  }

  private keepPending(id: string, write: Pending): void {
    if (!this.pending.has(id) && this.pending.size >= MAX_PENDING) throw unavailable();
    this.pending.set(id, write);
  }

  private resting(): boolean {
    return this.failedAt !== undefined && Date.now() - this.failedAt < REST_AFTER_FAILURE_MS;
  }

  private failed(err: unknown): void {
    if (this.failedAt === undefined) this.log.warn({ err }, 'session store unreachable: signed-in users carry on from their last good sessions');
    this.failedAt = Date.now();
  }

  private succeeded(): void {
    if (this.failedAt !== undefined) {
      this.failedAt = undefined;
      this.log.info('session store reachable again');
    }
    if (this.pending.size > 0) void this.flushPending();
  }
}

function unavailable(cause?: unknown): ServiceUnavailableError {
  return new ServiceUnavailableError('Sessions cannot be reached right now. Try again in a moment.', { cause, code: 'sessions_unavailable' });
}
