import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Kysely, MysqlDialect, SqliteDialect } from 'kysely';
import type { DatabaseTarget } from '../config.ts';
import { makePrivateFile, tightenPrivateFile } from '../private-files.ts';
import { DatabaseAvailability, type AvailabilityChange } from './availability.ts';
import { BoundedPool } from './bounded-pool.ts';
import type { Database, DB } from './schema.ts';

export interface DatabaseOptions {
  /**
   * MySQL: the longest the portal waits at once on the database — to connect, for a pooled
   * connection, for one query — before the caller gets DatabaseUnavailableError (a 503).
   */
  timeoutMs?: number;
  /** MySQL: hears when the database stops answering and when it answers again (once each). */
  onAvailability?: (change: AvailabilityChange) => void;
}

/** DATABASE_TIMEOUT's default: a hung database costs a request a few seconds, never more. */
export const DEFAULT_DATABASE_TIMEOUT_MS = 5_000;

/** Opens the database named by DATABASE_URL; MySQL databases are created when missing. */
export async function openDatabase(target: DatabaseTarget, options: DatabaseOptions = {}): Promise<Database> {
  if (target.kind === 'sqlite') return openSqlite(target.file);
  return openMysql(target.url, target.database, options.timeoutMs ?? DEFAULT_DATABASE_TIMEOUT_MS, new DatabaseAvailability(options.onAvailability));
}

/** SQLite's companions of a database file in WAL mode (and the rollback journal of older runs). */
const SIDE_FILES = ['-wal', '-shm', '-journal'];

async function openSqlite(file: string): Promise<Database> {
  const { default: SQLite } = await import('better-sqlite3');
  const path = file === ':memory:' ? file : resolve(file);
  if (path !== ':memory:') {
    // Sessions and the provider's signing keys live in this file: the portal's user alone reads it.
    // Only a folder made here is made 0700; an existing parent may be shared (/var/lib) and is not ours.
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    makePrivateFile(path, 'DATABASE_URL');
    for (const side of SIDE_FILES) tightenPrivateFile(`${path}${side}`, 'DATABASE_URL');
  }
  const sqlite = new SQLite(path);
  sqlite.pragma('journal_mode = WAL');
  // SQLite creates -wal and -shm with the database file's mode; this only catches a surprise.
  if (path !== ':memory:') for (const side of SIDE_FILES) tightenPrivateFile(`${path}${side}`, 'DATABASE_URL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  sqlite.pragma('synchronous = NORMAL');
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite }) });
  return { db, dialect: 'sqlite', close: () => db.destroy() };
}

async function openMysql(url: string, database: string, timeoutMs: number, availability: DatabaseAvailability): Promise<Database> {
  const mysql = await import('mysql2');
  await ensureMysqlDatabase(url, database, timeoutMs);
  const raw = mysql.createPool({
    uri: url,
    charset: 'utf8mb4',
    connectionLimit: 10,
    // BIGINT millisecond times fit in a double; keep them numbers, not strings.
    supportBigNumbers: true,
    bigNumberStrings: false,
    timezone: 'Z',
    // A server that accepts the TCP connection and then says nothing (frozen, overloaded) is given up on.
    connectTimeout: timeoutMs,
  });
  const pool = new BoundedPool(raw, { acquireMs: timeoutMs, queryMs: timeoutMs }, availability);
  const db = new Kysely<DB>({ dialect: new MysqlDialect({ pool }) });
  const unboundedDb = new Kysely<DB>({ dialect: new MysqlDialect({ pool: pool.withLimits({ acquireMs: timeoutMs, queryMs: 0 }) }) });
  return {
    db,
    unboundedDb,
    dialect: 'mysql',
    async close() {
      await unboundedDb.destroy();
      await db.destroy();
    },
  };
}

async function ensureMysqlDatabase(url: string, database: string, timeoutMs: number): Promise<void> {
  const mysql = await import('mysql2/promise');
  const server = new URL(url);
  server.pathname = '/';
  const connection = await mysql.createConnection({ uri: server.toString(), connectTimeout: timeoutMs });
  try {
    await connection.query({
      sql: `CREATE DATABASE IF NOT EXISTS \`${database}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`,
      timeout: timeoutMs,
    });
  } finally {
    // A polite goodbye (the server logs an aborted connection otherwise), but not waited on for
    // longer than a connection: a server that stopped answering never acknowledges it.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([connection.end().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    connection.destroy();
  }
}
