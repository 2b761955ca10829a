import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import type { Database } from '../lib/db/schema.ts';
import { CachedSessionStore } from '../lib/sessions/cached-store.ts';
import { SqlSessionStore } from '../lib/sessions/sql-store.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from './helpers/databases.ts';
import { sessionStoreContract } from './session-store.suite.ts';

for (const dialect of DIALECTS) {
  describe(`session stores on ${dialect}`, () => {
    let testDb: TestDatabase;
    let database: Database;
    beforeAll(async () => {
      testDb = await createTestDatabase(dialect);
      database = await openDatabase(testDb.target);
      await migrateToLatest(database);
    });
    afterAll(async () => {
      await database?.close();
      await testDb?.drop();
    });

    describe('SqlSessionStore', () => sessionStoreContract(`sql-${dialect}`, () => new SqlSessionStore(database)));
    describe('CachedSessionStore over SQL', () => sessionStoreContract(`cached-${dialect}`, () => new CachedSessionStore(new SqlSessionStore(database), 5_000)));

    it('the cache reads its own writes and sees another process’s delete once the entry ages out', async () => {
      const sql = new SqlSessionStore(database);
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
