import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The provider webhook's wire format as README documents it, signed here with node:crypto alone
 * (never with the portal's own signer, so a change to both ends of the format cannot go unseen):
 *   X-Atrium-Timestamp: <unix seconds>
 *   X-Atrium-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with IDP_HOOK_SECRET>
 */
const SECRET = 'hook-secret-for-the-wire-format-test-0123456789';
let portal: TestPortal;

beforeAll(async () => {
  portal = await startTestPortal({ env: { IDP_HOOK_SECRET: SECRET } });
});
afterAll(async () => {
  await portal?.stopAll();
});

const now = () => Math.floor(Date.now() / 1000);
const hmacHex = (secret: string, text: string) => createHmac('sha256', secret).update(text).digest('hex');
/** The signature an Auth0 Action following README would send. */
const documentedSignature = (timestamp: number, rawBody: string, secret = SECRET) => `sha256=${hmacHex(secret, `${timestamp}.${rawBody}`)}`;

async function deliver(rawBody: string, headers: Record<string, string | undefined>): Promise<number> {
  const sent: Record<string, string> = { 'Content-Type': 'application/json' };
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) sent[name] = value;
  const response = await fetch(`${portal.origin}/hooks/idp`, { method: 'POST', headers: sent, body: rawBody });
  await response.arrayBuffer();
  return response.status;
}
const signed = (rawBody: string, timestamp = now()) => deliver(rawBody, { 'X-Atrium-Timestamp': String(timestamp), 'X-Atrium-Signature': documentedSignature(timestamp, rawBody) });

async function writes() {
  const db = portal.portal.database.db;
  const count = async (table: 'users' | 'webhook_events' | 'audit_log') => Number((await db.selectFrom(table).select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
  return { users: await count('users'), events: await count('webhook_events'), audit: await count('audit_log') };
}

describe('POST /hooks/idp, signed as README says', () => {
  it('accepts a delivery signed over the raw bytes, however the JSON is laid out', async () => {
    // Spacing, a newline, key order and an escaped character that re-serialising would all change.
    const rawBody = '{ "type": "user.created",\n  "user": { "email": "Wire.Format@Corp.example", "sub": "wire|1", "name": "Wire \\u0046ormat" },  "id": "evt-wire-1" }';
    expect(await signed(rawBody)).toBe(200);
    expect(await portal.portal.users.bySub('wire|1')).toMatchObject({ email: 'wire.format@corp.example', name: 'Wire Format' });
    // The same event again is a no-op, not an error.
    expect(await signed(rawBody)).toBe(200);
  });

  it('answers every hostile delivery with a 4xx and writes nothing', async () => {
    const before = await writes();
    const rawBody = JSON.stringify({ id: 'evt-hostile-wire', type: 'user.created', user: { sub: 'intruder', email: 'intruder@evil.example' } });
    const t = now();
    const cases: [string, string, Record<string, string | undefined>][] = [
      ['stale timestamp', rawBody, { 'X-Atrium-Timestamp': String(t - 360), 'X-Atrium-Signature': documentedSignature(t - 360, rawBody) }],
      ['timestamp from the future', rawBody, { 'X-Atrium-Timestamp': String(t + 360), 'X-Atrium-Signature': documentedSignature(t + 360, rawBody) }],
      ['signed with another secret', rawBody, { 'X-Atrium-Timestamp': String(t), 'X-Atrium-Signature': documentedSignature(t, rawBody, 'not-the-secret-but-just-as-long-0123456789') }],
      ['no signature header', rawBody, { 'X-Atrium-Timestamp': String(t) }],
      ['no timestamp header', rawBody, { 'X-Atrium-Signature': documentedSignature(t, rawBody) }],
      ['no headers at all', rawBody, {}],
      ['body altered after signing', rawBody.replace('intruder@evil', 'admin@corp'), { 'X-Atrium-Timestamp': String(t), 'X-Atrium-Signature': documentedSignature(t, rawBody) }],
      ['timestamp header changed after signing', rawBody, { 'X-Atrium-Timestamp': String(t - 1), 'X-Atrium-Signature': documentedSignature(t, rawBody) }],
      ['bare hex without sha256=', rawBody, { 'X-Atrium-Timestamp': String(t), 'X-Atrium-Signature': hmacHex(SECRET, `${t}.${rawBody}`) }],
      ['HMAC of the body alone', rawBody, { 'X-Atrium-Timestamp': String(t), 'X-Atrium-Signature': `sha256=${hmacHex(SECRET, rawBody)}` }],
      ['HMAC without the dot', rawBody, { 'X-Atrium-Timestamp': String(t), 'X-Atrium-Signature': `sha256=${hmacHex(SECRET, `${t}${rawBody}`)}` }],
      ['milliseconds instead of seconds', rawBody, { 'X-Atrium-Timestamp': String(t * 1000), 'X-Atrium-Signature': documentedSignature(t * 1000, rawBody) }],
    ];
    for (const [what, body, headers] of cases) {
      const status = await deliver(body, headers);
      expect(status >= 400 && status < 500, `${what}: ${status}`).toBe(true);
    }
    expect(await writes()).toEqual(before);
    expect(await portal.portal.users.bySub('intruder')).toBeUndefined();
    // The very same event, signed properly, goes through: only the signatures above were wrong.
    expect(await signed(rawBody)).toBe(200);
    expect(await portal.portal.users.bySub('intruder')).toBeDefined();
  });
});
