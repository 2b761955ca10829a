import type { Config } from '../../lib/config.ts';
import { openDatabase } from '../../lib/db/database.ts';
import { migrateToLatest } from '../../lib/db/migrate.ts';
import type { Database } from '../../lib/db/schema.ts';
import type { Logger } from '../../lib/log.ts';
import { tightenPrivateDir } from '../../lib/private-files.ts';
import { CachedSessionStore } from '../../lib/sessions/cached-store.ts';
import { RedisSessionStore } from '../../lib/sessions/redis-store.ts';
import { SqlSessionStore } from '../../lib/sessions/sql-store.ts';
import { Cluster } from './cluster.ts';
import { developmentSessionKeys } from './secrets.ts';

/** Where the portal keeps things: the database (migrated), Redis when several instances share it, the session store. */
export interface Storage {
  database: Database;
  /** Present with REDIS_URL: sessions, socket.io broadcasts and session events go through Redis. */
  cluster: Cluster | undefined;
  sessions: CachedSessionStore;
  /** Cookie signing keys, newest first. */
  sessionKeys: string[];
  close(): Promise<void>;
}

export async function buildStorage(config: Config, log: Logger): Promise<Storage> {
  // DATA_DIR (the default database's folder, the development secret) may predate the 0700 rule.
  // It is not created here: with SESSION_SECRET and MySQL nothing needs it.
  tightenPrivateDir(config.dataDir, 'DATA_DIR');
  const database = await openDatabase(config.database);
  const applied = await migrateToLatest(database);
  if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');
  const sessionKeys = config.sessionKeys ?? developmentSessionKeys(config.dataDir);

  const cluster = config.redisUrl ? new Cluster(config.redisUrl, log) : undefined;
  if (cluster) await cluster.connect();
  const sessions = new CachedSessionStore(cluster ? new RedisSessionStore(cluster.redis) : new SqlSessionStore(database));
  if (cluster) await cluster.shareSessions(sessions);

  return {
    database,
    cluster,
    sessions,
    sessionKeys,
    async close() {
      await cluster?.close();
      await database.close();
    },
  };
}
