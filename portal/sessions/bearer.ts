import { EMBEDDED_ISSUER_KEY } from '../../lib/providers/provider-accounts.ts';
import type { AtriumUser } from '../../lib/app-kit.ts';
import type { AccessIndex } from '../../lib/directory/access.ts';
import { UnauthenticatedError } from '../../lib/errors.ts';
import { highest } from '../../lib/levels.ts';
import { levelFromTokens } from '../../lib/oidc/claims.ts';
import type { ProviderTokens } from './provider-tokens.ts';
import { SignInProviders } from './sign-in-providers.ts';

/**
 * A bearer caller's profile: one frozen object for every request, so what is worked out per user
 * and profile (the identity an upstream app gets, and its signed assertion) is worked out once.
 */
const NO_PROFILE: Readonly<Record<string, unknown>> = Object.freeze({});

/**
 * The user behind `Authorization: Bearer <JWT>`: a machine client or a user calling an API with a
 * provider-issued access token. The token's issuer picks the provider whose keys, issuer and
 * audience check it (ProviderTokens), and whose account (issuer and subject) names the user. The
 * level is the highest of the token's grants, where they count (an external provider's tokens, the
 * embedded provider's machine clients), read from that provider's ACCESS_CLAIM, and the user's
 * directory groups now; so a demotion of a directory user applies to the token they already hold.
 * A disabled user's token is refused. Verified tokens are cached until they expire, and the level
 * is worked out afresh for each request, so the request path stays free of network and database calls.
 */
export function bearerAuthenticator(deps: { verifier: ProviderTokens; access: AccessIndex; audience?: string | undefined; accessClaim?: string }) {
  const { verifier, access } = deps;
  return async (authorization: string): Promise<{ user: AtriumUser; userId: number | undefined }> => {
    const match = /^Bearer ([^\s]+)$/i.exec(authorization.trim());
    if (!match) {
      const err = new UnauthenticatedError('Use "Authorization: Bearer <token>".', { code: 'invalid_request' });
      Object.assign(err, { headers: { 'WWW-Authenticate': 'Bearer error="invalid_request"' } });
      throw err;
    }
    const { claims, provider } = await verifier.verifyBearer(match[1] as string);
    const sub = claims.sub as string;
    const { subjectPrefix, embedded, accessClaim } = provider.config;
    const issuer = embedded ? EMBEDDED_ISSUER_KEY : String(claims.iss);
    const userId = access.userIdOfIdentity(issuer, sub, subjectPrefix === '' ? { sub, local: embedded } : undefined);
    if (userId !== undefined && access.isDisabled(userId)) throw new UnauthenticatedError('This account is disabled.', { code: 'invalid_token' });
    const grant = access.grantFor(userId);
    const tokenLevel = provider.verifier.grantsLevel(claims)
      ? levelFromTokens({ accessClaims: claims as Record<string, unknown>, idClaims: {}, grantedScope: undefined, accessClaim })
      : null;
    const text = (value: unknown) => (typeof value === 'string' ? value : null);
    return {
      userId,
      user: {
        sub: (userId !== undefined ? access.subjectOf(userId) : undefined) ?? SignInProviders.subjectOf(provider, sub),
        email: text(claims.email),
        name: text(claims.name) ?? text(claims.client_id),
        picture: null,
        level: highest(tokenLevel, grant.level),
        groups: grant.groups,
        profile: NO_PROFILE,
      },
    };
  };
}
