import { describe, expect, it } from 'vitest';
import { AuditLog, type AuditEntry } from '../lib/directory/audit.ts';
import { DIALECTS, useMigratedDatabase } from './helpers/databases.ts';

/**
 * The audit log's filters, paging and export read the same on SQLite and MariaDB: substrings that
 * ignore case, LIKE's wildcards taken literally, an action prefix, a time range, and an export that
 * reads every row in batches.
 */
for (const dialect of DIALECTS) {
  describe(`audit log queries on ${dialect}`, () => {
    const db = useMigratedDatabase(dialect);
    const log = () => new AuditLog(db.database);

    it('filters by actor and target (substrings, any case, wildcards literal), action and time', async () => {
      const audit = log();
      await audit.record({ actor: 'Ada@Example.com', action: 'member.add', target: 'user:bob_1@example.com', after: { group: 'devel' } });
      await audit.record({ actor: 'cli:ops', action: 'member.remove', target: 'user:bobx1@example.com', before: { group: 'devel' } });
      await audit.record({ actor: 'cli:ops', action: 'group.create', target: 'group:100%', after: { name: '100%' } });
      await audit.record({ actor: 'cli:o!ps', action: 'session.sign_in', target: 'user:c@example.com' });
      const targets = async (filter: Parameters<AuditLog['page']>[0]['filter']) => (await audit.page({ page: 1, pageSize: 50, filter })).entries.map((e) => e.target);

      expect(await targets({ actor: 'ada@EXAMPLE' })).toEqual(['user:bob_1@example.com']);
      expect(await targets({ target: 'bob_1' })).toEqual(['user:bob_1@example.com']); // "_" is not "any character"
      expect(await targets({ target: '100%' })).toEqual(['group:100%']);
      expect(await targets({ target: '0%' })).toEqual(['group:100%']);
      expect(await targets({ target: '%' })).toEqual(['group:100%']);
      expect(await targets({ actor: 'o!p' })).toEqual(['user:c@example.com']); // nor is the escape character special
      expect(await targets({ action: 'member.' })).toEqual(['user:bobx1@example.com', 'user:bob_1@example.com']);
      expect(await targets({ action: 'member*' })).toEqual(['user:bobx1@example.com', 'user:bob_1@example.com']);
      expect(await targets({ action: 'member' })).toEqual([]);
      expect(await targets({ action: 'member.add' })).toEqual(['user:bob_1@example.com']);
      expect(await targets({ actor: 'cli:ops', action: 'group.' })).toEqual(['group:100%']);
      expect(await targets({ from: Date.now() + 60_000 })).toEqual([]);
      expect(await targets({ to: Date.now() - 60 * 60_000 })).toEqual([]);
      expect((await audit.page({ page: 1, pageSize: 2, filter: { actor: 'cli:' } })).total).toBe(3);
      expect(await audit.actions()).toEqual(['group.create', 'member.add', 'member.remove', 'session.sign_in']);
    });

    it('streams every matching row, newest first, past one batch', async () => {
      const rows = Array.from({ length: 1234 }, (_, i) => ({ at: 1_000 + i, actor: 'cli:bulk', action: 'test.bulk', target: `n:${i}`, before: null, after: JSON.stringify({ i }) }));
      await db.database.db.insertInto('audit_log').values(rows).execute();
      const seen: AuditEntry[] = [];
      for await (const entry of log().stream({ action: 'test.bulk' })) seen.push(entry);
      expect(seen).toHaveLength(1234);
      expect(seen[0]).toMatchObject({ target: 'n:1233', after: { i: 1233 }, before: undefined });
      expect(seen.at(-1)).toMatchObject({ target: 'n:0', at: 1_000 });
      expect(new Set(seen.map((e) => e.id)).size).toBe(1234);
    });
  });
}
