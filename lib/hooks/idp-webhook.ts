import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { Database } from '../db/schema.ts';
import type { DirectoryAdmin } from '../directory/admin.ts';
import type { AuditLog } from '../directory/audit.ts';
import type { UserDirectory } from '../directory/users.ts';
import { BadRequestError, PayloadTooLargeError, UnauthenticatedError } from '../errors.ts';

/**
 * The identity provider's user events (`POST /hooks/idp`), authenticated like Stripe's webhooks:
 * `X-Atrium-Timestamp: <unix seconds>` and `X-Atrium-Signature: sha256=<hex HMAC-SHA256 of
 * "<timestamp>.<raw body>" with IDP_HOOK_SECRET>`. Outside a five-minute window a delivery is
 * refused, so a captured request cannot be replayed later; inside it, the event `id` makes a
 * repeated delivery a no-op.
 */
export const REPLAY_WINDOW_SECONDS = 300;
export const MAX_BODY_BYTES = 64 * 1024;

const claimText = (max: number) => z.string().max(max).nullable().optional();
export const webhookEventSchema = z
  .object({
    id: z.string().min(1).max(200),
    type: z.enum(['user.created', 'user.updated', 'user.deleted']),
    user: z
      .object({
        sub: z.string().min(1).max(255),
        email: claimText(320),
        name: claimText(255),
        picture: claimText(2048),
      })
      .strip(),
  })
  .strip();

export type WebhookEvent = z.infer<typeof webhookEventSchema>;

export function signWebhook(secret: string, timestamp: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export function verifyWebhook(input: { secret: string; timestamp: string | undefined; signature: string | undefined; body: Buffer; now?: number }): void {
  const { secret, timestamp, signature, body } = input;
  if (!timestamp || !signature) throw new UnauthenticatedError('Missing X-Atrium-Timestamp or X-Atrium-Signature.', { code: 'signature_missing' });
  if (!/^\d{1,12}$/.test(timestamp)) throw new UnauthenticatedError('X-Atrium-Timestamp must be unix seconds.', { code: 'bad_timestamp' });
  const age = Math.abs((input.now ?? Date.now()) / 1000 - Number(timestamp));
  if (age > REPLAY_WINDOW_SECONDS) throw new UnauthenticatedError('The signature is too old or from the future; sign each delivery afresh.', { code: 'stale_signature' });
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest('hex')}`);
  const given = Buffer.from(signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new UnauthenticatedError('The signature does not match the body.', { code: 'bad_signature' });
  }
}

export function parseWebhookEvent(body: Buffer): WebhookEvent {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new BadRequestError('The body is not valid JSON.', { code: 'malformed_json' });
  }
  const result = webhookEventSchema.safeParse(json);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ');
    throw new BadRequestError(`The event is not one Atrium understands: ${problems}`, { code: 'unknown_event' });
  }
  return result.data;
}

/** Applies a verified event once; returns what happened. */
export async function applyWebhookEvent(
  deps: { database: Database; users: UserDirectory; admin: DirectoryAdmin; audit: AuditLog },
  event: WebhookEvent,
): Promise<'duplicate' | 'applied' | 'ignored'> {
  const db = deps.database.db;
  const seen = await db.selectFrom('webhook_events').select('id').where('id', '=', event.id).executeTakeFirst();
  if (seen) return 'duplicate';
  const actor = 'webhook:idp';
  let outcome: 'applied' | 'ignored' = 'applied';
  if (event.type === 'user.deleted') {
    const user = await deps.users.bySub(event.user.sub);
    if (!user) outcome = 'ignored';
    // Deleted at the provider: disabled here (sessions end) but kept, with what the user typed.
    else if (!user.disabled) await deps.admin.setDisabled(actor, user.id, true);
  } else {
    const before = await deps.users.bySub(event.user.sub);
    const { user, created } = await deps.users.syncFromProvider(event.user);
    await deps.audit.record({
      actor,
      action: created ? 'user.sync_create' : 'user.sync_update',
      target: `user:${user.email ?? user.sub}`,
      before: before ? { email: before.email, name: before.name, picture: before.picture } : undefined,
      after: { email: user.email, name: user.name, picture: user.picture },
    });
  }
  try {
    await db.insertInto('webhook_events').values({ id: event.id, received_at: Date.now() }).execute();
  } catch (err) {
    if (!/duplicate|unique/i.test(String((err as Error).message))) throw err;
    return 'duplicate';
  }
  return outcome;
}

/** Reads a request body up to `limit` bytes; more is a 413 without reading the rest. */
export async function readLimitedBody(stream: NodeJS.ReadableStream & { destroy?: () => void }, limit: number, declaredLength?: number): Promise<Buffer> {
  if (declaredLength !== undefined && declaredLength > limit) throw new PayloadTooLargeError(`The body is larger than ${limit} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new PayloadTooLargeError(`The body is larger than ${limit} bytes.`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
