import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteKeys, TokenVerifier } from '../lib/oidc/token-verifier.ts';

/** A provider's JWKS endpoint whose keys the test can rotate, counting how often it is fetched. */
let jwks: { keys: JWK[] } = { keys: [] };
let fetches = 0;
const server = createServer((_req, res) => {
  fetches += 1;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(jwks));
});
let uri = '';
const ISSUER = 'https://idp.example/';
const AUDIENCE = 'https://api.example';

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function key(kid: string): Promise<{ privateKey: CryptoKey; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

const token = (signer: { privateKey: CryptoKey; jwk: JWK }, sub = 'user-1') =>
  new SignJWT({ scope: 'access:ea' })
    .setProtectedHeader({ alg: 'RS256', kid: signer.jwk.kid! })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(signer.privateKey);

describe('bearer verification against a remote JWKS', () => {
  it('follows a key rotation, caches keys and verified tokens, and does not refetch for junk kids within the cooldown', async () => {
    const first = await key('key-1');
    jwks = { keys: [first.jwk] };
    const keys = remoteKeys(uri, 200);
    const verifier = new TokenVerifier({ issuer: async () => ISSUER, keys: async () => keys });

    const one = await token(first);
    expect((await verifier.verifyAccessToken(one, AUDIENCE)).sub).toBe('user-1');
    expect(fetches).toBe(1);
    await verifier.verifyAccessToken(one, AUDIENCE); // cached token: no work at all
    expect((await verifier.verifyAccessToken(await token(first, 'user-2'), AUDIENCE)).sub).toBe('user-2'); // cached keys
    expect(fetches).toBe(1);

    // The provider rotates: a new key is published, tokens signed with it arrive.
    const second = await key('key-2');
    jwks = { keys: [second.jwk, first.jwk] };
    await new Promise((r) => setTimeout(r, 250)); // past the cooldown
    expect((await verifier.verifyAccessToken(await token(second, 'user-3'), AUDIENCE)).sub).toBe('user-3');
    expect(fetches).toBe(2);

    // Tokens naming unknown kids are refused without a fetch each (cooldown).
    const stranger = await key('key-unknown');
    for (let i = 0; i < 5; i++) await expect(verifier.verifyAccessToken(await token(stranger, `x${i}`), AUDIENCE)).rejects.toMatchObject({ status: 401 });
    expect(fetches).toBeLessThanOrEqual(3);

    // And an audience is required.
    await expect(verifier.verifyAccessToken(one, undefined)).rejects.toMatchObject({ status: 401, code: 'invalid_token' });
  });
});
