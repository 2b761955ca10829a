import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { BadRequestError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { TokenVerifier } from '../../lib/oidc/token-verifier.ts';
import type { SessionStore } from '../../lib/sessions/store.ts';

export const BACKCHANNEL_PATH = '/auth/backchannel-logout';

/**
 * OpenID Connect Back-Channel Logout: the provider POSTs a signed logout token naming a provider
 * session (`sid`) or a user (`sub`); every portal session it names ends, and with it their sockets.
 */
export function backchannelRoutes(deps: { verifier: TokenVerifier; clientId: () => string; sessions: SessionStore; log: Logger }): Router {
  const router = new Router();
  router.post(BACKCHANNEL_PATH, bodyParser({ enableTypes: ['form'], formLimit: '16kb' }), async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    if (typeof body.logout_token !== 'string') throw new BadRequestError('Send logout_token as a form field.', { code: 'invalid_request' });
    const { sub, sid } = await deps.verifier.verifyLogoutToken(body.logout_token, deps.clientId());
    const ids = sid ? await deps.sessions.idsByIdpSession(sid) : await deps.sessions.idsBySubject(sub as string);
    for (const id of ids) await deps.sessions.destroy(id);
    deps.log.info({ sub, sid, ended: ids.length }, 'back-channel logout');
    ctx.status = 200;
    ctx.body = '';
  });
  return router;
}
