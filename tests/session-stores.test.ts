import { afterAll, describe, expect, it } from 'vitest';
import { CachedSessionStore } from '../lib/sessions/cached-store.ts';
import { RedisSessionStore } from '../lib/sessions/redis-store.ts';
import { SqlSessionStore } from '../lib/sessions/sql-store.ts';
import { Redis } from 'ioredis';
import { DIALECTS, useMigratedDatabase } from './helpers/databases.ts';
import { sessionStoreContract } from './session-store.suite.ts';

for (const dialect of DIALECTS) {
  describe(`session stores on ${dialect}`, () => {
    const db = useMigratedDatabase(dialect);

    describe('SqlSessionStore', () => sessionStoreContract(`sql-${dialect}`, () => new SqlSessionStore(db.database)));
    describe('CachedSessionStore over SQL', () => sessionStoreContract(`cached-${dialect}`, () => new CachedSessionStore(new SqlSessionStore(db.database), 5_000)));

    it('the cache reads its own writes and sees another process’s delete once the entry ages out', async () => {
      const sql = new SqlSessionStore(db.database);
      const cached = new CachedSessionStore(sql, 100);
      const key = 'k'.repeat(43);
      await cached.set(key, { v: 1 }, 60_000, { subject: 'x' });
      expect((await cached.get(key))?.data).toEqual({ v: 1 });
      await sql.destroy(key); // as the admin CLI would, from another process
      await new Promise((r) => setTimeout(r, 150));
      expect(await cached.get(key)).toBeUndefined();
    });
  });
}

describe('session stores on Redis', () => {
  const redis = new Redis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 });
  afterAll(async () => {
    await redis.quit();
  });

  describe('RedisSessionStore', () => sessionStoreContract('redis', () => new RedisSessionStore(redis)));
  describe('CachedSessionStore over Redis', () => sessionStoreContract('cached-redis', () => new CachedSessionStore(new RedisSessionStore(redis), 5_000)));

  it('lets Redis expire sessions and prunes the indexes of ended ones', async () => {
    const store = new RedisSessionStore(redis);
    const subject = `redis-prune-${Math.random()}`;
    await store.set('p'.repeat(43), { v: 1 }, 60_000, { subject });
    await store.set('q'.repeat(43), { v: 1 }, 60_000, { subject });
    expect(await redis.pttl(`atrium:sess:${'p'.repeat(43)}`)).toBeGreaterThan(50_000);
    expect(await redis.pttl(`atrium:sub:${subject}`)).toBeGreaterThan(50_000);
    await store.destroy('p'.repeat(43));
    expect(await store.idsBySubject(subject)).toEqual(['q'.repeat(43)]);
    expect(await redis.smembers(`atrium:sub:${subject}`)).toEqual(['q'.repeat(43)]);
    await store.destroyBySubject(subject);
  });
});
