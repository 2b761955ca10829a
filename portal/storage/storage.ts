import type { Config } from '../../lib/config.ts';
import type { AvailabilityChange } from '../../lib/db/availability.ts';
import { migrateToLatest } from '../../lib/db/migrate.ts';
import type { Database } from '../../lib/db/schema.ts';
import { openDatabaseAtStart, serverOf, type StartAttempt } from '../../lib/db/start-up.ts';
import type { Logger } from '../../lib/log.ts';
import { tightenPrivateDir } from '../../lib/private-files.ts';
import { CACHE_MAX_ENTRIES, CACHE_TTL_MS, CachedSessionStore } from '../../lib/sessions/cached-store.ts';
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

/**
 * What a session's data holds for bookkeeping alone: the last use (the idle timeout's touch) and
 * koa-session's own expiry marks. While the database is down a change to these waits in memory, so
 * a signed-in user within the outage grace is not refused for a touch (see CachedSessionStore).
 */
const SESSION_BOOKKEEPING = ['seenAt', '_expire', '_maxAge'];

/** One line per failed attempt at start-up: where, why, what next (no stack: nothing is broken here). */
function retryLine({ where, attempt, reason, retryInMs, startTimeoutMs }: StartAttempt): string {
  return `database at ${where} not reachable (${reason}), attempt ${attempt}; trying again in ${retryInMs / 1000} s (start-up waits up to ${startTimeoutMs / 1000} s, DATABASE_START_TIMEOUT)`;
}

/** Two lines per outage of a running portal: when the database stops answering, and when it is back. */
function reportAvailability(log: Logger, config: Config, change: AvailabilityChange): void {
  if (config.database.kind !== 'mysql') return;
  const where = serverOf(config.database.url);
  if (change.up) return log.info({ database: where }, `database at ${where} answering again`);
  log.warn({ database: where, reason: change.reason }, `database at ${where} not answering (${change.reason}); what needs it answers 503 until it is back`);
}

export async function buildStorage(config: Config, log: Logger): Promise<Storage> {
  // DATA_DIR (the default database's folder, the development secret) may predate the 0700 rule.
  // It is not created here: with SESSION_SECRET and MySQL nothing needs it.
  tightenPrivateDir(config.dataDir, 'DATA_DIR');
  const database = await openDatabaseAtStart(config.database, {
    timeoutMs: config.databaseTimeoutSeconds * 1000,
    startTimeoutMs: config.databaseStartTimeoutSeconds * 1000,
    onRetry: (attempt) => log.warn({ database: attempt.where, attempt: attempt.attempt, reason: attempt.reason }, retryLine(attempt)),
    onAvailability: (change) => reportAvailability(log, config, change),
  });
  const applied = await migrateToLatest(database);
  if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');
  const sessionKeys = config.sessionKeys ?? developmentSessionKeys(config.dataDir);

  const cluster = config.redisUrl ? new Cluster(config.redisUrl, log) : undefined;
  if (cluster) await cluster.connect();
  const sessions = new CachedSessionStore(
    cluster ? cluster.sessionStore(config.sessionOutageGraceSeconds * 1000) : new SqlSessionStore(database),
    CACHE_TTL_MS,
    CACHE_MAX_ENTRIES,
    // The SQL store's stale-if-error is the cache's; Redis's store keeps its own (cluster.ts): two would stack their graces.
    cluster ? { graceMs: 0 } : { graceMs: config.sessionOutageGraceSeconds * 1000, bookkeeping: SESSION_BOOKKEEPING },
  );
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
