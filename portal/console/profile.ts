import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { AccessRequests } from '../../lib/access-requests.ts';
import { UnauthenticatedError } from '../../lib/errors.ts';
import type { ProfileService } from '../../lib/profile/service.ts';
import { prefersHtml, type PortalContext, type PortalState } from '../http/context.ts';
import { assertCsrf } from '../http/csrf.ts';
import { signedInSession } from '../sessions/user.ts';
import type { Views } from '../http/views.ts';

/** The user's own extra profile fields (`/profile`) and access requests from the 403 page. */
export function profileRoutes(deps: { profiles: ProfileService; requests: AccessRequests; views: Views; publicOrigin: string }): Router<PortalState> {
  const { profiles, requests, views, publicOrigin } = deps;
  const router = new Router<PortalState>();
  const form = bodyParser({ enableTypes: ['form', 'json'], formLimit: '32kb', jsonLimit: '32kb' });

  const signedIn = (ctx: PortalContext) => {
    const session = signedInSession(ctx.session);
    if (!ctx.state.user || !session) throw new UnauthenticatedError();
    return { user: ctx.state.user, session, userId: session.uid };
  };

  router.get('/profile', async (ctx) => {
    const { user, session, userId } = signedIn(ctx);
    const [fields, profile] = await Promise.all([profiles.fields.list(), profiles.get(userId)]);
    ctx.set('Cache-Control', 'no-store');
    if (!prefersHtml(ctx)) {
      ctx.body = { fields, profile };
      return;
    }
    ctx.type = 'html';
    ctx.body = views.render('profile.njk', { title: 'Your profile', user, csrf: session.csrf, fields, profile, saved: ctx.query.saved === '1' });
  });

  router.post('/profile', form, async (ctx) => {
    const { user, userId } = signedIn(ctx);
    assertCsrf(ctx, publicOrigin);
    const body = { ...((ctx.request.body ?? {}) as Record<string, unknown>) };
    delete body._csrf;
    const profile = await profiles.update(user.email ?? user.sub, userId, body, { asAdmin: false });
    (ctx.session as unknown as { profile: unknown }).profile = profile;
    if (ctx.is('json')) {
      ctx.body = { profile };
      return;
    }
    ctx.status = 303;
    ctx.redirect('/profile?saved=1');
  });

  router.post('/access-requests', form, async (ctx) => {
    const { user, userId } = signedIn(ctx);
    assertCsrf(ctx, publicOrigin);
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const request = await requests.create(user.email ?? user.sub, userId, body.level, body.reason);
    if (ctx.is('json')) {
      ctx.status = 201;
      ctx.body = request;
      return;
    }
    ctx.status = 303;
    ctx.redirect('/?requested=1');
  });

  return router;
}
