import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../../lib/db/database.ts';
import { migrateToLatest } from '../../lib/db/migrate.ts';
import type { Database } from '../../lib/db/schema.ts';
import { SqlSessionStore } from '../../lib/sessions/sql-store.ts';

/**
 * The SQL store's edges on a migrated in-memory SQLite database, with the clock held still.
 * tests/session-stores.test.ts runs the shared contract on SQLite and MariaDB.
 */
const T = 1_750_000_000_000;
let database: Database;
let store: SqlSessionStore;

beforeAll(async () => {
  database = await openDatabase({ kind: 'sqlite', file: ':memory:' });
  await migrateToLatest(database);
  store = new SqlSessionStore(database);
  vi.useFakeTimers({ toFake: ['Date'] });
});
afterEach(() => {
  vi.setSystemTime(T);
});
afterAll(async () => {
  vi.useRealTimers();
  await database?.close();
});

const row = (id: string) => database.db.selectFrom('sessions').selectAll().where('id', '=', id).executeTakeFirst();

describe('SqlSessionStore', () => {
  it('stores the data, the expiry and the index columns', async () => {
    vi.setSystemTime(T);
    await store.set('s-1', { sub: 'u1', n: 1 }, 60_000, { subject: 'u1', idpSid: 'sid-1' });
    expect(await row('s-1')).toMatchObject({ id: 's-1', user_sub: 'u1', idp_sid: 'sid-1', expires_at: T + 60_000 });
    expect(JSON.parse((await row('s-1'))!.data)).toEqual({ sub: 'u1', n: 1 });
    expect(await store.get('s-1')).toEqual({ data: { sub: 'u1', n: 1 }, expiresAt: T + 60_000 });
    await store.set('s-2', {}, 60_000, { subject: null });
    expect(await row('s-2')).toMatchObject({ user_sub: null, idp_sid: null });
    // A second set replaces every column.
    await store.set('s-1', { n: 2 }, 30_000, { subject: 'u9' });
    expect(await row('s-1')).toMatchObject({ user_sub: 'u9', idp_sid: null, expires_at: T + 30_000 });
  });

  it('reads a session until the millisecond it expires, not at it', async () => {
    vi.setSystemTime(T);
    await store.set('exp', { v: 1 }, 1_000, { subject: 'exp-user', idpSid: 'exp-sid' });
    vi.setSystemTime(T + 999);
    expect((await store.get('exp'))?.data).toEqual({ v: 1 });
    expect(await store.idsBySubject('exp-user')).toEqual(['exp']);
    expect(await store.idsByIdpSession('exp-sid')).toEqual(['exp']);
    vi.setSystemTime(T + 1_000);
    expect(await store.get('exp')).toBeUndefined();
    expect(await store.idsBySubject('exp-user')).toEqual([]);
    expect(await store.idsByIdpSession('exp-sid')).toEqual([]);
    expect(await store.take('exp')).toBeUndefined();
    expect(await row('exp')).toBeDefined(); // not swept yet: only its expiry says it ended
  });

  it('updates only a live session, keeping the index in step', async () => {
    vi.setSystemTime(T);
    await store.set('upd', { v: 1 }, 1_000, { subject: 'a' });
    vi.setSystemTime(T + 999);
    expect(await store.update('upd', { v: 2 }, 5_000, { subject: 'b', idpSid: 'sid-b' })).toBe(true);
    expect(await row('upd')).toMatchObject({ user_sub: 'b', idp_sid: 'sid-b', expires_at: T + 999 + 5_000 });
    expect((await store.get('upd'))?.data).toEqual({ v: 2 });
    vi.setSystemTime(T + 999 + 5_000);
    expect(await store.update('upd', { v: 3 }, 60_000, { subject: 'b' })).toBe(false);
    expect(JSON.parse((await row('upd'))!.data)).toEqual({ v: 2 });
    expect(await store.update('never-set', { v: 1 }, 60_000, { subject: null })).toBe(false);
  });

  it('treats a row it cannot read as no session', async () => {
    vi.setSystemTime(T);
    await database.db.insertInto('sessions').values({ id: 'corrupt', user_sub: 'c', idp_sid: null, data: '{not json', expires_at: T + 60_000 }).execute();
    expect(await store.get('corrupt')).toBeUndefined();
    expect(await store.take('corrupt')).toBeUndefined();
  });

  it('hands a taken session out once, and deletes it', async () => {
    vi.setSystemTime(T);
    await store.set('take', { code: 1 }, 60_000, { subject: null });
    expect(await store.take('take')).toEqual({ data: { code: 1 }, expiresAt: T + 60_000 });
    expect(await row('take')).toBeUndefined();
    expect(await store.take('take')).toBeUndefined();
  });

  it('gives a taken session to no one when another taker deleted it first', async () => {
    vi.setSystemTime(T);
    await store.set('race', { code: 1 }, 60_000, { subject: null });
    // Another taker deletes the row between this one's read and its delete.
    const racing = new SqlSessionStore(database);
    const get = racing.get.bind(racing);
    racing.get = async (id) => {
      const found = await get(id);
      await database.db.deleteFrom('sessions').where('id', '=', id).execute();
      return found;
    };
    expect(await racing.take('race')).toBeUndefined();
  });

  it('destroys one session, or every session of a subject, counting them', async () => {
    vi.setSystemTime(T);
    await store.set('d-1', {}, 60_000, { subject: 'del' });
    await store.set('d-2', {}, 60_000, { subject: 'del' });
    await store.set('d-3', {}, 60_000, { subject: 'keep' });
    await store.destroy('d-3');
    expect(await row('d-3')).toBeUndefined();
    expect(await store.destroyBySubject('del')).toBe(2);
    expect(await store.destroyBySubject('del')).toBe(0);
    expect(await row('d-1')).toBeUndefined();
  });

  it('sweeps the sessions expired by the given time (or now), and counts them', async () => {
    await database.db.deleteFrom('sessions').execute();
    vi.setSystemTime(T);
    await store.set('w-1', {}, 1_000, { subject: null });
    await store.set('w-2', {}, 2_000, { subject: null });
    await store.set('w-3', {}, 3_000, { subject: null });
    expect(await store.sweep(T + 999)).toBe(0);
    expect(await store.sweep(T + 1_000)).toBe(1);
    expect(await row('w-2')).toBeDefined();
    vi.setSystemTime(T + 2_000);
    expect(await store.sweep()).toBe(1);
    expect(await row('w-3')).toBeDefined();
  });
});
