import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import type { AtriumUser } from '../../lib/app-kit.ts';
import type { Database } from '../../lib/db/schema.ts';
import { initSetting } from '../../lib/db/settings.ts';

const TTL_SECONDS = 60;
const REUSE_MARGIN_SECONDS = 20;
const MAX_CACHED = 10_000;

/**
 * Signs the short-lived `X-Atrium-Assertion` JWT that proves to an upstream app that the identity
 * headers came from the portal: ES256, issuer = the portal's public origin, audience = the app's
 * URL, 60 s expiry. The key is generated once and kept in the database (every instance signs with
 * it); its public half is served at `/.well-known/atrium/jwks.json`. A token is reused for the same
 * user and app while it has more than 20 s left, so a busy page does not pay for a signature on
 * every request.
 */
export class AssertionSigner {
  private readonly cache = new Map<string, { token: string; exp: number }>();

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

  async sign(user: AtriumUser, audience: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const cacheKey = `${audience}\n${user.sub}\n${user.level}\n${user.groups.join(',')}\n${user.email}\n${user.name}`;
    const hit = this.cache.get(cacheKey);
    if (hit && hit.exp - now > REUSE_MARGIN_SECONDS) return hit.token;
    const token = await new SignJWT({
      email: user.email,
      name: user.name,
      level: user.level,
      groups: user.groups,
    })
      .setProtectedHeader({ alg: 'ES256', kid: this.kid, typ: 'atrium-assertion+jwt' })
      .setIssuer(this.issuer)
      .setAudience(audience)
      .setSubject(user.sub)
      .setIssuedAt(now)
      .setExpirationTime(now + TTL_SECONDS)
      .setJti(randomUUID())
      .sign(this.key);
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
    this.cache.set(cacheKey, { token, exp: now + TTL_SECONDS });
    return token;
  }
}
