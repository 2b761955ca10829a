import { AtriumError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { accessTokenClaims, levelFromTokens } from '../../lib/oidc/claims.ts';
import type { PortalSession } from '../http/context.ts';
import type { TokenRefresher } from './refresher.ts';

export interface RenewalDeps {
  refresher: TokenRefresher;
  accessClaim: string;
  tokenGrantsLevel: boolean;
  log: Logger;
}

/**
 * Refreshes a session's tokens on the server: the new tokens and the level they grant, or 'ended'
 * when the provider refused the refresh (the session must end). While the provider is down, the
 * session carries on as long as its access token is still valid (undefined: nothing changed, try
 * again next time); past that the error propagates.
 */
export async function renewTokens(session: PortalSession, deps: RenewalDeps, now = Date.now()): Promise<Pick<PortalSession, 'tokens' | 'tokenLevel'> | 'ended' | undefined> {
  const { tokens } = session;
  if (!tokens.refresh) return undefined;
  try {
    const fresh = await deps.refresher.refresh(tokens.refresh);
    return {
      tokens: {
        access: fresh.accessToken,
        refresh: fresh.refreshToken ?? tokens.refresh,
        id: fresh.idToken ?? tokens.id,
        expiresAt: fresh.expiresAt,
        issuedAt: fresh.issuedAt,
      },
      tokenLevel: deps.tokenGrantsLevel
        ? levelFromTokens({ accessClaims: accessTokenClaims(fresh.accessToken), idClaims: fresh.idClaims, grantedScope: fresh.scope, accessClaim: deps.accessClaim })
        : null,
    };
  } catch (err) {
    if (err instanceof AtriumError && err.status === 401) {
      deps.log.info({ sub: session.sub }, 'token refresh refused; session ended');
      return 'ended';
    }
    if (tokens.expiresAt !== undefined && tokens.expiresAt > now) {
      deps.log.warn({ err, sub: session.sub }, 'token refresh failed; will retry');
      return undefined;
    }
    throw err;
  }
}
