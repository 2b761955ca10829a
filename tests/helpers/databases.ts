import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll } from 'vitest';
import type { DatabaseTarget } from '../../lib/config.ts';
import { openDatabase } from '../../lib/db/database.ts';
import { migrateToLatest } from '../../lib/db/migrate.ts';
import type { Database } from '../../lib/db/schema.ts';

/** The MariaDB server the SQL tests run against (CI starts it; see .ci/run). */
export const MYSQL_SERVER = process.env.TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306';

export type DialectName = 'sqlite' | 'mysql';
export const DIALECTS: DialectName[] = ['sqlite', 'mysql'];

export interface TestDatabase {
  target: DatabaseTarget;
  url: string;
  drop(): Promise<void>;
}

/** A fresh, empty database of the given dialect, dropped afterwards. */
export async function createTestDatabase(dialect: DialectName): Promise<TestDatabase> {
  if (dialect === 'sqlite') {
    const file = join(mkdtempSync(join(tmpdir(), 'atrium-db-')), 'test.sqlite');
    return { target: { kind: 'sqlite', file }, url: `sqlite:${file}`, drop: async () => {} };
  }
  const database = `atrium_test_${randomBytes(6).toString('hex')}`;
  const url = `${MYSQL_SERVER.replace(/\/$/, '')}/${database}`;
  return {
    target: { kind: 'mysql', url, database },
    url,
    async drop() {
      const connection = await mysql.createConnection({ uri: MYSQL_SERVER });
      try {
        await connection.query(`DROP DATABASE IF EXISTS \`${database}\``);
      } finally {
        await connection.end();
      }
    },
  };
}

/**
 * A migrated database of the given dialect for one describe block: opened before its tests, closed
 * and dropped after. Read it through the getter (it exists once beforeAll has run).
 */
export function useMigratedDatabase(dialect: DialectName): { readonly database: Database; readonly applied: string[] } {
  let testDb: TestDatabase | undefined;
  const state: { database?: Database; applied: string[] } = { applied: [] };
  beforeAll(async () => {
    testDb = await createTestDatabase(dialect);
    state.database = await openDatabase(testDb.target);
    state.applied = await migrateToLatest(state.database);
  });
  afterAll(async () => {
    await state.database?.close();
    await testDb?.drop();
  });
  return {
    get database() {
      if (!state.database) throw new Error('the test database is not open yet');
      return state.database;
    },
    get applied() {
      return state.applied;
    },
  };
}
