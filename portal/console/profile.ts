import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { AccessRequests } from '../../lib/access-requests.ts';
import { AtriumError, UnauthenticatedError } from '../../lib/errors.ts';
import { safeReturnTo } from '../../lib/return-to.ts';
import type { ProfileService } from '../../lib/profile/service.ts';
import { prefersHtml, type PortalContext, type PortalState } from '../http/context.ts';
import { assertCsrf } from '../http/csrf.ts';
import { signedInSession } from '../sessions/user.ts';
import type { Views } from '../http/views.ts';
import type { DirectoryAdmin } from '../../lib/directory/admin.ts';
import { MIN_PASSWORD_LENGTH } from '../../lib/directory/passwords.ts';
import { idpSidOf } from '../../lib/sessions/provider-sessions.ts';
import { waitInWords } from '../idp/interactions.ts';
import { LoginThrottle } from '../idp/login-throttle.ts';
import { resetRoutes } from '../idp/reset.ts';
import { sessionCookieOf } from '../sessions/cookie-session.ts';
import type { FactorDirectory } from '../../lib/factors/factor-directory.ts';
import { signInSecurityRoutes } from './sign-in-security.ts';

/** The user's own extra profile fields (`/profile`), their password, and access requests from the 403 page. */
export function profileRoutes(deps: { profiles: ProfileService; requests: AccessRequests; views: Views; publicOrigin: string; admin: DirectoryAdmin; factors: FactorDirectory }): Router<PortalState> {
  const { profiles, requests, views, publicOrigin } = deps;
  const router = new Router<PortalState>();
  const form = bodyParser({ enableTypes: ['form', 'json'], formLimit: '32kb', jsonLimit: '32kb' });

  const signedIn = (ctx: PortalContext) => {
    const session = signedInSession(ctx.session);
    if (!ctx.state.user || !session) throw new UnauthenticatedError();
    return { user: ctx.state.user, session, userId: session.uid };
  };

  // --- Password (local accounts of the embedded provider): section data, change, reset links ---
  const { admin } = deps;
  // Wrong current passwords are counted like failed sign-ins: 10 per account, 50 per address in 15 minutes (this instance's own counts).
  const throttle = new LoginThrottle();
  const passwordSection = async (userId: number, state: { changed?: boolean; error?: string }) => {
    const account = await admin.resolveUser(userId).catch(() => undefined);
    return account?.local ? { minLength: MIN_PASSWORD_LENGTH, ...state } : undefined;
  };

  // --- Sign-in security (second factors of local accounts) ---
  const security = signInSecurityRoutes(router, { factors: deps.factors, admin, views, publicOrigin });

  router.get('/profile', async (ctx) => {
    const { user, session, userId } = signedIn(ctx);
    const [fields, profile, history, ends] = await Promise.all([profiles.fields.list(), profiles.get(userId), requests.forUser(userId, 50), requests.membershipEnds(userId)]);
    ctx.set('Cache-Control', 'no-store');
    if (!prefersHtml(ctx)) {
      ctx.body = { fields, profile };
      return;
    }
    ctx.type = 'html';
    ctx.body = views.render('profile.njk', { title: 'Your profile', user, csrf: session.csrf, fields, profile, history, ends, saved: ctx.query.saved === '1', password: await passwordSection(userId, { changed: ctx.query.password === 'changed' }), security: await security.section(userId), factorRemoved: ctx.query.factor === 'removed' });
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
    // Back to the page the request was made from: the form's returnTo, or (the 403 page) the page
    // it was on, when that is on this origin. The launcher shows the request as pending.
    ctx.status = 303;
    ctx.redirect(safeReturnTo(body.returnTo ?? sameOriginPath(ctx.get('Referer'), publicOrigin)));
  });

  router.post('/profile/password', form, async (ctx) => {
    const { user, session, userId } = signedIn(ctx);
    assertCsrf(ctx, publicOrigin);
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string).slice(0, 2048) : '');
    const allowance = `password-change:${user.sub}`;
    const refuse = async (status: number, message: string) => {
      if (!prefersHtml(ctx)) throw new AtriumError(status, status === 429 ? 'too_many_attempts' : 'bad_request', message);
      // The profile page as GET /profile draws it, with the refusal in the password section.
      const [fields, profile, history, ends] = await Promise.all([profiles.fields.list(), profiles.get(userId), requests.forUser(userId, 50), requests.membershipEnds(userId)]);
      ctx.status = status;
      ctx.set('Cache-Control', 'no-store');
      ctx.type = 'html';
      ctx.body = views.render('profile.njk', { title: 'Your profile', user, csrf: session.csrf, fields, profile, history, ends, password: await passwordSection(userId, { error: message }), security: await security.section(userId) });
    };
    const wait = await throttle.attempt(ctx.ip, allowance);
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      return refuse(429, `Too many attempts. Try again in ${waitInWords(wait)}.`);
    }
    try {
      // This browser stays signed in, here and at the sign-in service; every other one is signed out.
      const sessionId = ctx.cookies.get(sessionCookieOf(ctx.app), { signed: true });
      const idpSid = idpSidOf(session as unknown as Record<string, unknown>);
      await admin.changePassword(user.email ?? user.sub, userId, { current: text('current'), next: text('password'), confirm: text('confirm') }, { sessionId, idpSid });
    } catch (err) {
      if (err instanceof AtriumError && err.status < 500) return refuse(err.status, err.message);
      throw err;
    }
    await throttle.succeeded(ctx.ip, allowance);
    if (!prefersHtml(ctx)) {
      ctx.body = { changed: true };
      return;
    }
    ctx.status = 303;
    ctx.redirect('/profile?password=changed');
  });

  resetRoutes(router, { admin, views });

  return router;
}

/** The path of a Referer on this origin; anything else is nothing. */
function sameOriginPath(referer: string, origin: string): string | undefined {
  try {
    const url = new URL(referer);
    return url.origin === new URL(origin).origin ? `${url.pathname}${url.search}` : undefined;
  } catch {
    return undefined;
  }
}
