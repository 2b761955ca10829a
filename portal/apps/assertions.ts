import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { Database } from '../../lib/db/schema.ts';
import { initSetting } from '../../lib/db/settings.ts';
import type { AssertionClaims } from './identity-headers.ts';

const TTL_SECONDS = 60;
const REUSE_MARGIN_SECONDS = 20;

/**
 * Signs the short-lived `X-Atrium-Assertion` JWT that proves to an upstream app that the identity
 * headers came from the portal: ES256, issuer = the portal's public origin, audience = the app's
 * URL, 60 s expiry. The key is generated once and kept in the database (every instance signs with
 * it); its public half is served at `/.well-known/atrium/jwks.json`. The claims are the ones the
 * identity headers carry (identity-headers.ts: the groups the app gets, within budget). A token is
 * reused for the same claims object and audience while it has more than 20 s left, so a busy page
 * does not pay for a signature (nor a cache key of a thousand groups) on every request; the claims
 * objects are cached per user and app (UpstreamIdentities, which keeps the same object while the
 * user's level, groups, profile content and manifest are unchanged), and their tokens go with them.
 */
export class AssertionSigner {
  private readonly cache = new WeakMap<AssertionClaims, Map<string, { token: string; exp: number }>>();

  private constructor(
    private readonly key: CryptoKey,
    private readonly kid: string,
    readonly jwks: { keys: JWK[] },
    private readonly issuer: string,
  ) {}

  static async load(database: Database, issuer: string): Promise<AssertionSigner> {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const candidate = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'ES256', use: 'sig' };
    const stored = JSON.parse(await initSetting(database, 'assertion_jwk', JSON.stringify(candidate))) as JWK & { kid: string };
    const key = (await importJWK(stored, 'ES256')) as CryptoKey;
    const { d: _private, ...publicJwk } = stored;
    return new AssertionSigner(key, stored.kid, { keys: [publicJwk] }, issuer);
  }

  /** The token sign() would return without signing anew, if there is one (no promise on the hot path). */
  reusable(claims: AssertionClaims, audience: string): string | undefined {
    const hit = this.cache.get(claims)?.get(audience);
    return hit && hit.exp - Math.floor(Date.now() / 1000) > REUSE_MARGIN_SECONDS ? hit.token : undefined;
  }

  async sign(claims: AssertionClaims, audience: string): Promise<string> {
    const reused = this.reusable(claims, audience);
    if (reused !== undefined) return reused;
    const now = Math.floor(Date.now() / 1000);
    let byAudience = this.cache.get(claims);
    const { sub, ...rest } = claims;
    // The subject is always there (identity-headers.ts refuses a request whose subject cannot be sent).
    const token = await new SignJWT({ ...rest })
      .setProtectedHeader({ alg: 'ES256', kid: this.kid, typ: 'atrium-assertion+jwt' })
      .setIssuer(this.issuer)
      .setSubject(sub)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + TTL_SECONDS)
      .setJti(randomUUID())
      .sign(this.key);
    if (!byAudience) this.cache.set(claims, (byAudience = new Map()));
    byAudience.set(audience, { token, exp: now + TTL_SECONDS });
    return token;
  }
}
