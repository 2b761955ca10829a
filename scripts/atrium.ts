import { userInfo } from 'node:os';
import dotenv from 'dotenv';
import { runCli } from '../lib/cli.ts';
import { loadConfig } from '../lib/config.ts';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import { ConfigError } from '../lib/errors.ts';
import { RedisSessionStore } from '../lib/sessions/redis-store.ts';
import { Redis } from 'ioredis';

/** `npm run atrium -- <command>`: the admin CLI (see lib/cli.ts for the commands). */
dotenv.config({ quiet: true });
let code = 1;
try {
  const config = loadConfig(process.env);
  const database = await openDatabase(config.database);
  try {
    await migrateToLatest(database);
    // With REDIS_URL the sessions live in Redis: that is where `users disable` must end them.
    const redis = config.redisUrl ? new Redis(config.redisUrl, { maxRetriesPerRequest: 2 }) : undefined;
    try {
      const sessions = redis ? new RedisSessionStore(redis) : undefined;
      code = await runCli(process.argv.slice(2), database, { out: (t) => console.log(t), err: (t) => console.error(t) }, `cli:${userInfo().username}`, sessions);
    } finally {
      await redis?.quit();
    }
  } finally {
    await database.close();
  }
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `atrium: ${(err as Error).message}`);
}
process.exitCode = code;
