import Router from '@koa/router';
import type { Database } from '../../lib/db/schema.ts';
import type { DirectoryAdmin } from '../../lib/directory/admin.ts';
import type { AuditLog } from '../../lib/directory/audit.ts';
import type { UserDirectory } from '../../lib/directory/users.ts';
import { AtriumError } from '../../lib/errors.ts';
import { applyWebhookEvent, MAX_BODY_BYTES, parseWebhookEvent, readLimitedBody, verifyWebhook } from '../../lib/hooks/idp-webhook.ts';
import type { Logger } from '../../lib/log.ts';

/**
 * `POST /hooks/idp`: the provider's user events. Only present when IDP_HOOK_SECRET is set. The
 * signature is checked over the raw bytes before anything is parsed or written.
 */
export function hookRoutes(deps: { secret: string; database: Database; users: UserDirectory; admin: DirectoryAdmin; audit: AuditLog; log: Logger; afterChange: () => Promise<void> }): Router {
  const router = new Router();
  router.post('/hooks/idp', async (ctx) => {
    if (!ctx.is('application/json')) throw new AtriumError(415, 'unsupported_media_type', 'Send the event as application/json.');
    const length = ctx.request.length;
    const body = await readLimitedBody(ctx.req, MAX_BODY_BYTES, Number.isFinite(length) ? length : undefined);
    verifyWebhook({ secret: deps.secret, timestamp: ctx.get('X-Atrium-Timestamp') || undefined, signature: ctx.get('X-Atrium-Signature') || undefined, body });
    const event = parseWebhookEvent(body);
    const outcome = await applyWebhookEvent(deps, event);
    if (outcome === 'applied') await deps.afterChange();
    deps.log.info({ event: event.id, type: event.type, outcome }, 'provider webhook');
    ctx.body = { status: outcome };
  });
  return router;
}
