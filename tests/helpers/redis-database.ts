import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';

/** The Redis server CI runs (see .ci/run); never stopped by a test. */
export const SHARED_REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

const CLAIM_KEY = 'atrium-test:claimed-by';
/** Long enough for any test file; a crashed test's claim lapses by itself. */
const CLAIM_MS = 30 * 60_000;

export interface ClaimedRedisDatabase {
  /** REDIS_URL for portals: the shared server, this database index. */
  url: string;
  index: number;
  /** A client on this database, for the test's own checks. */
  redis: Redis;
  /** Deletes this database's keys matching `pattern`; returns how many. */
  deleteKeys(pattern: string): Promise<number>;
  /** Deletes every key the portals wrote here and gives the index back. */
  release(): Promise<void>;
}

/**
 * A database index of its own on the shared Redis, so a test's keys (login counts for 127.0.0.1,
 * sessions) never reach other tests on database 0. An index is claimed only while empty, with a
 * SET NX marker, so two test files cannot pick the same one. Pub/sub channels are server-wide
 * whatever the index (the socket.io adapter and session events), so that much is still shared.
 */
export async function claimRedisDatabase(): Promise<ClaimedRedisDatabase> {
  const token = randomUUID();
  for (let index = 15; index >= 1; index--) {
    const url = new URL(SHARED_REDIS);
    url.pathname = `/${index}`;
    const redis = new Redis(url.href, { maxRetriesPerRequest: 1 });
    const claimed = (await redis.dbsize()) === 0 && (await redis.set(CLAIM_KEY, token, 'PX', CLAIM_MS, 'NX')) === 'OK';
    if (!claimed) {
      await redis.quit();
      continue;
    }
    const deleteKeys = async (pattern: string) => {
      let deleted = 0;
      for await (const keys of redis.scanStream({ match: pattern, count: 500 }) as AsyncIterable<string[]>) {
        if (keys.length > 0) deleted += await redis.unlink(...keys);
      }
      return deleted;
    };
    return {
      url: url.href,
      index,
      redis,
      deleteKeys,
      async release() {
        await deleteKeys('atrium:*');
        if ((await redis.get(CLAIM_KEY)) === token) await redis.del(CLAIM_KEY);
        await redis.quit();
      },
    };
  }
  throw new Error(`no empty database index (1-15) on the shared Redis at ${SHARED_REDIS}`);
}
