import { sessionEnded, tokenRefreshDue, touchIntervalMs, type SessionLimits } from '../../lib/sessions/lifetime.ts';
import type { SessionStore, StoredSession } from '../../lib/sessions/store.ts';
import type { PortalMiddleware, PortalSession } from '../http/context.ts';
import { carriesTwice, SESSION_ID } from './cookie-session.ts';
import { signedInSession, userFromSession, type BearerAuthenticator, type UserResolver } from './user.ts';

const MAX_REMEMBERED_SIGNATURES = 20_000;
const noMore = async () => {};

/**
 * The hot path: a signed-in request to a child app whose session needs nothing done to it. Such a
 * request skips the portal's other routes and koa-session's per-request work (loading into a
 * Session object, hashing it twice to detect changes) and goes straight from the cached session to
 * the gate and the app. Anything else — no cookie, an old signing key, a session due for a token
 * refresh or an idle-timeout touch — takes the ordinary path further down, which handles it
 * completely. The outcome is the same either way; only the cost differs.
 *
 * A request to an app with `Authorization` is served here too, by the same authenticator the
 * ordinary path uses (userMiddleware): there the session middleware would only make and drop an
 * empty session for it, since a bearer request's user never comes from a cookie.
 *
 * A cookie signature, once verified with the current key, is remembered: the HMAC is recomputed
 * only for cookies not seen recently.
 */
export function fastAppPath(deps: {
  store: SessionStore & { peek?(id: string): { readonly session: StoredSession | undefined } | undefined };
  resolver: UserResolver;
  limits: SessionLimits;
  dispatch: PortalMiddleware;
  /** The session cookie's name (see sessionCookieName). */
  cookie: string;
  /** What userMiddleware authenticates `Authorization` with; without it, bearer requests go the ordinary way. */
  bearer?: BearerAuthenticator | undefined;
}): PortalMiddleware {
  const { store, resolver, limits, dispatch, cookie, bearer } = deps;
  const signatureCookie = `${cookie}.sig`;
  const touchEvery = touchIntervalMs(limits);
  const verified = new Map<string, string>();

  /** Continues once the stored session is at hand; sync when the cache has it (the usual case). */
  const serve = (ctx: Parameters<PortalMiddleware>[0], next: () => Promise<unknown>, stored: StoredSession | undefined): Promise<unknown> => {
    const data = stored?.data as (PortalSession & { _expire?: number }) | undefined;
    const session = signedInSession(data);
    if (!session || !data) return next();
    const now = Date.now();
    if ((data._expire !== undefined && data._expire < now) || sessionEnded(session, limits, now)) return next();
    if (now - (session.seenAt ?? session.authAt) > touchEvery) return next();
    if (tokenRefreshDue(session.tokens, now)) return next();
    const user = userFromSession(session, resolver);
    if (!user) return next();
    ctx.state.user = user;
    ctx.state.userId = session.uid;
    ctx.state.csrf = session.csrf;
    // The app's own `next` ends here: no other portal route serves /apps/, so an unanswered request is a 404.
    return dispatch(ctx, noMore);
  };

  /** A bearer request to an app: its user from the token (an invalid one is the same 401 as further down). */
  const serveBearer = (ctx: Parameters<PortalMiddleware>[0], authorization: string): Promise<unknown> =>
    (bearer as BearerAuthenticator)(authorization).then(({ user, userId }) => {
      ctx.state.user = user;
      ctx.state.userId = userId;
      return dispatch(ctx, noMore);
    });

  // Not `async`: on the hot path every extra promise counts (see BENCHMARKS.md).
  return (ctx, next) => {
    if (!ctx.path.startsWith('/apps/')) return next();
    const authorization = ctx.req.headers.authorization;
    if (authorization) return bearer ? serveBearer(ctx, authorization) : next();
    // The session cookie twice (a copy planted with a narrower Path): the ordinary path signs it out.
    if (carriesTwice(ctx.headers.cookie, cookie)) return next();
    const id = ctx.cookies.get(cookie, { signed: false });
    const signature = ctx.cookies.get(signatureCookie, { signed: false });
    if (!id || !signature || !SESSION_ID.test(id)) return next();
    // The signature this id was last seen with under the current key (no string built per request).
    if (verified.get(id) !== signature) {
      // Index 0 is the newest key; a cookie signed with an older one goes the ordinary way (re-signed there).
      const keys = (ctx.cookies as unknown as { keys: { index(data: string, digest: string): number } }).keys;
      if (keys.index(`${cookie}=${id}`, signature) !== 0) return next();
      if (verified.size >= MAX_REMEMBERED_SIGNATURES) verified.clear();
      verified.set(id, signature);
    }
    const cached = store.peek?.(id);
    return cached ? serve(ctx, next, cached.session) : store.get(id).then((stored) => serve(ctx, next, stored));
  };
}
