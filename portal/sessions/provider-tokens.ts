import { decodeJwt, type JWTPayload } from 'jose';
import { BadRequestError, UnauthenticatedError } from '../../lib/errors.ts';
import type { ProviderAccounts } from '../../lib/providers/provider-accounts.ts';
import type { SignInProvider, SignInProviders } from './sign-in-providers.ts';

/**
 * Verifies JWTs from whichever configured provider issued them: the token's `iss` picks the
 * provider, whose own keys, issuer, audience and client id then check it (TokenVerifier). A token
 * naming no configured issuer is refused before any key is fetched. With one provider, its
 * verifier is used directly, as before there were several.
 */
export class ProviderTokens {
  constructor(
    readonly providers: SignInProviders,
    /** Provider accounts, for what must map a token's subject to a user (back-channel logout). */
    readonly accounts?: ProviderAccounts,
  ) {}

  private async issuerOf(token: string, refuse: (why: string) => Error): Promise<SignInProvider> {
    if (!this.providers.several) return this.providers.primary;
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw refuse('malformed');
    }
    const provider = typeof iss === 'string' ? await this.providers.byIssuer(iss) : undefined;
    if (!provider) throw refuse('unknown issuer');
    return provider;
  }

  /** A bearer access token: its claims and the provider that issued it. */
  async verifyBearer(token: string): Promise<{ claims: JWTPayload; provider: SignInProvider }> {
    const provider = await this.issuerOf(token, (why) => {
      const err = new UnauthenticatedError(`The bearer token is not valid (${why}).`, { code: 'invalid_token' });
      return Object.assign(err, { headers: { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${why}"` } });
    });
    const claims = await provider.verifier.verifyAccessToken(token, provider.audience);
    return { claims, provider };
  }

  /** A back-channel logout token, checked against its provider's client id (the audience it must name). */
  async verifyLogout(token: string): Promise<{ sub: string | undefined; sid: string | undefined; provider: SignInProvider }> {
    const provider = await this.issuerOf(token, (why) => new BadRequestError(`The logout token is not valid (${why}).`, { code: 'invalid_logout_token' }));
    const { sub, sid } = await provider.verifier.verifyLogoutToken(token, provider.rp.clientId);
    return { sub, sid, provider };
  }
}
