import Router from '@koa/router';
import { appOrigin, type AppOriginPattern } from '../../../lib/apps/origins.ts';
import { BadRequestError, NotFoundError } from '../../../lib/errors.ts';
import { decide } from '../../../lib/gate.ts';
import { safeReturnTo } from '../../../lib/return-to.ts';
import type { PortalState } from '../../http/context.ts';
import type { Views } from '../../http/views.ts';
import type { SessionReader } from '../../sessions/reader.ts';
import { signedInSession } from '../../sessions/user.ts';
import { accessRefusal, type AppTable } from '../dispatch.ts';
import { HANDOFF_STATE, type AppOriginSessions } from './app-sessions.ts';
import { RESERVED_PREFIX } from './app-host.ts';

const APP_KEY = /^([a-z]+)\/([a-z0-9][a-z0-9-]{0,62})$/;

/**
 * The portal-origin half of signing in on an app origin: a signed-in browser, sent here by the app
 * origin with its state, gets a single-use code bound to that app origin, that state and this
 * portal session, and carries it back in a form post (never in a URL, so never in a log). A browser
 * that is not signed in signs in first and comes back through the app's path form.
 */
export function handoffRoutes(deps: { pattern: AppOriginPattern; table: AppTable; sessions: AppOriginSessions; reader: SessionReader; views: Views }): Router<PortalState> {
  const { pattern, table, sessions, reader, views } = deps;
  const router = new Router<PortalState>();

  router.get('/auth/handoff', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Referrer-Policy', 'no-referrer');
    const key = typeof ctx.query.app === 'string' ? ctx.query.app : '';
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    const match = APP_KEY.exec(key);
    if (!match || !HANDOFF_STATE.test(state)) throw new BadRequestError('This sign-in link is incomplete. Open the app again.', { code: 'handoff_invalid' });
    const [, tier, name] = match as unknown as [string, string, string];
    const returnTo = safeReturnTo(ctx.query.returnTo);

    const session = signedInSession(ctx.session);
    const portalSessionId = reader.sessionIdOf(ctx.req);
    const user = ctx.state.user;
    if (!session || !portalSessionId || !user) {
      // After sign-in the path form sends the browser back to the app origin, which starts over.
      ctx.redirect(`/login?returnTo=${encodeURIComponent(`/apps/${tier}/${name}${returnTo}`)}`);
      return;
    }
    const app = table.get(tier, name);
    if (!app) throw new NotFoundError('There is no app at this address.');
    const decision = decide(user, app);
    if (!decision.allowed) throw accessRefusal(user, app, decision);

    const code = await sessions.issueCode(portalSessionId, key, state, returnTo);
    ctx.type = 'html';
    ctx.body = views.render('handoff.njk', { title: `Opening ${app.title}`, app: app.title, action: `${appOrigin(pattern, tier, name)}${RESERVED_PREFIX}session`, code });
  });

  return router;
}
