import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CachedSessionStore, type SessionEvent } from '../../lib/sessions/cached-store.ts';
import type { ProviderSessions } from '../../lib/sessions/provider-sessions.ts';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from '../../lib/sessions/store.ts';

const T = 1_750_000_000_000;

/** A store in a Map that counts what it is asked, and can hold a call open (`hold`) to look at the cache meanwhile. */
class MemoryStore implements SessionStore {
  readonly sessions = new Map<string, { session: StoredSession; index: SessionIndex }>();
  readonly calls: string[] = [];
  updateResult: boolean | undefined;
  private held: Promise<void> | undefined;

  hold(): () => void {
    let release!: () => void;
    this.held = new Promise((resolve) => (release = resolve));
    return () => {
      this.held = undefined;
      release();
    };
  }

  private async wait(): Promise<void> {
    if (this.held) await this.held;
  }

  async get(id: string) {
    this.calls.push(`get ${id}`);
    const found = this.sessions.get(id)?.session;
    return found && found.expiresAt > Date.now() ? found : undefined;
  }
  async set(id: string, data: SessionData, ttlMs: number, index: SessionIndex) {
    this.calls.push(`set ${id}`);
    this.sessions.set(id, { session: { data, expiresAt: Date.now() + ttlMs }, index });
  }
  async update(id: string, data: SessionData, ttlMs: number, index: SessionIndex) {
    this.calls.push(`update ${id}`);
    const ok = this.updateResult ?? this.sessions.has(id);
    if (ok) this.sessions.set(id, { session: { data, expiresAt: Date.now() + ttlMs }, index });
    return ok;
  }
  async destroy(id: string) {
    this.calls.push(`destroy ${id}`);
    await this.wait();
    this.sessions.delete(id);
  }
  async take(id: string) {
    this.calls.push(`take ${id}`);
    await this.wait();
    const found = this.sessions.get(id)?.session;
    this.sessions.delete(id);
    return found;
  }
  async destroyBySubject(subject: string) {
    this.calls.push(`destroyBySubject ${subject}`);
    let n = 0;
    for (const [id, entry] of this.sessions) if (entry.index.subject === subject && this.sessions.delete(id)) n++;
    return n;
  }
  async idsBySubject(subject: string) {
    this.calls.push(`idsBySubject ${subject}`);
    return [...this.sessions].filter(([, e]) => e.index.subject === subject).map(([id]) => id);
  }
  async idsByIdpSession(sid: string) {
    this.calls.push(`idsByIdpSession ${sid}`);
    return [...this.sessions].filter(([, e]) => e.index.idpSid === sid).map(([id]) => id);
  }
  async sweep(now?: number) {
    this.calls.push(`sweep ${now}`);
    return 7;
  }
}

function setup(ttlMs = 5_000, maxEntries = 50_000) {
  const inner = new MemoryStore();
  const cached = new CachedSessionStore(inner, ttlMs, maxEntries);
  const published: SessionEvent[] = [];
  const ended: string[][] = [];
  cached.publish = (event) => published.push(event);
  cached.onEnded((ids) => ended.push(ids));
  const gets = () => inner.calls.filter((c) => c.startsWith('get ')).length;
  return { inner, cached, published, ended, gets };
}

beforeAll(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
});
afterEach(() => {
  vi.setSystemTime(T);
});
afterAll(() => {
  vi.useRealTimers();
});

describe('CachedSessionStore reads', () => {
  it('answers repeated reads from the cache until the entry is ttlMs old', async () => {
    vi.setSystemTime(T);
    const { inner, cached, gets } = setup(5_000);
    await inner.set('a', { v: 1 }, 60_000, { subject: 's' });
    expect((await cached.get('a'))?.data).toEqual({ v: 1 });
    expect(cached.peek('a')?.session?.data).toEqual({ v: 1 });
    vi.setSystemTime(T + 4_999);
    expect((await cached.get('a'))?.data).toEqual({ v: 1 });
    expect(cached.peek('a')?.session?.data).toEqual({ v: 1 });
    expect(gets()).toBe(1);
    vi.setSystemTime(T + 5_000);
    expect(cached.peek('a')).toBeUndefined();
    await cached.get('a');
    expect(gets()).toBe(2);
  });

  it('sees another process’s delete once the entry has aged out', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup(5_000);
    await inner.set('a', { v: 1 }, 60_000, { subject: 's' });
    await cached.get('a');
    inner.sessions.delete('a');
    vi.setSystemTime(T + 5_000);
    expect(await cached.get('a')).toBeUndefined();
  });

  it('never serves a session past its own expiry, however fresh the entry', async () => {
    vi.setSystemTime(T);
    const { inner, cached, gets } = setup(5_000);
    await inner.set('short', { v: 1 }, 1_000, { subject: 's' });
    expect((await cached.get('short'))?.data).toEqual({ v: 1 });
    vi.setSystemTime(T + 999);
    expect(cached.peek('short')?.session).toBeDefined();
    vi.setSystemTime(T + 1_000);
    expect(cached.peek('short')).toBeUndefined();
    expect(await cached.get('short')).toBeUndefined();
    expect(gets()).toBe(2);
  });

  it('remembers that a session does not exist, for ttlMs', async () => {
    vi.setSystemTime(T);
    const { cached, gets } = setup(5_000);
    expect(cached.peek('none')).toBeUndefined();
    expect(await cached.get('none')).toBeUndefined();
    expect(cached.peek('none')).toBeDefined();
    expect(cached.peek('none')?.session).toBeUndefined();
    expect(await cached.get('none')).toBeUndefined();
    expect(gets()).toBe(1);
    vi.setSystemTime(T + 5_000);
    expect(cached.peek('none')).toBeUndefined();
  });

  it('keeps at most maxEntries, evicting the oldest', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup(60_000, 2);
    for (const id of ['a', 'b', 'c']) await inner.set(id, { id }, 600_000, { subject: 's' });
    await cached.get('a');
    await cached.get('b');
    expect(cached.peek('a')).toBeDefined();
    await cached.get('c');
    expect(cached.peek('a')).toBeUndefined();
    expect(cached.peek('b')).toBeDefined();
    expect(cached.peek('c')).toBeDefined();
  });

  it('counts a re-read entry as new for eviction', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup(1_000, 3);
    for (const id of ['a', 'b', 'c', 'd']) await inner.set(id, { id }, 600_000, { subject: 's' });
    await cached.get('a');
    await cached.get('b');
    vi.setSystemTime(T + 1_000);
    await cached.get('a'); // aged out: read again, now the newest
    await cached.get('c');
    await cached.get('d');
    expect(cached.peek('b')).toBeUndefined();
    expect(cached.peek('a')).toBeDefined();
  });
});

describe('CachedSessionStore writes', () => {
  it('writes through, reads its own writes without asking the store, and tells the other instances', async () => {
    vi.setSystemTime(T);
    const { inner, cached, published, gets } = setup();
    await cached.set('a', { v: 1 }, 60_000, { subject: 's', idpSid: 'sid' });
    expect(inner.sessions.get('a')).toEqual({ session: { data: { v: 1 }, expiresAt: T + 60_000 }, index: { subject: 's', idpSid: 'sid' } });
    expect(await cached.get('a')).toEqual({ data: { v: 1 }, expiresAt: T + 60_000 });
    expect(gets()).toBe(0);
    expect(published).toEqual([{ kind: 'changed', ids: ['a'] }]);
  });

  it('caches a short session written here only until it expires', async () => {
    vi.setSystemTime(T);
    const { cached } = setup(5_000);
    await cached.set('a', { v: 1 }, 100, { subject: 's' });
    vi.setSystemTime(T + 100);
    expect(cached.peek('a')).toBeUndefined();
  });

  it('updates through, caching the new value and telling the others', async () => {
    vi.setSystemTime(T);
    const { inner, cached, published, gets } = setup();
    await inner.set('a', { v: 1 }, 60_000, { subject: 's' });
    await cached.get('a');
    vi.setSystemTime(T + 10);
    expect(await cached.update('a', { v: 2 }, 30_000, { subject: 's' })).toBe(true);
    expect(await cached.get('a')).toEqual({ data: { v: 2 }, expiresAt: T + 10 + 30_000 });
    expect(gets()).toBe(1);
    expect(published).toEqual([{ kind: 'changed', ids: ['a'] }]);
  });

  it('drops its copy when the store says the session has gone, so an ended session is not served', async () => {
    vi.setSystemTime(T);
    const { inner, cached, published } = setup();
    await cached.set('a', { v: 1 }, 60_000, { subject: 's' });
    published.length = 0;
    inner.updateResult = false;
    expect(await cached.update('a', { v: 2 }, 60_000, { subject: 's' })).toBe(false);
    expect(cached.peek('a')).toBeUndefined();
    expect(published).toEqual([]);
  });

  it('ends a session: store, cache, this process’s listeners and the other instances', async () => {
    vi.setSystemTime(T);
    const { inner, cached, published, ended } = setup();
    await cached.set('a', { v: 1 }, 60_000, { subject: 's' });
    published.length = 0;
    await cached.destroy('a');
    expect(inner.sessions.has('a')).toBe(false);
    expect(cached.peek('a')).toBeUndefined();
    expect(await cached.get('a')).toBeUndefined();
    expect(ended).toEqual([['a']]);
    expect(published).toEqual([{ kind: 'ended', ids: ['a'] }]);
  });

  it('serves no cached copy while a destroy is under way, and caches none read meanwhile', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup();
    await cached.set('a', { v: 1 }, 60_000, { subject: 's' });
    const release = inner.hold();
    const destroying = cached.destroy('a');
    expect(cached.peek('a')).toBeUndefined();
    // A request reads the session while the store has not deleted it yet.
    expect((await cached.get('a'))?.data).toEqual({ v: 1 });
    release();
    await destroying;
    expect(cached.peek('a')).toBeUndefined();
    expect(await cached.get('a')).toBeUndefined();
  });

  it('takes from the store, never from the cache, and drops any cached copy', async () => {
    vi.setSystemTime(T);
    const { inner, cached, published } = setup();
    await cached.set('a', { code: 1 }, 60_000, { subject: null });
    published.length = 0;
    const release = inner.hold();
    const taking = cached.take('a');
    expect(cached.peek('a')).toBeUndefined();
    expect((await cached.get('a'))?.data).toEqual({ code: 1 }); // read before the store let go of it
    release();
    expect((await taking)?.data).toEqual({ code: 1 });
    expect(cached.peek('a')).toBeUndefined();
    expect(published).toEqual([{ kind: 'changed', ids: ['a'] }]);
    expect(await cached.take('a')).toBeUndefined();
    expect(published).toHaveLength(1);
    expect(inner.calls.filter((c) => c === 'take a')).toHaveLength(2);
  });

  it('ends every session of a subject, here, elsewhere and at the embedded provider', async () => {
    vi.setSystemTime(T);
    const { cached, published, ended } = setup();
    const provider: string[] = [];
    cached.providerSessions = {
      endAccount: async (sub) => (provider.push(`account ${sub}`), 1),
      endSession: async (sub, sid) => (provider.push(`session ${sub} ${sid}`), 1),
    } satisfies ProviderSessions;
    await cached.set('a', { v: 1 }, 60_000, { subject: 's' });
    await cached.set('b', { v: 2 }, 60_000, { subject: 's' });
    await cached.set('c', { v: 3 }, 60_000, { subject: 'other' });
    published.length = 0;
    expect(await cached.destroyBySubject('s')).toBe(2);
    expect(cached.peek('a')).toBeUndefined();
    expect(cached.peek('b')).toBeUndefined();
    expect(cached.peek('c')?.session?.data).toEqual({ v: 3 });
    expect(await cached.get('a')).toBeUndefined();
    expect(ended).toEqual([['a', 'b']]);
    expect(published).toEqual([{ kind: 'ended', ids: ['a', 'b'] }]);
    expect(provider).toEqual(['account s']);
  });

  it('tells nobody when a subject had no sessions, and works without a provider or a publisher', async () => {
    const { cached, published, ended } = setup();
    expect(await cached.destroyBySubject('nobody')).toBe(0);
    expect(ended).toEqual([]);
    expect(published).toEqual([]);
    const bare = new CachedSessionStore(new MemoryStore());
    await bare.set('a', { v: 1 }, 60_000, { subject: 's' });
    expect(await bare.update('a', { v: 2 }, 60_000, { subject: 's' })).toBe(true);
    await bare.take('a');
    await bare.set('b', { v: 1 }, 60_000, { subject: 's' });
    await bare.destroy('b');
    await bare.set('c', { v: 1 }, 60_000, { subject: 's' });
    expect(await bare.destroyBySubject('s')).toBe(1);
    await bare.endProviderSession('s', 'sid');
  });

  it('ends the one provider session a revoked session began with; without a sid, all of the account’s', async () => {
    const { cached } = setup();
    const provider: string[] = [];
    cached.providerSessions = {
      endAccount: async (sub) => (provider.push(`account ${sub}`), 1),
      endSession: async (sub, sid) => (provider.push(`session ${sub} ${sid}`), 1),
    };
    expect(await cached.endProviderSession('s', 'sid-1')).toBe(false);
    expect(provider).toEqual(['session s sid-1']);
    // A session stored before its provider session was recorded cannot name it: every one goes.
    expect(await cached.endProviderSession('s', undefined)).toBe(true);
    expect(provider).toEqual(['session s sid-1', 'account s']);
  });
});

describe('CachedSessionStore across instances', () => {
  it('drops entries another instance changed, and hears of ended ones', async () => {
    vi.setSystemTime(T);
    const { inner, cached, ended, published } = setup();
    for (const id of ['a', 'b', 'c']) await cached.set(id, { id }, 60_000, { subject: 's' });
    published.length = 0;
    inner.sessions.set('a', { session: { data: { id: 'a2' }, expiresAt: T + 60_000 }, index: { subject: 's' } });
    cached.receive({ kind: 'changed', ids: ['a'] });
    expect((await cached.get('a'))?.data).toEqual({ id: 'a2' });
    expect(ended).toEqual([]);
    cached.receive({ kind: 'ended', ids: ['b', 'c'] });
    expect(cached.peek('b')).toBeUndefined();
    expect(cached.peek('c')).toBeUndefined();
    expect(ended).toEqual([['b', 'c']]);
    // What was heard from others is not published back to them.
    expect(published).toEqual([]);
  });

  it('forgets one entry on request', async () => {
    const { cached } = setup();
    await cached.set('a', { v: 1 }, 60_000, { subject: 's' });
    cached.forget('a');
    expect(cached.peek('a')).toBeUndefined();
  });

  it('passes the index lookups to the store', async () => {
    const { inner, cached } = setup();
    await inner.set('a', {}, 60_000, { subject: 's', idpSid: 'sid' });
    expect(await cached.idsBySubject('s')).toEqual(['a']);
    expect(await cached.idsByIdpSession('sid')).toEqual(['a']);
    expect(inner.calls).toContain('idsBySubject s');
    expect(inner.calls).toContain('idsByIdpSession sid');
  });

  it('sweeps aged entries and passes the sweep on with the same time', async () => {
    vi.setSystemTime(T);
    const { inner, cached } = setup(5_000);
    await cached.set('old', { v: 1 }, 60_000, { subject: 's' });
    vi.setSystemTime(T + 1_000);
    await cached.set('new', { v: 1 }, 60_000, { subject: 's' });
    expect(await cached.sweep(T + 5_000)).toBe(7);
    expect(inner.calls).toContain(`sweep ${T + 5_000}`);
    // The aged entry went (peeking at an earlier time would otherwise still see it).
    vi.setSystemTime(T + 4_000);
    expect(cached.peek('old')).toBeUndefined();
    expect(cached.peek('new')).toBeDefined();
    vi.setSystemTime(T + 9_000);
    await cached.sweep();
    expect(inner.calls).toContain(`sweep ${T + 9_000}`);
  });
});
