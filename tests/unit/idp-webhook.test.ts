import { createHmac } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDatabase } from '../../lib/db/database.ts';
import { migrateToLatest } from '../../lib/db/migrate.ts';
import type { Database } from '../../lib/db/schema.ts';
import type { DirectoryAdmin } from '../../lib/directory/admin.ts';
import { AuditLog } from '../../lib/directory/audit.ts';
import { UserDirectory } from '../../lib/directory/users.ts';
import { AtriumError, BadRequestError, PayloadTooLargeError, UnauthenticatedError } from '../../lib/errors.ts';
import { applyWebhookEvent, MAX_BODY_BYTES, parseWebhookEvent, readLimitedBody, REPLAY_WINDOW_SECONDS, signWebhook, verifyWebhook, type WebhookEvent } from '../../lib/hooks/idp-webhook.ts';

/**
 * The wire format, as README documents it, computed here with node:crypto alone:
 *   X-Atrium-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the secret>
 */
const SECRET = 'unit-test-hook-secret-0123456789abcdef';
const documented = (timestamp: string | number, body: string | Buffer, secret = SECRET) =>
  `sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`;

const NOW_S = 1_750_000_000;
const NOW_MS = NOW_S * 1000;
const BODY = Buffer.from('{"id":"evt-1","type":"user.created","user":{"sub":"s1"}}');

function verifyError(input: { timestamp: string | undefined; signature: string | undefined; body?: Buffer; now?: number; secret?: string }): UnauthenticatedError | undefined {
  try {
    verifyWebhook({ secret: input.secret ?? SECRET, timestamp: input.timestamp, signature: input.signature, body: input.body ?? BODY, now: input.now ?? NOW_MS });
    return undefined;
  } catch (err) {
    if (!(err instanceof UnauthenticatedError)) throw new Error(`verifyWebhook threw something else: ${String(err)}`);
    return err;
  }
}

describe('signWebhook', () => {
  it('produces the documented signature', () => {
    expect(REPLAY_WINDOW_SECONDS).toBe(300);
    expect(signWebhook(SECRET, NOW_S, BODY.toString())).toBe(documented(NOW_S, BODY));
    expect(signWebhook(SECRET, NOW_S, BODY.toString())).toMatch(/^sha256=[0-9a-f]{64}$/);
  });
});

describe('verifyWebhook', () => {
  it('accepts a delivery signed over "<timestamp>.<raw body>", inside the window on either side', () => {
    expect(verifyError({ timestamp: String(NOW_S), signature: documented(NOW_S, BODY) })).toBeUndefined();
    for (const skew of [-300, -299, 299, 300]) {
      const t = String(NOW_S + skew);
      expect(verifyError({ timestamp: t, signature: documented(t, BODY) }), `skew ${skew}`).toBeUndefined();
    }
    // Within the window by the millisecond clock, not only by whole seconds.
    expect(verifyError({ timestamp: String(NOW_S), signature: documented(NOW_S, BODY), now: NOW_MS + 300_000 })).toBeUndefined();
    expect(verifyError({ timestamp: String(NOW_S), signature: documented(NOW_S, BODY), now: NOW_MS + 300_001 })?.code).toBe('stale_signature');
  });

  it('uses the clock when no time is given', () => {
    const t = String(Math.floor(Date.now() / 1000));
    expect(() => verifyWebhook({ secret: SECRET, timestamp: t, signature: documented(t, BODY), body: BODY })).not.toThrow();
    const old = String(Math.floor(Date.now() / 1000) - 3600);
    expect(() => verifyWebhook({ secret: SECRET, timestamp: old, signature: documented(old, BODY), body: BODY })).toThrow(/too old or from the future/);
  });

  it('refuses a delivery without either header', () => {
    for (const [timestamp, signature] of [[undefined, documented(NOW_S, BODY)], [String(NOW_S), undefined], [undefined, undefined], ['', documented(NOW_S, BODY)], [String(NOW_S), '']] as const) {
      const err = verifyError({ timestamp, signature });
      expect(err?.code).toBe('signature_missing');
      expect(err?.status).toBe(401);
      expect(err?.message).toBe('Missing X-Atrium-Timestamp or X-Atrium-Signature.');
    }
  });

  it('refuses a timestamp that is not plain unix seconds, even when signed over it', () => {
    for (const t of [`x${NOW_S}`, `${NOW_S}x`, ` ${NOW_S}`, `${NOW_S} `, `${NOW_S}.5`, `-${NOW_S}`, '1e9', '0x68000000', 'NaN', '1234567890123', `${NOW_S}\n`]) {
      const err = verifyError({ timestamp: t, signature: documented(t, BODY) });
      expect(err?.code, JSON.stringify(t)).toBe('bad_timestamp');
      expect(err?.message).toBe('X-Atrium-Timestamp must be unix seconds.');
    }
  });

  it('accepts twelve digits but not thirteen (then the window refuses it)', () => {
    expect(verifyError({ timestamp: '000000000001', signature: documented('000000000001', BODY), now: 1000 })).toBeUndefined();
    expect(verifyError({ timestamp: '1', signature: documented('1', BODY), now: 1000 })).toBeUndefined();
  });

  it('refuses a delivery outside the five-minute window, in the past or the future', () => {
    for (const skew of [-301, 301, -86_400, 86_400]) {
      const t = String(NOW_S + skew);
      const err = verifyError({ timestamp: t, signature: documented(t, BODY) });
      expect(err?.code, `skew ${skew}`).toBe('stale_signature');
      expect(err?.message).toBe('The signature is too old or from the future; sign each delivery afresh.');
    }
  });

  it('refuses a signature that does not match the body, the timestamp or the secret', () => {
    const t = String(NOW_S);
    const cases = [
      documented(t, Buffer.from(`${BODY.toString()} `)),
      documented(String(NOW_S - 1), BODY),
      documented(t, BODY, 'another-secret-of-the-same-length-01234'),
      documented(t, BODY).toUpperCase(),
      documented(t, BODY).replace('sha256=', 'sha512='),
      documented(t, BODY).replace('sha256=', ''),
      `${documented(t, BODY)}0`,
      documented(t, BODY).slice(0, -1),
      'sha256=',
      `sha256=${createHmac('sha256', SECRET).update(BODY).digest('hex')}`,
      `sha256=${createHmac('sha256', SECRET).update(`${t}${BODY.toString()}`).digest('hex')}`,
      `sha256=${createHmac('sha256', SECRET).update(`${t}.${BODY.toString()}`).digest('base64')}`,
    ];
    for (const signature of cases) {
      const err = verifyError({ timestamp: t, signature });
      expect(err?.code, signature).toBe('bad_signature');
      expect(err?.message).toBe('The signature does not match the body.');
    }
  });

  it('signs the raw bytes, not a re-encoding of them', () => {
    const raw = Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]); // invalid UTF-8 inside
    const t = String(NOW_S);
    expect(verifyError({ timestamp: t, signature: documented(t, raw), body: raw })).toBeUndefined();
    expect(verifyError({ timestamp: t, signature: documented(t, raw.toString('utf8')), body: raw })?.code).toBe('bad_signature');
  });
});

describe('parseWebhookEvent', () => {
  const parse = (value: unknown) => parseWebhookEvent(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)));
  const problem = (value: unknown): BadRequestError => {
    try {
      parse(value);
    } catch (err) {
      if (err instanceof BadRequestError) return err;
      throw err;
    }
    throw new Error(`${JSON.stringify(value)} was accepted`);
  };
  const user = { sub: 'auth0|1', email: 'a@corp.example', name: 'A', picture: 'https://img.example/a.png' };

  it('reads the three event types, and strips what it does not know', () => {
    for (const type of ['user.created', 'user.updated', 'user.deleted'] as const) {
      expect(parse({ id: 'e', type, user, extra: 1 })).toEqual({ id: 'e', type, user });
    }
    expect(parse({ id: 'e', type: 'user.updated', user: { sub: 's', role: 'admin', level: 'admin' } })).toEqual({ id: 'e', type: 'user.updated', user: { sub: 's' } });
    expect(parse({ id: 'e', type: 'user.updated', user: { sub: 's', email: null, name: null, picture: null } }).user).toEqual({ sub: 's', email: null, name: null, picture: null });
  });

  it('refuses a body that is not JSON', () => {
    for (const body of ['', '{', 'not json', '{"id":1,}']) {
      const err = problem(body);
      expect(err.code).toBe('malformed_json');
      expect(err.message).toBe('The body is not valid JSON.');
    }
  });

  it('refuses other events and bad fields, naming where the problem is', () => {
    const cases: [unknown, RegExp][] = [
      [5, /: body: /],
      [null, /: body: /],
      [{ id: 'e', type: 'user.promoted', user }, /type: /],
      [{ id: '', type: 'user.created', user }, /id: /],
      [{ id: 'e'.repeat(201), type: 'user.created', user }, /id: /],
      [{ type: 'user.created', user }, /id: /],
      [{ id: 'e', type: 'user.created' }, /user: /],
      [{ id: 'e', type: 'user.created', user: { sub: '' } }, /user\.sub: /],
      [{ id: 'e', type: 'user.created', user: { sub: 's'.repeat(256) } }, /user\.sub: /],
      [{ id: 'e', type: 'user.created', user: { sub: 's', email: 'e'.repeat(321) } }, /user\.email: /],
      [{ id: 'e', type: 'user.created', user: { sub: 's', name: 'n'.repeat(256) } }, /user\.name: /],
      [{ id: 'e', type: 'user.created', user: { sub: 's', picture: 'p'.repeat(2049) } }, /user\.picture: /],
      [{ id: 'e', type: 'user.created', user: { sub: 's', email: 7 } }, /user\.email: /],
    ];
    for (const [value, where] of cases) {
      const err = problem(value);
      expect(err.code, JSON.stringify(value).slice(0, 80)).toBe('unknown_event');
      expect(err.message).toMatch(/^The event is not one Atrium understands: /);
      expect(err.message).toMatch(where);
    }
    // Several problems are listed together.
    expect(problem({ id: '', type: 'x', user }).message).toMatch(/id: .*; type: /);
  });

  it('accepts each field at its longest', () => {
    const longest = { id: 'e'.repeat(200), type: 'user.created', user: { sub: 's'.repeat(255), email: 'e'.repeat(320), name: 'n'.repeat(255), picture: 'p'.repeat(2048) } };
    expect(parse(longest)).toEqual(longest);
  });
});

describe('readLimitedBody', () => {
  const chunks = (...sizes: number[]) => Readable.from(sizes.map((n, i) => Buffer.alloc(n, 97 + i)));

  it('reads the whole body up to the limit', async () => {
    expect(MAX_BODY_BYTES).toBe(65_536);
    const body = await readLimitedBody(chunks(3, 2, 5), 10);
    expect(body.toString()).toBe('aaabbccccc');
    expect((await readLimitedBody(chunks(10), 10, 10)).length).toBe(10);
    expect((await readLimitedBody(Readable.from([]), 10)).length).toBe(0);
  });

  it('refuses a body that grows past the limit', async () => {
    const err = await readLimitedBody(chunks(6, 5), 10).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect((err as AtriumError).status).toBe(413);
    expect((err as Error).message).toBe('The body is larger than 10 bytes.');
    await expect(readLimitedBody(chunks(11), 10, 5)).rejects.toBeInstanceOf(PayloadTooLargeError);
  });

  it('refuses a declared length past the limit without reading anything', async () => {
    let read = false;
    const stream = new Readable({
      read() {
        read = true;
        this.push(null);
      },
    });
    const err = await readLimitedBody(stream, 10, 11).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect((err as Error).message).toBe('The body is larger than 10 bytes.');
    expect(read).toBe(false);
    expect((await readLimitedBody(chunks(4), 10, 10)).length).toBe(4);
  });
});

describe('applyWebhookEvent', () => {
  let database: Database;
  let users: UserDirectory;
  let audit: AuditLog;
  const disabled: { actor: string; id: number | string; disabled: boolean }[] = [];
  /** The directory admin's one method the webhook uses, recorded; it disables through the real directory. */
  const admin = {
    async setDisabled(actor: string, id: number, value: boolean) {
      disabled.push({ actor, id, disabled: value });
      await users.setDisabled(id, value);
    },
  } as unknown as DirectoryAdmin;
  const deps = () => ({ database, users, admin, audit });

  beforeAll(async () => {
    database = await openDatabase({ kind: 'sqlite', file: ':memory:' });
    await migrateToLatest(database);
    users = new UserDirectory(database);
    audit = new AuditLog(database);
  });
  afterAll(async () => {
    await database?.close();
  });

  const auditRows = () => database.db.selectFrom('audit_log').selectAll().orderBy('id').execute();
  const eventIds = async () => (await database.db.selectFrom('webhook_events').select('id').orderBy('id').execute()).map((r) => r.id);
  const event = (id: string, type: WebhookEvent['type'], user: WebhookEvent['user']): WebhookEvent => ({ id, type, user });

  /** The database, except that recording a webhook event fails with `error`. */
  const failingEventInsert = (error: Error) =>
    new Proxy(database.db, {
      get(target, property) {
        if (property === 'insertInto') {
          return (table: string) => (table === 'webhook_events' ? { values: () => ({ execute: () => Promise.reject(error) }) } : target.insertInto(table as never));
        }
        const value = Reflect.get(target, property) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });

  it('creates a user, audits it as the webhook, and records the event id', async () => {
    // A fixed clock: the stored receipt time is exactly "now", not a range around it.
    const now = Date.parse('2026-12-01T12:00:00Z');
    vi.useFakeTimers({ toFake: ['Date'], now });
    const outcome = await applyWebhookEvent(deps(), event('c-1', 'user.created', { sub: 'hook|1', email: 'one@corp.example', name: 'One', picture: null }));
    expect(outcome).toBe('applied');
    expect(await users.bySub('hook|1')).toMatchObject({ email: 'one@corp.example', name: 'One' });
    const rows = await auditRows();
    expect(rows.at(-1)).toMatchObject({ actor: 'webhook:idp', action: 'user.sync_create', target: 'user:one@corp.example', before: null });
    expect(JSON.parse(rows.at(-1)!.after!)).toEqual({ email: 'one@corp.example', name: 'One', picture: null });
    const stored = await database.db.selectFrom('webhook_events').selectAll().where('id', '=', 'c-1').executeTakeFirstOrThrow();
    vi.useRealTimers();
    expect(stored.received_at).toBe(now);
  });

  it('treats a repeated event id as a no-op', async () => {
    const auditBefore = (await auditRows()).length;
    const outcome = await applyWebhookEvent(deps(), event('c-1', 'user.updated', { sub: 'hook|1', email: 'changed@corp.example' }));
    expect(outcome).toBe('duplicate');
    expect((await users.bySub('hook|1'))?.email).toBe('one@corp.example');
    expect((await auditRows()).length).toBe(auditBefore);
  });

  it('updates a known user, auditing what it was and what it became', async () => {
    const outcome = await applyWebhookEvent(deps(), event('u-1', 'user.updated', { sub: 'hook|1', email: 'one@corp.example', name: 'One Renamed', picture: 'https://img.example/1.png' }));
    expect(outcome).toBe('applied');
    const last = (await auditRows()).at(-1)!;
    expect(last).toMatchObject({ actor: 'webhook:idp', action: 'user.sync_update', target: 'user:one@corp.example' });
    expect(JSON.parse(last.before!)).toEqual({ email: 'one@corp.example', name: 'One', picture: null });
    expect(JSON.parse(last.after!)).toEqual({ email: 'one@corp.example', name: 'One Renamed', picture: 'https://img.example/1.png' });
  });

  it('names a user without an email by subject in the audit log', async () => {
    await applyWebhookEvent(deps(), event('c-2', 'user.created', { sub: 'hook|no-mail' }));
    expect((await auditRows()).at(-1)).toMatchObject({ action: 'user.sync_create', target: 'user:hook|no-mail' });
  });

  it('disables a deleted user (keeping the row) once, and ignores one it does not know', async () => {
    const user = (await users.bySub('hook|1'))!;
    disabled.length = 0;
    expect(await applyWebhookEvent(deps(), event('d-1', 'user.deleted', { sub: 'hook|1' }))).toBe('applied');
    expect(disabled).toEqual([{ actor: 'webhook:idp', id: user.id, disabled: true }]);
    expect((await users.bySub('hook|1'))?.disabled).toBe(true);
    // Already disabled: nothing more to do, but the event is still one that was applied.
    expect(await applyWebhookEvent(deps(), event('d-2', 'user.deleted', { sub: 'hook|1' }))).toBe('applied');
    expect(disabled).toHaveLength(1);
    expect(await applyWebhookEvent(deps(), event('d-3', 'user.deleted', { sub: 'hook|nobody' }))).toBe('ignored');
    expect(disabled).toHaveLength(1);
    expect(await users.bySub('hook|nobody')).toBeUndefined();
    // Each is recorded, so a redelivery is a duplicate.
    expect(await eventIds()).toEqual(expect.arrayContaining(['d-1', 'd-2', 'd-3']));
    expect(await applyWebhookEvent(deps(), event('d-3', 'user.deleted', { sub: 'hook|nobody' }))).toBe('duplicate');
  });

  it('reports a duplicate when a concurrent delivery of the same event recorded it first', async () => {
    // The other delivery records the id while this one is applying the change (SQLite: "UNIQUE constraint failed").
    const racing = Object.create(users) as UserDirectory;
    racing.syncFromProvider = async (claims, at) => {
      await database.db.insertInto('webhook_events').values({ id: 'race-1', received_at: Date.now() }).execute();
      return users.syncFromProvider(claims, at);
    };
    expect(await applyWebhookEvent({ ...deps(), users: racing }, event('race-1', 'user.created', { sub: 'hook|race' }))).toBe('duplicate');
  });

  it('reads MariaDB’s duplicate-key error the same way', async () => {
    // What mysql2 rejects with when the primary key is taken (ER_DUP_ENTRY).
    const duplicate = Object.assign(new Error("Duplicate entry 'race-2' for key 'PRIMARY'"), { code: 'ER_DUP_ENTRY', errno: 1062 });
    const db = failingEventInsert(duplicate);
    const outcome = await applyWebhookEvent({ ...deps(), database: { ...database, db } as Database }, event('race-2', 'user.created', { sub: 'hook|race-2' }));
    expect(outcome).toBe('duplicate');
  });

  it('passes any other failure to record the event on', async () => {
    const failure = new Error('disk I/O error');
    const db = failingEventInsert(failure);
    await expect(applyWebhookEvent({ ...deps(), database: { ...database, db } as Database }, event('fail-1', 'user.created', { sub: 'hook|fail' }))).rejects.toBe(failure);
  });
});
