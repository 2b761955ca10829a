import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RedisSessionStore } from '../../lib/sessions/redis-store.ts';

/**
 * The Redis store's edges against the shared Redis (127.0.0.1:6379, which CI starts; never stopped
 * here). Every key this file writes carries a random run id and is deleted at the end.
 * tests/session-stores.test.ts runs the shared store contract on it as well.
 */
const run = randomUUID();
const id = (name: string) => `${run}-${name}`;
let redis: Redis;
let store: RedisSessionStore;

beforeAll(() => {
  redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
  store = new RedisSessionStore(redis);
});
afterAll(async () => {
  const keys: string[] = [];
  for await (const batch of redis.scanStream({ match: `atrium:*${run}*`, count: 1000 }) as AsyncIterable<string[]>) keys.push(...batch);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

describe('RedisSessionStore', () => {
  it('keeps a session under atrium:sess:<id> with its data and expiry, expiring with it', async () => {
    // A fixed clock (Date only: ioredis keeps its real timers), so the stored expiry is exact.
    const now = Date.now();
    vi.useFakeTimers({ toFake: ['Date'], now });
    try {
      await store.set(id('a'), { sub: 'u', n: 1 }, 60_000, { subject: id('user') });
      const raw = JSON.parse((await redis.get(`atrium:sess:${id('a')}`))!) as { data: unknown; expiresAt: number };
      expect(raw.data).toEqual({ sub: 'u', n: 1 });
      expect(raw.expiresAt).toBe(now + 60_000);
      // Redis's own clock: the key expires with the session (in milliseconds, not seconds: far above
      // 60 however slow the machine), never later than its lifetime.
      const pttl = await redis.pttl(`atrium:sess:${id('a')}`);
      expect(pttl).toBeGreaterThan(30_000);
      expect(pttl).toBeLessThanOrEqual(60_000);
      expect((await store.get(id('a')))?.data).toEqual({ sub: 'u', n: 1 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('rounds a fractional lifetime up to whole milliseconds for Redis', async () => {
    await store.set(id('frac'), {}, 30_000.4, { subject: id('frac-user') });
    expect(await redis.pttl(`atrium:sess:${id('frac')}`)).toBeGreaterThan(29_000);
    expect(await store.update(id('frac'), {}, 30_000.4, { subject: id('frac-user') })).toBe(true);
    expect(await redis.pttl(`atrium:sess:${id('frac')}`)).toBeGreaterThan(29_000);
  });

  it('indexes a session by subject and provider session, for as long as the longest session lives', async () => {
    const subject = id('idx-user');
    const sid = id('idx-sid');
    await store.set(id('i1'), {}, 60_000, { subject, idpSid: sid });
    expect(await redis.pttl(`atrium:sub:${subject}`)).toBeGreaterThan(50_000);
    expect(await redis.pttl(`atrium:sid:${sid}`)).toBeGreaterThan(50_000);
    await store.set(id('i2'), {}, 120_000, { subject, idpSid: sid });
    expect(await redis.pttl(`atrium:sub:${subject}`)).toBeGreaterThan(110_000);
    expect(await redis.pttl(`atrium:sid:${sid}`)).toBeGreaterThan(110_000);
    // A shorter session does not shorten the index.
    await store.set(id('i3'), {}, 10_000, { subject, idpSid: sid });
    expect(await redis.pttl(`atrium:sub:${subject}`)).toBeGreaterThan(110_000);
    expect(await redis.pttl(`atrium:sid:${sid}`)).toBeGreaterThan(110_000);
    expect((await store.idsBySubject(subject)).sort()).toEqual([id('i1'), id('i2'), id('i3')].sort());
    expect((await store.idsByIdpSession(sid)).sort()).toEqual([id('i1'), id('i2'), id('i3')].sort());
  });

  it('indexes nothing for a session without a subject or provider session', async () => {
    await store.set(id('anon'), {}, 60_000, { subject: null });
    await store.set(id('anon2'), {}, 60_000, { subject: null, idpSid: null });
    expect(await store.idsBySubject('null')).not.toContain(id('anon'));
    expect(await store.idsByIdpSession('undefined')).not.toContain(id('anon'));
    expect(await store.idsByIdpSession('null')).not.toContain(id('anon2'));
    expect(await redis.sismember('atrium:sub:null', id('anon'))).toBe(0);
    expect(await redis.sismember('atrium:sid:undefined', id('anon'))).toBe(0);
  });

  it('updates only a session that still exists, re-indexing it', async () => {
    const subject = id('upd-user');
    expect(await store.update(id('u-missing'), { v: 1 }, 60_000, { subject })).toBe(false);
    expect(await redis.exists(`atrium:sess:${id('u-missing')}`)).toBe(0);
    expect(await store.idsBySubject(subject)).toEqual([]);
    await store.set(id('u'), { v: 1 }, 10_000, { subject });
    expect(await store.update(id('u'), { v: 2 }, 90_000, { subject, idpSid: id('upd-sid') })).toBe(true);
    expect((await store.get(id('u')))?.data).toEqual({ v: 2 });
    expect(await redis.pttl(`atrium:sess:${id('u')}`)).toBeGreaterThan(80_000);
    expect(await redis.pttl(`atrium:sub:${subject}`)).toBeGreaterThan(80_000);
    expect(await store.idsByIdpSession(id('upd-sid'))).toEqual([id('u')]);
  });

  it('never serves a value past its recorded expiry, nor one it cannot read', async () => {
    // As an instance with another clock, or an older version, may have left it.
    await redis.set(`atrium:sess:${id('stale')}`, JSON.stringify({ data: { v: 1 }, expiresAt: Date.now() - 1_000 }), 'PX', 60_000);
    expect(await store.get(id('stale'))).toBeUndefined();
    expect(await store.take(id('stale'))).toBeUndefined();
    expect(await redis.exists(`atrium:sess:${id('stale')}`)).toBe(0);
    await redis.set(`atrium:sess:${id('bad')}`, '{not json', 'PX', 60_000);
    expect(await store.get(id('bad'))).toBeUndefined();
    await redis.set(`atrium:sess:${id('empty')}`, '', 'PX', 60_000);
    expect(await store.get(id('empty'))).toBeUndefined();
    await redis.set(`atrium:sess:${id('live')}`, JSON.stringify({ data: { v: 2 }, expiresAt: Date.now() + 60_000 }), 'PX', 60_000);
    expect((await store.get(id('live')))?.data).toEqual({ v: 2 });
  });

  it('counts a value as ended from the millisecond of its recorded expiry', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const at = Date.now();
      await redis.set(`atrium:sess:${id('edge')}`, JSON.stringify({ data: { v: 1 }, expiresAt: at + 1 }), 'PX', 60_000);
      expect((await store.get(id('edge')))?.data).toEqual({ v: 1 });
      vi.setSystemTime(at + 1);
      expect(await store.get(id('edge'))).toBeUndefined();
    } finally {
      vi.useRealTimers();
    }
  });

  it('lists only live sessions of an index and prunes the ended ones from it', async () => {
    const sid = id('prune-sid');
    await store.set(id('p1'), {}, 60_000, { subject: null, idpSid: sid });
    await store.set(id('p2'), {}, 60_000, { subject: null, idpSid: sid });
    await store.destroy(id('p1'));
    expect(await store.idsByIdpSession(sid)).toEqual([id('p2')]);
    expect(await redis.smembers(`atrium:sid:${sid}`)).toEqual([id('p2')]);
    expect(await store.idsByIdpSession(id('no-such-sid'))).toEqual([]);
    // Nothing to prune: the index stays as it is.
    expect(await store.idsByIdpSession(sid)).toEqual([id('p2')]);
  });

  it('ends every session of a subject and its index, counting them; none is fine', async () => {
    const subject = id('end-user');
    await store.set(id('e1'), {}, 60_000, { subject });
    await store.set(id('e2'), {}, 60_000, { subject });
    await store.set(id('e3'), {}, 60_000, { subject: id('someone-else') });
    expect(await store.destroyBySubject(subject)).toBe(2);
    expect(await store.get(id('e1'))).toBeUndefined();
    expect(await store.get(id('e2'))).toBeUndefined();
    expect(await store.get(id('e3'))).toBeDefined();
    expect(await redis.exists(`atrium:sub:${subject}`)).toBe(0);
    expect(await store.destroyBySubject(subject)).toBe(0);
    expect(await store.destroyBySubject(id('never-seen'))).toBe(0);
  });

  it('takes a session once', async () => {
    await store.set(id('t'), { code: 1 }, 60_000, { subject: null });
    expect((await store.take(id('t')))?.data).toEqual({ code: 1 });
    expect(await store.take(id('t'))).toBeUndefined();
    expect(await redis.exists(`atrium:sess:${id('t')}`)).toBe(0);
  });

  it('leaves expiry to Redis: a sweep removes nothing', async () => {
    expect(await store.sweep()).toBe(0);
  });
});
