import { createHmac } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../lib/db/database.ts';
import { migrateToLatest } from '../../lib/db/migrate.ts';
import type { Database } from '../../lib/db/schema.ts';
import type { DirectoryAdmin } from '../../lib/directory/admin.ts';
import { AuditLog } from '../../lib/directory/audit.ts';
import { UserDirectory } from '../../lib/directory/users.ts';
import { AtriumError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { hookRoutes } from '../../portal/directory/provider-webhook.ts';

/** The route alone, on a loopback port, over a migrated in-memory SQLite directory. Signed with node:crypto, as README says. */
const SECRET = 'route-test-hook-secret-0123456789abcdef';
const sign = (timestamp: string, body: string) => `sha256=${createHmac('sha256', SECRET).update(`${timestamp}.${body}`).digest('hex')}`;

let database: Database;
let users: UserDirectory;
let server: Server | undefined;
let started: Promise<string> | undefined;
let afterChanges = 0;
const infos: { fields: Record<string, unknown>; message: string }[] = [];

beforeAll(async () => {
  database = await openDatabase({ kind: 'sqlite', file: ':memory:' });
  await migrateToLatest(database);
  users = new UserDirectory(database);
});
afterAll(async () => {
  server?.close();
  await database?.close();
});

/**
 * The route's server, started by the first test that needs it (not in beforeAll: a failure there
 * would only skip the tests, and a mutation run would count that as a pass).
 */
function routeOrigin(): Promise<string> {
  started ??= startRoute();
  return started;
}

async function startRoute(): Promise<string> {
  const admin = { setDisabled: async (_actor: string, id: number, disabled: boolean) => users.setDisabled(id, disabled) } as unknown as DirectoryAdmin;
  const log = { info: (fields: Record<string, unknown>, message: string) => infos.push({ fields, message }) } as unknown as Logger;
  const app = new Koa();
  // As the portal renders an AtriumError for an API call: its status, code and message.
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (err) {
      if (!(err instanceof AtriumError)) throw err;
      ctx.status = err.status;
      ctx.body = { error: err.code, message: err.message };
    }
  });
  const router = hookRoutes({
    secret: SECRET,
    database,
    users,
    admin,
    audit: new AuditLog(database),
    log,
    afterChange: async () => {
      afterChanges++;
    },
  });
  app.use(router.routes());
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function deliver(body: string, headers: Record<string, string>): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${await routeOrigin()}/hooks/idp`, { method: 'POST', headers, body });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: response.status, json };
}

function signed(event: unknown): Promise<{ status: number; json: unknown }> {
  const body = JSON.stringify(event);
  const t = String(Math.floor(Date.now() / 1000));
  return deliver(body, { 'Content-Type': 'application/json', 'X-Atrium-Timestamp': t, 'X-Atrium-Signature': sign(t, body) });
}

const eventCount = async () => Number((await database.db.selectFrom('webhook_events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);

describe('POST /hooks/idp (the route alone)', () => {
  it('applies a signed event, answers with the outcome, refreshes the directory and logs it', async () => {
    infos.length = 0;
    const before = afterChanges;
    const answer = await signed({ id: 'route-1', type: 'user.created', user: { sub: 'route|1', email: 'route1@corp.example' } });
    expect(answer).toEqual({ status: 200, json: { status: 'applied' } });
    expect(afterChanges).toBe(before + 1);
    expect((await users.bySub('route|1'))?.email).toBe('route1@corp.example');
    expect(infos).toEqual([{ fields: { event: 'route-1', type: 'user.created', outcome: 'applied' }, message: 'provider webhook' }]);
  });

  it('answers a redelivery as a duplicate without refreshing anything', async () => {
    const before = afterChanges;
    expect(await signed({ id: 'route-1', type: 'user.created', user: { sub: 'route|1' } })).toEqual({ status: 200, json: { status: 'duplicate' } });
    expect(afterChanges).toBe(before);
  });

  it('does not refresh the directory for an ignored event', async () => {
    const before = afterChanges;
    expect(await signed({ id: 'route-2', type: 'user.deleted', user: { sub: 'route|nobody' } })).toEqual({ status: 200, json: { status: 'ignored' } });
    expect(afterChanges).toBe(before);
  });

  it('refuses what is not application/json (415) before reading it', async () => {
    const body = JSON.stringify({ id: 'route-3', type: 'user.created', user: { sub: 'route|3' } });
    const t = String(Math.floor(Date.now() / 1000));
    const events = await eventCount();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
      expect(await deliver(body, { 'Content-Type': type, 'X-Atrium-Timestamp': t, 'X-Atrium-Signature': sign(t, body) })).toEqual({
        status: 415,
        json: { error: 'unsupported_media_type', message: 'Send the event as application/json.' },
      });
    }
    expect(await eventCount()).toBe(events);
    expect(await users.bySub('route|3')).toBeUndefined();
  });

  it('refuses an unsigned or wrongly signed delivery (401) and writes nothing', async () => {
    const body = JSON.stringify({ id: 'route-4', type: 'user.created', user: { sub: 'route|4' } });
    const t = String(Math.floor(Date.now() / 1000));
    const events = await eventCount();
    const before = afterChanges;
    const attempts: Record<string, string>[] = [
      { 'Content-Type': 'application/json' },
      { 'Content-Type': 'application/json', 'X-Atrium-Timestamp': t },
      { 'Content-Type': 'application/json', 'X-Atrium-Signature': sign(t, body) },
      { 'Content-Type': 'application/json', 'X-Atrium-Timestamp': t, 'X-Atrium-Signature': sign(t, `${body} `) },
    ];
    for (const headers of attempts) {
      const answer = await deliver(body, headers);
      expect(answer.status).toBe(401);
      expect(['signature_missing', 'bad_signature']).toContain((answer.json as { error: string }).error);
    }
    expect(await eventCount()).toBe(events);
    expect(afterChanges).toBe(before);
    expect(await users.bySub('route|4')).toBeUndefined();
  });

  it('refuses a body over 64 KiB (413)', async () => {
    const body = JSON.stringify({ id: 'route-5', type: 'user.created', user: { sub: 'route|5' }, pad: 'x'.repeat(70_000) });
    const t = String(Math.floor(Date.now() / 1000));
    expect((await deliver(body, { 'Content-Type': 'application/json', 'X-Atrium-Timestamp': t, 'X-Atrium-Signature': sign(t, body) })).status).toBe(413);
    expect(await users.bySub('route|5')).toBeUndefined();
  });

  it('refuses a signed event it does not understand (400)', async () => {
    expect((await signed({ id: 'route-6', type: 'user.promoted', user: { sub: 'route|6' } })).status).toBe(400);
  });
});
