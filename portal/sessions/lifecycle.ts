import type { Logger } from '../../lib/log.ts';
import { sessionEnded, tokenRefreshDue, touchIntervalMs, type SessionLimits } from '../../lib/sessions/lifetime.ts';
import type { PortalMiddleware, PortalSession } from '../http/context.ts';
import { renewTokens } from './token-renewal.ts';
import type { TokenRefresher } from './refresher.ts';
import { signedInSession } from './user.ts';

/**
 * Keeps a session honest before anything uses it: past its absolute lifetime or idle for too long
 * it ends; shortly before the access token expires it is refreshed on the server (the level is
 * re-read from the new token); a refused refresh ends it. An ended session makes the request a
 * signed-out one, so a browser is sent to login with its returnTo and an API call gets 401.
 *
 * While the provider is down the session carries on within its grace (token-renewal.ts) and the
 * request does not wait: the refresh goes on in the background, and when it succeeds the new
 * tokens are saved through the same koa-session object (its commit edits the stored session only
 * while it exists, and never puts back older tokens: see cookie-session.ts).
 */
export function sessionLifecycle(deps: {
  limits: SessionLimits;
  refresher: TokenRefresher;
  accessClaim: string;
  tokenGrantsLevel: boolean;
  log: Logger;
}): PortalMiddleware {
  const { limits, log } = deps;
  const touchEvery = touchIntervalMs(limits);
  return async (ctx, next) => {
    const session = signedInSession(ctx.session);
    if (!session) return next();
    const now = Date.now();
    const ended = sessionEnded(session, limits, now);
    if (ended) {
      log.info({ sub: session.sub, reason: ended }, 'session expired');
      ctx.session = null;
      return next();
    }
    if (tokenRefreshDue(session.tokens, now)) {
      const live = ctx.session as unknown as PortalSession & { manuallyCommit(): Promise<void> };
      const renewed = await renewTokens(session, deps, now, async (fresh) => {
        Object.assign(live, fresh);
        await live.manuallyCommit();
      });
      if (renewed === 'ended') {
        ctx.session = null;
        return next();
      }
      if (renewed) Object.assign(ctx.session as object, renewed);
    }
    if (now - (session.seenAt ?? session.authAt) > touchEvery) (ctx.session as unknown as PortalSession).seenAt = now;
    return next();
  };
}
