import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { BadRequestError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { SessionStore } from '../../lib/sessions/store.ts';
import type { ProviderTokens } from './provider-tokens.ts';
import type { SignInProvider } from './sign-in-providers.ts';

export const BACKCHANNEL_PATH = '/auth/backchannel-logout';

/**
 * OpenID Connect Back-Channel Logout: the provider POSTs a signed logout token naming a provider
 * session (`sid`) or a user (`sub`); every portal session it names ends, and with it their sockets.
 * With several providers the token's issuer picks the provider that checks it, and only that
 * provider's sessions end: its `sub` is looked up as its account (issuer and subject), and a `sid`
 * ends only sessions that provider signed in, so one provider can never sign out another's users.
 */
export function backchannelRoutes(deps: { verifier: ProviderTokens; clientId?: () => string; sessions: SessionStore; log: Logger }): Router {
  const router = new Router();
  const { providers, accounts } = deps.verifier;
  router.post(BACKCHANNEL_PATH, bodyParser({ enableTypes: ['form'], formLimit: '16kb' }), async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    if (typeof body.logout_token !== 'string') throw new BadRequestError('Send logout_token as a form field.', { code: 'invalid_request' });
    const { sub, sid, provider } = await deps.verifier.verifyLogout(body.logout_token);
    const ids = sid ? await sessionsOf(provider, await deps.sessions.idsByIdpSession(sid)) : await deps.sessions.idsBySubject(await subjectOf(provider, sub as string));
    for (const id of ids) await deps.sessions.destroy(id);
    deps.log.info({ sub, sid, provider: provider.config.id, ended: ids.length }, 'back-channel logout');
    ctx.status = 200;
    ctx.body = '';
  });


  /** The Atrium subject of the provider's account (a user of another provider may share its `sub`). */
  async function subjectOf(provider: SignInProvider, sub: string): Promise<string> {
    if (!accounts) return sub;
    const known = await accounts.subjectOf({ issuer: (await provider.rp.provider()).issuer, embedded: provider.config.embedded, subjectPrefix: provider.config.subjectPrefix }, sub);
    // Never signed in here: the subject it would have, which no session carries.
    return known ?? `${provider.config.subjectPrefix}${sub}`;
  }

  /** Of the sessions with this provider session id, those the provider itself signed in. */
  async function sessionsOf(provider: SignInProvider, ids: string[]): Promise<string[]> {
    if (!providers.several) return ids;
    const mine: string[] = [];
    for (const id of ids) {
      const data = (await deps.sessions.get(id))?.data as { provider?: unknown } | undefined;
      const signedInBy = typeof data?.provider === 'string' ? data.provider : providers.primary.config.id;
      if (signedInBy === provider.config.id) mine.push(id);
    }
    return mine;
  }
  return router;
}
