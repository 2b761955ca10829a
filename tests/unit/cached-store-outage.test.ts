import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ServiceUnavailableError } from '../../lib/errors.ts';
import { CachedSessionStore } from '../../lib/sessions/cached-store.ts';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from '../../lib/sessions/store.ts';

/**
 * The session cache's stale-if-error (issue 11): while its store cannot be read, a session is
 * served from the last copy the store vouched for — within the grace, never past the session's own
 * expiry, never after this process learnt it ended — and what truly needs the store still fails.
 * The clock is faked (Date only), so the bounds are checked exactly rather than waited for.
 */
const T = 1_750_000_000_000;
const GRACE = 60_000;

/** A store in a Map that can be taken down (every call then fails as the database would) or held. */
class FlakyStore implements SessionStore {
  readonly sessions = new Map<string, StoredSession>();
  readonly calls: string[] = [];
  down = false;
  private held: Promise<void> | undefined;

  hold(): () => void {
    let release!: () => void;
    this.held = new Promise((resolve) => (release = resolve));
    return () => {
      this.held = undefined;
      release();
    };
  }

  private async call(name: string): Promise<void> {
    this.calls.push(name);
    if (this.held) await this.held;
    if (this.down) throw new ServiceUnavailableError('The database is not answering right now.');
  }

  async get(id: string) {
    await this.call(`get ${id}`);
    const found = this.sessions.get(id);
    return found && found.expiresAt > Date.now() ? found : undefined;
  }
  async set(id: string, data: SessionData, ttlMs: number) {
    await this.call(`set ${id}`);
    this.sessions.set(id, { data, expiresAt: Date.now() + ttlMs });
  }
  async update(id: string, data: SessionData, ttlMs: number, _index: SessionIndex) {
    await this.call(`update ${id}`);
    if (!this.sessions.has(id)) return false;
    this.sessions.set(id, { data, expiresAt: Date.now() + ttlMs });
    return true;
  }
  async destroy(id: string) {
    await this.call(`destroy ${id}`);
    this.sessions.delete(id);
  }
  async take(id: string) {
    await this.call(`take ${id}`);
    const found = this.sessions.get(id);
    this.sessions.delete(id);
    return found;
  }
  async destroyBySubject() {
    await this.call('destroyBySubject');
    return 0;
  }
  async idsBySubject() {
    await this.call('idsBySubject');
    return [];
  }
  async idsByIdpSession() {
    await this.call('idsByIdpSession');
    return [];
  }
  async sweep() {
    await this.call('sweep');
    return 0;
  }
}

function setup(options: { graceMs?: number; bookkeeping?: string[] } = {}) {
  const inner = new FlakyStore();
  const cached = new CachedSessionStore(inner, 5_000, 1_000, { graceMs: options.graceMs ?? GRACE, bookkeeping: options.bookkeeping ?? ['seenAt'] });
  const reads = () => inner.calls.filter((c) => c.startsWith('get ')).length;
  return { inner, cached, reads };
}

const index = { subject: 's' };

beforeAll(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
});
afterEach(() => {
  vi.setSystemTime(T);
});
afterAll(() => {
  vi.useRealTimers();
});

describe('CachedSessionStore while its store cannot be read', () => {
  it('serves the last good copy for the grace after the store last vouched for it, and not a moment longer', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    await cached.set('a', { v: 1 }, 600_000, index);
    inner.down = true;
    vi.setSystemTime(T + 10_000); // the fresh entry has aged out
    expect((await cached.get('a'))?.data).toEqual({ v: 1 });
    vi.setSystemTime(T + GRACE);
    expect((await cached.get('a'))?.data).toEqual({ v: 1 });
    vi.setSystemTime(T + GRACE + 1);
    await expect(cached.get('a')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('counts the grace from the last time the store vouched, a read as much as a write', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    await inner.set('a', { v: 1 }, 600_000);
    vi.setSystemTime(T + 30_000);
    await cached.get('a');
    inner.down = true;
    vi.setSystemTime(T + 30_000 + GRACE);
    expect((await cached.get('a'))?.data).toEqual({ v: 1 });
    vi.setSystemTime(T + 30_000 + GRACE + 1);
    await expect(cached.get('a')).rejects.toThrow();
  });

  it('never serves a session past its own expiry, whatever the grace', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    await cached.set('short', { v: 1 }, 20_000, index);
    inner.down = true;
    vi.setSystemTime(T + 19_999);
    expect((await cached.get('short'))?.data).toEqual({ v: 1 });
    vi.setSystemTime(T + 20_000);
    await expect(cached.get('short')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('serves nothing for a session it has no copy of: the store’s 503 goes to the caller', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    inner.down = true;
    await expect(cached.get('unknown')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('never after a logout here, even one the store could not take', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    await cached.set('a', { v: 1 }, 600_000, index);
    inner.down = true;
    await expect(cached.destroy('a')).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(cached.peek('a')).toBeUndefined();
    await expect(cached.get('a')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('never after another instance said it ended or changed, nor once the store said it is gone', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    for (const id of ['ended', 'changed', 'gone']) await cached.set(id, { id }, 600_000, index);
    cached.receive({ kind: 'ended', ids: ['ended'] });
    cached.receive({ kind: 'changed', ids: ['changed'] });
    inner.sessions.delete('gone');
    vi.setSystemTime(T + 10_000);
    expect(await cached.get('gone')).toBeUndefined();
    inner.down = true;
    for (const id of ['ended', 'changed']) await expect(cached.get(id)).rejects.toBeInstanceOf(ServiceUnavailableError);
    // "No such session" is itself cached for a while; after that there is no copy to fall back on.
    expect(await cached.get('gone')).toBeUndefined();
    vi.setSystemTime(T + 20_000);
    await expect(cached.get('gone')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('once the store has failed, answers from memory at once, with one read at a time asking whether it is back', async () => {
    vi.setSystemTime(T);
    const { inner, cached, reads } = setup();
    for (const id of ['a', 'b']) await cached.set(id, { id }, 600_000, index);
    inner.down = true;
    vi.setSystemTime(T + 10_000);
    await cached.get('a'); // the read that finds the store failing
    const release = inner.hold();
    const before = reads();
    // A hung store: these are answered while the one revalidating read waits.
    expect((await cached.get('a'))?.data).toEqual({ id: 'a' });
    expect((await cached.get('b'))?.data).toEqual({ id: 'b' });
    expect((await cached.get('a'))?.data).toEqual({ id: 'a' });
    expect(reads() - before).toBe(1);
    // The store comes back with a newer copy: the next reads get it.
    inner.down = false;
    inner.sessions.set('b', { data: { id: 'b2' }, expiresAt: T + 600_000 });
    release();
    await vi.waitFor(async () => expect((await cached.get('b'))?.data).toEqual({ id: 'b2' }));
  });

  it('keeps a change of bookkeeping alone in memory, without waiting on a failing store; any other change fails', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup({ bookkeeping: ['seenAt'] });
    await cached.set('a', { v: 1, seenAt: T }, 600_000, index);
    inner.down = true;
    vi.setSystemTime(T + 10_000);
    await cached.get('a');
    const updates = () => inner.calls.filter((c) => c.startsWith('update ')).length;
    expect(await cached.update('a', { v: 1, seenAt: T + 10_000 }, 600_000, index)).toBe(true);
    expect(updates()).toBe(0);
    expect((await cached.get('a'))?.data).toEqual({ v: 1, seenAt: T + 10_000 });
    await expect(cached.update('a', { v: 2, seenAt: T + 10_000 }, 600_000, index)).rejects.toBeInstanceOf(ServiceUnavailableError);
    // The touch did not stretch the grace: it still counts from the store's last word.
    vi.setSystemTime(T + GRACE + 1);
    await expect(cached.get('a')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('a sign-in (a new session) needs the store: it fails, and nothing is cached', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    inner.down = true;
    await expect(cached.set('new', { v: 1 }, 600_000, index)).rejects.toBeInstanceOf(ServiceUnavailableError);
    expect(cached.peek('new')).toBeUndefined();
    await expect(cached.get('new')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('with a grace of 0, serves no stale copy at all', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup({ graceMs: 0 });
    await cached.set('a', { v: 1 }, 600_000, index);
    inner.down = true;
    vi.setSystemTime(T + 10_000);
    await expect(cached.get('a')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });
});
