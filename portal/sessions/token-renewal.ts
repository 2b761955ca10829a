import { AtriumError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { accessTokenClaims, levelFromTokens } from '../../lib/oidc/claims.ts';
import type { TokenSet } from '../../lib/oidc/relying-party.ts';
import type { PortalSession } from '../http/context.ts';
import type { TokenRefresher } from './refresher.ts';

/**
 * How long past its access token's expiry a session lives on while the provider cannot be reached.
 * The level the session had is what it keeps meanwhile (a demotion at the provider waits for it).
 */
export const PROVIDER_OUTAGE_GRACE_MS = 5 * 60_000;

export interface RenewalDeps {
  refresher: TokenRefresher;
  accessClaim: string;
  tokenGrantsLevel: boolean;
  log: Logger;
}

export type RenewedTokens = Pick<PortalSession, 'tokens' | 'tokenLevel'>;

/** Whether a session may carry on with its tokens while they cannot be refreshed. */
export function withinOutageGrace(tokens: PortalSession['tokens'], now = Date.now()): boolean {
  return tokens.expiresAt === undefined || tokens.expiresAt + PROVIDER_OUTAGE_GRACE_MS > now;
}

/**
 * Refreshes a session's tokens on the server: the new tokens and the level they grant, or 'ended'
 * when the provider refused the refresh (the session must end). While the provider cannot be
 * reached, the session carries on with what it has (undefined: nothing changed) for as long as its
 * access token is valid and PROVIDER_OUTAGE_GRACE_MS after; past that the error propagates (502).
 *
 * With `inBackground`, a request does not wait on a provider already known to be down: it carries
 * on at once within the grace, and `inBackground` receives the new tokens should this refresh
 * succeed meanwhile (the provider came back), to save them.
 */
export async function renewTokens(
  session: PortalSession,
  deps: RenewalDeps,
  now = Date.now(),
  inBackground?: (renewed: RenewedTokens) => Promise<unknown>,
): Promise<RenewedTokens | 'ended' | undefined> {
  const { tokens } = session;
  if (!tokens.refresh) return undefined;
  const attempt = deps.refresher.refresh(tokens.refresh, session).then((fresh) => renewedFrom(fresh, session, deps));
  if (inBackground && deps.refresher.providerDown && withinOutageGrace(tokens, now)) {
    attempt.then(inBackground).catch((err: unknown) => deps.log.debug({ err, sub: session.sub }, 'background token refresh did not complete'));
    return undefined;
  }
  try {
    return await attempt;
  } catch (err) {
    if (err instanceof AtriumError && err.status === 401) {
      deps.log.info({ sub: session.sub }, 'token refresh refused; session ended');
      return 'ended';
    }
    if (withinOutageGrace(tokens, now)) {
      deps.log.warn({ err, sub: session.sub }, 'token refresh failed; the session carries on and will retry');
      return undefined;
    }
    throw err;
  }
}

function renewedFrom(fresh: TokenSet, session: PortalSession, deps: RenewalDeps): RenewedTokens {
  const { tokens } = session;
  // With several providers, each reads levels its own way; the deps hold the first provider's.
  const { accessClaim, tokenGrantsLevel } = deps.refresher.levelSettingsFor(session.provider) ?? deps;
  return {
    tokens: {
      access: fresh.accessToken,
      refresh: fresh.refreshToken ?? tokens.refresh,
      id: fresh.idToken ?? tokens.id,
      expiresAt: fresh.expiresAt,
      issuedAt: fresh.issuedAt,
    },
    tokenLevel: tokenGrantsLevel
      ? levelFromTokens({ accessClaims: accessTokenClaims(fresh.accessToken), idClaims: fresh.idClaims, grantedScope: fresh.scope, accessClaim })
      : null,
  };
}
