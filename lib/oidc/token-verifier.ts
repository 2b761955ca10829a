import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { BadRequestError, UnauthenticatedError } from '../errors.ts';
import { PROVIDER_TIMEOUT_MS } from './provider-calls.ts';

/** Signature algorithms a provider's token may use; `none` and HMAC (HS*) are never accepted. */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const CLOCK_TOLERANCE_S = 30;
const MAX_CACHED = 10_000;
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

export interface VerifierSource {
  /** The provider's issuer identifier (from discovery). */
  issuer: () => Promise<string>;
  /** Its keys: a local set for the embedded provider, a remote JWKS (cached, refetched on an unknown kid) otherwise. */
  keys: () => Promise<JWTVerifyGetKey>;
  /**
   * Whether a verified access token's own grants (the `access:*` values in ACCESS_CLAIM) count
   * towards a level. Every token of an external provider's; of the embedded provider's, only those
   * of machine clients (its user tokens copy the directory at sign-in, and the live directory is
   * fresher). Unset: they count.
   */
  tokenGrantsLevel?: (claims: JWTPayload) => boolean;
}

/**
 * A remote JWKS getter that caches keys and refetches when a token names a kid it does not know
 * (the provider rotated its keys) — at most once per cooldown, so garbage kids cannot make the
 * portal hammer the provider.
 */
export function remoteKeys(jwksUri: string, cooldownMs = 30_000): JWTVerifyGetKey {
  // A provider that hangs costs a JWKS fetch the same bounded wait as any other provider call.
  return createRemoteJWKSet(new URL(jwksUri), { cooldownDuration: cooldownMs, cacheMaxAge: 10 * 60_000, timeoutDuration: PROVIDER_TIMEOUT_MS });
}

export function localKeys(jwks: JSONWebKeySet): JWTVerifyGetKey {
  return createLocalJWKSet(jwks);
}

/**
 * Verifies the provider's JWTs: bearer access tokens (issuer, audience, expiry and not-before with a
 * small leeway, an allow-list of algorithms; verified tokens are remembered until they expire) and
 * back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0, section 2.6).
 */
export class TokenVerifier {
  private readonly verified = new Map<string, JWTPayload>();
  private readonly seenLogoutJtis = new Map<string, number>();

  constructor(private readonly source: VerifierSource) {}

  async verifyAccessToken(token: string, audience: string | undefined): Promise<JWTPayload> {
    // Without an audience, an ID token or a token meant for another API of the same tenant would pass.
    if (!audience) throw invalidToken('bearer tokens are accepted only when OIDC_AUDIENCE is set');
    const now = Math.floor(Date.now() / 1000);
    const cached = this.verified.get(token);
    if (cached && typeof cached.exp === 'number' && cached.exp + CLOCK_TOLERANCE_S > now) return cached;
    if (cached) this.verified.delete(token);
    if (token.length > 16_384 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw invalidToken('malformed');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.source.keys(), {
        issuer: await this.source.issuer(),
        audience,
        algorithms: ALLOWED_ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      throw invalidToken(reason(err), err);
    }
    if (this.verified.size >= MAX_CACHED) this.verified.clear();
    this.verified.set(token, payload);
    return payload;
  }

  /** Whether this verified token's grants count towards a level (see VerifierSource.tokenGrantsLevel). */
  grantsLevel(claims: JWTPayload): boolean {
    return this.source.tokenGrantsLevel?.(claims) ?? true;
  }

  async verifyLogoutToken(token: string, clientId: string): Promise<{ sub: string | undefined; sid: string | undefined }> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, await this.source.keys(), {
        issuer: await this.source.issuer(),
        audience: clientId,
        algorithms: ALLOWED_ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        maxTokenAge: '2 minutes',
        requiredClaims: ['iat', 'jti', 'events'],
      }));
    } catch (err) {
      throw new BadRequestError(`The logout token is not valid (${reason(err)}).`, { cause: err, code: 'invalid_logout_token' });
    }
    const events = payload.events as Record<string, unknown> | undefined;
    if (!events || typeof events !== 'object' || typeof events[BACKCHANNEL_EVENT] !== 'object' || events[BACKCHANNEL_EVENT] === null) {
      throw new BadRequestError('The logout token has no back-channel logout event.', { code: 'invalid_logout_token' });
    }
    if ('nonce' in payload) throw new BadRequestError('A logout token must not carry a nonce.', { code: 'invalid_logout_token' });
    const sub = typeof payload.sub === 'string' ? payload.sub : undefined;
    const sid = typeof payload.sid === 'string' ? payload.sid : undefined;
    if (!sub && !sid) throw new BadRequestError('The logout token names neither a subject nor a session.', { code: 'invalid_logout_token' });
    // A replayed token is refused; remember ids for the token's useful life.
    const now = Date.now();
    for (const [jti, until] of this.seenLogoutJtis) if (until < now) this.seenLogoutJtis.delete(jti);
    const jti = String(payload.jti);
    if (this.seenLogoutJtis.has(jti)) throw new BadRequestError('This logout token was already used.', { code: 'invalid_logout_token' });
    this.seenLogoutJtis.set(jti, now + 5 * 60_000);
    return { sub, sid };
  }
}

function reason(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `${err.claim} ${err.reason}`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed';
  if (err instanceof errors.JWKSNoMatchingKey) return 'unknown signing key';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'bad signature';
  if (err instanceof errors.JOSEError) return err.code;
  return 'unreadable';
}

function invalidToken(why: string, cause?: unknown): UnauthenticatedError {
  const error = new UnauthenticatedError(`The bearer token is not valid (${why}).`, { cause, code: 'invalid_token' });
  Object.assign(error, { headers: { 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${why.replace(/"/g, '')}"` } });
  return error;
}
