import type { Logger } from '../../lib/log.ts';
import { accessTokenClaims, levelFromTokens } from '../../lib/oidc/claims.ts';
import { sessionEnded, tokenRefreshDue, touchIntervalMs, type SessionLimits } from '../../lib/sessions/lifetime.ts';
import { AtriumError } from '../../lib/errors.ts';
import type { PortalMiddleware, PortalSession } from '../http/context.ts';
import type { TokenRefresher } from './refresher.ts';
import { signedInSession } from './user.ts';

/**
 * Keeps a session honest before anything uses it: past its absolute lifetime or idle for too long
 * it ends; shortly before the access token expires it is refreshed on the server (the level is
 * re-read from the new token); a refused refresh ends it. An ended session makes the request a
 * signed-out one, so a browser is sent to login with its returnTo and an API call gets 401.
 */
export function sessionLifecycle(deps: {
  limits: SessionLimits;
  refresher: TokenRefresher;
  accessClaim: string;
  tokenGrantsLevel: boolean;
  log: Logger;
}): PortalMiddleware {
  const { limits, refresher, log } = deps;
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
    const { tokens } = session;
    if (tokens.refresh && tokenRefreshDue(tokens, now)) {
      try {
        const fresh = await refresher.refresh(tokens.refresh);
        const updated: PortalSession['tokens'] = {
          access: fresh.accessToken,
          refresh: fresh.refreshToken ?? tokens.refresh,
          id: fresh.idToken ?? tokens.id,
          expiresAt: fresh.expiresAt,
          issuedAt: fresh.issuedAt,
        };
        Object.assign(ctx.session as object, {
          tokens: updated,
          tokenLevel: deps.tokenGrantsLevel
            ? levelFromTokens({ accessClaims: accessTokenClaims(fresh.accessToken), idClaims: fresh.idClaims, grantedScope: fresh.scope, accessClaim: deps.accessClaim })
            : null,
        });
      } catch (err) {
        if (err instanceof AtriumError && err.status === 401) {
          log.info({ sub: session.sub }, 'token refresh refused; session ended');
          ctx.session = null;
          return next();
        }
        // The provider is down: carry on while the access token is still valid, try again next time.
        if (tokens.expiresAt !== undefined && tokens.expiresAt > now) log.warn({ err, sub: session.sub }, 'token refresh failed; will retry');
        else throw err;
      }
    }
    if (now - (session.seenAt ?? session.authAt) > touchEvery) (ctx.session as unknown as PortalSession).seenAt = now;
    return next();
  };
}
