import { Migrator, sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { migrations } from '../migrations/index.ts';
import { Agent } from './helpers/agent.ts';
import { createTestDatabase, DIALECTS, type DialectName } from './helpers/databases.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { openSignInForm } from './helpers/sign-in-form.ts';

/**
 * The sign-in form's per-account limit (10 failures in 15 minutes) cannot be sidestepped by typing
 * the address another way. E-mail addresses are compared exactly after trim + lowercase + NFC:
 * a spelling with the same canonical form is the same account (and shares its count); anything
 * else — an accent, a fullwidth or long-s letter that MariaDB's utf8mb4_unicode_ci collation
 * would have folded onto the account — is another address that finds no account at all.
 *
 * Each test has its own portal, so the per-address allowance (50) is never what answers.
 */
const PER_ACCOUNT = 10;
const WRONG = 'not-the-password';
const PASSWORD = 'correct horse battery staple';

/** Spellings that a case-, accent- and width-insensitive collation folds onto stable@example.com. */
const LOOKALIKES_OF_STABLE = ['stáble@example.com', 'ſtable@example.com', 'ｓｔａｂｌｅ@example.com', 'stable@exämple.com', 'STÁBLE@EXAMPLE.COM'];

const running: TestPortal[] = [];
afterEach(async () => {
  for (const portal of running.splice(0)) await portal.stopAll();
});
async function portalOn(dialect: DialectName): Promise<TestPortal> {
  const portal = await startTestPortal({ dialect });
  running.push(portal);
  return portal;
}

for (const dialect of DIALECTS) {
  describe(`e-mail matching at the sign-in form on ${dialect}`, () => {
    it('a locked account stays locked however its address is typed, and look-alike addresses never reach it', async () => {
      const portal = await portalOn(dialect);
      const form = await openSignInForm(new Agent(portal.origin));
      for (let i = 0; i < PER_ACCOUNT; i++) expect(await form.submit('stable@example.com', WRONG)).toBe('refused');
      expect(await form.submit('stable@example.com', DEMO_PASSWORD)).toBe('throttled');
      // The same canonical address: the same account, the same count.
      for (const same of ['STABLE@example.com', '  Stable@Example.COM  ']) expect(await form.submit(same, DEMO_PASSWORD), same).toBe('throttled');
      // Another address: no account behind it, so even the account's right password signs nobody in.
      for (const other of LOOKALIKES_OF_STABLE) expect(await form.submit(other, DEMO_PASSWORD), other).toBe('refused');
      expect(await form.submit('stable@example.com', DEMO_PASSWORD)).toBe('throttled');
      expect(await portal.portal.users.localAccount('stáble@example.com')).toBeUndefined();
    });

    it('matches an accented address whichever Unicode form it is typed in, and shares one count between the forms', async () => {
      const portal = await portalOn(dialect);
      const composed = 'ren\u00e9@example.com'; // é as one code point (NFC)
      const decomposed = 'rene\u0301@example.com'; // e + combining acute (NFD)
      await portal.portal.admin.addLocalUser('test', { email: decomposed, password: PASSWORD });
      expect((await portal.portal.users.byEmail(composed)).map((u) => u.email)).toEqual([composed]);

      for (const typed of [composed, decomposed, 'RENE\u0301@Example.com']) {
        expect(await (await openSignInForm(new Agent(portal.origin))).submit(typed, PASSWORD), typed).toBe('signed-in');
      }
      expect(await (await openSignInForm(new Agent(portal.origin))).submit('rene@example.com', PASSWORD)).toBe('refused');

      const form = await openSignInForm(new Agent(portal.origin));
      for (let i = 0; i < PER_ACCOUNT; i++) expect(await form.submit(i % 2 ? composed : decomposed, WRONG)).toBe('refused');
      expect(await form.submit(composed, PASSWORD)).toBe('throttled');
      expect(await form.submit(decomposed, PASSWORD)).toBe('throttled');
    });

    it('counts an unknown address by its canonical form', async () => {
      const portal = await portalOn(dialect);
      const form = await openSignInForm(new Agent(portal.origin));
      for (let i = 0; i < PER_ACCOUNT; i++) expect(await form.submit(i % 2 ? 'ghost@example.com' : ' GHOST@example.com', WRONG)).toBe('refused');
      expect(await form.submit('Ghost@Example.com', WRONG)).toBe('throttled');
      // A different address has an allowance of its own (and no account either).
      expect(await form.submit('ghóst@example.com', WRONG)).toBe('refused');
      // The accounts that do exist are untouched by all this.
      expect(await (await openSignInForm(new Agent(portal.origin))).submit('stable@example.com', DEMO_PASSWORD)).toBe('signed-in');
    });
  });
}

for (const dialect of DIALECTS) {
  describe(`the exact-email migration on ${dialect}`, () => {
    it('rewrites stored addresses into the canonical form and leaves the database comparing exactly', async () => {
      const testDb = await createTestDatabase(dialect);
      const database = await openDatabase(testDb.target);
      try {
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrations } });
        expect((await migrator.migrateTo('20261123T140000_session_idp_sid')).error).toBeUndefined();
        const row = (sub: string, email: string | null) => ({ sub, email, name: null, picture: null, created_at: 1, updated_at: 1, last_login_at: null, profile: '{}', password_hash: 'x', disabled_at: null });
        await database.db
          .insertInto('users')
          .values([row('decomposed', ' Rene\u0301@Example.com '), row('plain', 'stable@example.com'), row('none', null), row('blank', '   ')])
          .execute();
        expect(await migrateToLatest(database)).toEqual(['20261201T120000_exact_email', '20261201T150000_password_resets', '20261201T170000_timed_memberships', '20261202T100000_provider_identities', '20261202T110000_second_factors', '20261202T120000_recent_apps']);

        const emails = await database.db.selectFrom('users').select(['sub', 'email']).orderBy('sub').execute();
        expect(emails).toEqual([
          { sub: 'blank', email: null },
          { sub: 'decomposed', email: 'ren\u00e9@example.com' },
          { sub: 'none', email: null },
          { sub: 'plain', email: 'stable@example.com' },
        ]);
        // The database itself, not only the code in front of it, tells look-alikes apart.
        for (const lookalike of LOOKALIKES_OF_STABLE.map((e) => e.toLowerCase()).concat('STABLE@example.com')) {
          const found = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM users WHERE email = ${lookalike}`.execute(database.db);
          expect(Number(found.rows[0]!.n), lookalike).toBe(0);
        }
      } finally {
        await database.close();
        await testDb.drop();
      }
    });

    it('stops, naming them and changing nothing, when two local accounts would share one address', async () => {
      const testDb = await createTestDatabase(dialect);
      const database = await openDatabase(testDb.target);
      try {
        const migrator = new Migrator({ db: database.db, provider: { getMigrations: async () => migrations } });
        expect((await migrator.migrateTo('20261123T140000_session_idp_sid')).error).toBeUndefined();
        const row = (sub: string, email: string, password: string | null) => ({ sub, email, name: null, picture: null, created_at: 1, updated_at: 1, last_login_at: null, profile: '{}', password_hash: password, disabled_at: null });
        // A composed and a decomposed accent: two accounts the old comparison kept apart on SQLite.
        // A provider's user with the same address is no clash (provider users are keyed by sub).
        await database.db
          .insertInto('users')
          .values([row('older', 'ren\u00e9@example.com', 'x'), row('newer', 'rene\u0301@example.com', 'y'), row('from-provider', 'Ren\u00e9@example.com', null)])
          .execute();
        const ids = (await database.db.selectFrom('users').select(['id', 'sub']).orderBy('id').execute()).map((r) => r.id);
        await expect(migrateToLatest(database)).rejects.toThrow(`rené@example.com (user ids ${ids[0]}, ${ids[1]})`);
        const after = await database.db.selectFrom('users').select('email').orderBy('id').execute();
        expect(after.map((r) => r.email)).toEqual(['ren\u00e9@example.com', 'rene\u0301@example.com', 'Ren\u00e9@example.com']);
      } finally {
        await database.close();
        await testDb.drop();
      }
    });
  });
}
