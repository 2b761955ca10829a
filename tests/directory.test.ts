import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import type { Database } from '../lib/db/schema.ts';
import { AccessIndex } from '../lib/directory/access.ts';
import { CycleError, GroupDirectory } from '../lib/directory/groups.ts';
import { verifyPassword } from '../lib/directory/passwords.ts';
import { readRevision } from '../lib/directory/revision.ts';
import { UserDirectory } from '../lib/directory/users.ts';
import { createTestDatabase, DIALECTS, type TestDatabase } from './helpers/databases.ts';

for (const dialect of DIALECTS) {
  describe(`directory on ${dialect}`, () => {
    let testDb: TestDatabase;
    let database: Database;
    let users: UserDirectory;
    let groups: GroupDirectory;
    beforeAll(async () => {
      testDb = await createTestDatabase(dialect);
      database = await openDatabase(testDb.target);
      expect(await migrateToLatest(database)).toEqual(['20261123T120000_initial', '20261123T130000_directory_admin', '20261123T140000_session_idp_sid', '20261201T120000_exact_email', '20261201T150000_password_resets', '20261201T170000_timed_memberships', '20261202T100000_provider_identities', '20261202T110000_second_factors', '20261202T120000_recent_apps']);
      expect(await migrateToLatest(database)).toEqual([]); // idempotent
      users = new UserDirectory(database);
      groups = new GroupDirectory(database);
    });
    afterAll(async () => {
      await database?.close();
      await testDb?.drop();
    });

    const user = async (sub: string) => users.recordLogin({ sub, email: `${sub}@example.com`, name: sub });
    const levelOf = async (id: number) => (await AccessIndex.load(database)).grantFor(id);

    it('ships the four built-in groups nested admin ⊂ devel ⊂ ea ⊂ stable', async () => {
      expect((await groups.list()).filter((g) => g.builtin).map((g) => [g.name, g.level])).toEqual([
        ['admin', 'admin'],
        ['devel', 'devel'],
        ['ea', 'ea'],
        ['stable', 'stable'],
      ]);
      expect(await groups.edges()).toEqual([
        { parent: 'devel', child: 'admin' },
        { parent: 'ea', child: 'devel' },
        { parent: 'stable', child: 'ea' },
      ]);
      const admin = await user('builtin-admin');
      await groups.addMember('admin', admin.id);
      expect(await levelOf(admin.id)).toEqual({ groups: ['admin', 'devel', 'ea', 'stable'], level: 'admin' });
    });

    it('upserts logins: counts them, refreshes provider fields, never touches the profile', async () => {
      const first = await users.recordLogin({ sub: 'sync-1', email: 'First@Example.com', name: 'First', picture: 'https://x/p.png' }, 1000);
      expect(first).toMatchObject({ email: 'first@example.com', loginCount: 1, lastLoginAt: 1000, profile: {} });
      await database.db.updateTable('users').set({ profile: JSON.stringify({ team: 'blue' }) }).where('id', '=', first.id).execute();
      const second = await users.recordLogin({ sub: 'sync-1', email: 'renamed@example.com', name: undefined }, 2000);
      expect(second).toMatchObject({ id: first.id, email: 'renamed@example.com', name: 'First', picture: 'https://x/p.png', loginCount: 2, lastLoginAt: 2000, profile: { team: 'blue' } });
      expect(second.createdAt).toBe(1000);
    });

    it('clips oversized provider claims instead of failing the login', async () => {
      const u = await users.recordLogin({ sub: 'huge', email: `${'a'.repeat(400)}@x.com`, name: 'n'.repeat(1000), picture: `https://x/${'p'.repeat(5000)}` });
      expect(u.email!.length).toBe(320);
      expect(u.name!.length).toBe(255);
      expect(u.picture!.length).toBe(2048);
    });

    it('survives concurrent first logins of the same user', async () => {
      const results = await Promise.all(Array.from({ length: 8 }, () => users.recordLogin({ sub: 'racer', email: 'racer@example.com' })));
      expect(new Set(results.map((r) => r.id)).size).toBe(1);
      expect((await users.bySub('racer'))!.loginCount).toBe(8);
    });

    it('keeps local passwords scrypt-hashed', async () => {
      const local = await users.createLocal({ email: ' Local@Example.com ', password: 'correct horse' });
      const found = await users.localAccount('local@example.com');
      expect(found!.passwordHash).toMatch(/^scrypt\$16384\$8\$1\$/);
      expect(found!.passwordHash).not.toContain('correct horse');
      expect(await verifyPassword('correct horse', found!.passwordHash)).toBe(true);
      expect(await verifyPassword('wrong', found!.passwordHash)).toBe(false);
      expect(await verifyPassword('correct horse', undefined)).toBe(false);
      expect(await verifyPassword('x', 'scrypt$garbage')).toBe(false);
      expect(local.local).toBe(true);
    });

    it('resolves deep chains, diamonds and wide trees', async () => {
      // chain: c0 ⊂ c1 ⊂ … ⊂ c19 ⊂ devel
      for (let i = 0; i < 20; i++) await groups.create({ name: `chain-${i}` });
      for (let i = 0; i < 19; i++) await groups.nest(`chain-${i}`, `chain-${i + 1}`);
      await groups.nest('chain-19', 'devel');
      const deep = await user('deep');
      await groups.addMember('chain-0', deep.id);
      const deepGrant = await levelOf(deep.id);
      expect(deepGrant.level).toBe('devel');
      expect(deepGrant.groups).toHaveLength(20 + 3);
      expect(deepGrant.groups).toContain('stable');

      // diamond: d-bottom ⊂ d-left, d-right ⊂ d-top (level ea)
      await groups.create({ name: 'd-top', level: 'ea' });
      for (const g of ['d-left', 'd-right', 'd-bottom']) await groups.create({ name: g });
      await groups.nest('d-left', 'd-top');
      await groups.nest('d-right', 'd-top');
      await groups.nest('d-bottom', 'd-left');
      await groups.nest('d-bottom', 'd-right');
      const diamond = await user('diamond');
      await groups.addMember('d-bottom', diamond.id);
      expect(await levelOf(diamond.id)).toEqual({ groups: ['d-bottom', 'd-left', 'd-right', 'd-top'], level: 'ea' });

      // wide: 50 children of one parent, a user in each of several
      await groups.create({ name: 'wide-root', level: 'stable' });
      for (let i = 0; i < 50; i++) {
        await groups.create({ name: `wide-${i}` });
        await groups.nest(`wide-${i}`, 'wide-root');
      }
      const wide = await user('wide');
      for (const i of [3, 17, 42]) await groups.addMember(`wide-${i}`, wide.id);
      expect(await levelOf(wide.id)).toEqual({ groups: ['wide-17', 'wide-3', 'wide-42', 'wide-root'], level: 'stable' });
    });

    it('refuses cycles and names them', async () => {
      for (const g of ['cy-a', 'cy-b', 'cy-c']) await groups.create({ name: g });
      await groups.nest('cy-a', 'cy-b');
      await groups.nest('cy-b', 'cy-c');
      const err = await groups.nest('cy-c', 'cy-a').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CycleError);
      expect((err as CycleError).cycle).toEqual(['cy-c', 'cy-a', 'cy-b', 'cy-c']);
      expect((err as CycleError).message).toContain('cy-c ⊂ cy-a ⊂ cy-b ⊂ cy-c');
      await expect(groups.nest('cy-a', 'cy-a')).rejects.toBeInstanceOf(CycleError);
      // The built-in order cannot be turned around either.
      await expect(groups.nest('stable', 'admin')).rejects.toBeInstanceOf(CycleError);
      expect((await groups.edges()).some((e) => e.parent === 'cy-a' && e.child === 'cy-c')).toBe(false);
    });

    it('refuses concurrent nestings that would together make a cycle', async () => {
      await groups.create({ name: 'race-x' });
      await groups.create({ name: 'race-y' });
      const results = await Promise.allSettled([groups.nest('race-x', 'race-y'), groups.nest('race-y', 'race-x')]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      expect(results.filter((r) => r.status === 'rejected')).toHaveLength(1);
    });

    it('protects the built-in groups', async () => {
      await expect(groups.remove('admin')).rejects.toMatchObject({ status: 409, code: 'builtin_group' });
      await expect(groups.unnest('admin', 'devel')).rejects.toMatchObject({ status: 409, code: 'builtin_nesting' });
      await expect(groups.update('ea', { name: 'beta' })).rejects.toMatchObject({ code: 'builtin_group' });
      await expect(groups.update('ea', { level: 'admin' })).rejects.toMatchObject({ code: 'builtin_group' });
    });

    it('validates names, and renames, describes, un-nests and deletes custom groups', async () => {
      for (const bad of ['', 'Upper', '-dash', 'a b', 'x'.repeat(101), '../etc', 'é']) {
        await expect(groups.create({ name: bad })).rejects.toMatchObject({ status: 400 });
      }
      await expect(groups.create({ name: 'ok', level: 'root' as never })).rejects.toMatchObject({ status: 400 });
      await groups.create({ name: 'temp', description: 'first' });
      await expect(groups.create({ name: 'temp' })).rejects.toMatchObject({ status: 409 });
      await groups.update('temp', { name: 'temp2', description: 'second', level: 'ea' });
      expect(await groups.byName('temp2')).toMatchObject({ description: 'second', level: 'ea' });
      await groups.nest('temp2', 'stable');
      await groups.unnest('temp2', 'stable');
      await expect(groups.unnest('temp2', 'stable')).rejects.toMatchObject({ status: 404 });
      const member = await user('temp-member');
      await groups.addMember('temp2', member.id);
      await groups.addMember('temp2', member.id); // twice is fine
      expect((await groups.members('temp2')).map((m) => m.sub)).toEqual(['temp-member']);
      expect((await levelOf(member.id)).level).toBe('ea');
      await groups.remove('temp2');
      expect(await levelOf(member.id)).toEqual({ groups: [], level: null });
      await expect(groups.byName('temp2')).rejects.toMatchObject({ status: 404 });
    });

    it('bumps the revision on every change, and concurrent membership changes all land', async () => {
      const before = Number(await readRevision(database));
      const people = await Promise.all(Array.from({ length: 12 }, (_, i) => user(`crowd-${i}`)));
      await Promise.all(people.map((p, i) => groups.addMember(i % 2 ? 'ea' : 'devel', p.id)));
      await Promise.all(people.slice(0, 4).map((p, i) => groups.removeMember(i % 2 ? 'ea' : 'devel', p.id)));
      const after = Number(await readRevision(database));
      expect(after).toBe(before + 16);
      const index = await AccessIndex.load(database);
      expect(people.map((p) => index.grantFor(p.id).level)).toEqual([null, null, null, null, 'devel', 'ea', 'devel', 'ea', 'devel', 'ea', 'devel', 'ea']);
    });
  });
}
