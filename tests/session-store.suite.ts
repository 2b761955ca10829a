import { expect, it } from 'vitest';
import type { SessionStore } from '../lib/sessions/store.ts';

/**
 * The contract every session store keeps. Each backend's test file calls this with a factory;
 * a backend joins the portal only when it passes all of it.
 */
export function sessionStoreContract(name: string, makeStore: () => SessionStore): void {
  const id = (suffix: string) => `${name}-${suffix}-${Math.random().toString(36).slice(2)}`.padEnd(43, 'x').slice(0, 43);

  it('returns what was set, and nothing for an unknown id', async () => {
    const store = makeStore();
    const key = id('a');
    await store.set(key, { sub: 'u1', nested: { a: [1, 2] }, text: 'ünïcødé 🚀' }, 60_000, { subject: 'u1' });
    expect((await store.get(key))?.data).toEqual({ sub: 'u1', nested: { a: [1, 2] }, text: 'ünïcødé 🚀' });
    const expiresAt = (await store.get(key))!.expiresAt;
    expect(expiresAt).toBeGreaterThan(Date.now() + 50_000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);
    expect(await store.get(id('missing'))).toBeUndefined();
  });

  it('replaces a session on a second set', async () => {
    const store = makeStore();
    const key = id('b');
    const sid = id('sid');
    await store.set(key, { v: 1 }, 60_000, { subject: null });
    await store.set(key, { v: 2 }, 60_000, { subject: 'u2', idpSid: sid });
    expect(await store.idsByIdpSession(sid)).toEqual([key]);
    expect((await store.get(key))?.data).toEqual({ v: 2 });
    expect(await store.idsBySubject('u2')).toContain(key);
  });

  it('updates a live session but never revives an ended one', async () => {
    const store = makeStore();
    const key = id('u');
    expect(await store.update(key, { v: 0 }, 60_000, { subject: null })).toBe(false);
    expect(await store.get(key)).toBeUndefined();
    await store.set(key, { v: 1 }, 60_000, { subject: 'upd' });
    expect(await store.update(key, { v: 2 }, 60_000, { subject: 'upd' })).toBe(true);
    expect((await store.get(key))?.data).toEqual({ v: 2 });
    await store.destroy(key);
    expect(await store.update(key, { v: 3 }, 60_000, { subject: 'upd' })).toBe(false);
    expect(await store.get(key)).toBeUndefined();
  });

  it('does not revive a session that expired but was not swept yet', async () => {
    const store = makeStore();
    const key = id('late');
    const subject = `late-${Math.random()}`;
    await store.set(key, { v: 1 }, 40, { subject });
    await new Promise((r) => setTimeout(r, 120));
    // No sweep has run: an SQL row is still there, only its expiry says it has ended.
    expect(await store.update(key, { v: 2 }, 60_000, { subject })).toBe(false);
    expect(await store.get(key)).toBeUndefined();
    expect(await store.idsBySubject(subject)).toEqual([]);
  });

  it('forgets a destroyed session', async () => {
    const store = makeStore();
    const key = id('c');
    await store.set(key, { v: 1 }, 60_000, { subject: null });
    await store.destroy(key);
    expect(await store.get(key)).toBeUndefined();
    await store.destroy(key); // destroying twice is fine
  });

  it('expires sessions and sweeps them', async () => {
    const store = makeStore();
    const key = id('d');
    const sid = id('sid');
    await store.set(key, { v: 1 }, 50, { subject: null, idpSid: sid });
    await new Promise((r) => setTimeout(r, 120));
    expect(await store.get(key)).toBeUndefined();
    expect(await store.idsByIdpSession(sid)).toEqual([]);
    await store.sweep();
    expect(await store.get(key)).toBeUndefined();
  });

  it('ends every session of one subject and no other', async () => {
    const store = makeStore();
    const subject = `user-${Math.random()}`;
    const mine = [id('e1'), id('e2')];
    const other = id('e3');
    for (const key of mine) await store.set(key, { sub: subject }, 60_000, { subject });
    await store.set(other, { sub: 'someone-else' }, 60_000, { subject: 'someone-else' });
    expect((await store.idsBySubject(subject)).sort()).toEqual([...mine].sort());
    expect(await store.destroyBySubject(subject)).toBe(2);
    for (const key of mine) expect(await store.get(key)).toBeUndefined();
    expect((await store.get(other))?.data).toEqual({ sub: 'someone-else' });
  });

  it('keeps concurrent writers to different sessions apart', async () => {
    const store = makeStore();
    const keys = Array.from({ length: 20 }, (_, i) => id(`f${i}`));
    await Promise.all(keys.map((key, i) => store.set(key, { i }, 60_000, { subject: null })));
    const values = (await Promise.all(keys.map((key) => store.get(key)))).map((s) => s?.data);
    expect(values).toEqual(keys.map((_, i) => ({ i })));
  });

  it('hands a taken record to exactly one of many concurrent takers, once', async () => {
    const store = makeStore();
    const key = id('t');
    await store.set(key, { code: 'once' }, 60_000, { subject: null });
    const taken = await Promise.all(Array.from({ length: 8 }, () => store.take(key)));
    expect(taken.filter((t) => t !== undefined).map((t) => t?.data)).toEqual([{ code: 'once' }]);
    expect(await store.take(key)).toBeUndefined();
    expect(await store.get(key)).toBeUndefined();
    expect(await store.take(id('never-set'))).toBeUndefined();
  });

  it('does not hand out an expired record', async () => {
    const store = makeStore();
    const key = id('tx');
    await store.set(key, { code: 'late' }, 40, { subject: null });
    await new Promise((r) => setTimeout(r, 120));
    expect(await store.take(key)).toBeUndefined();
  });
}
