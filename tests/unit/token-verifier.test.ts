import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportPKCS8, generateKeyPair, importPKCS8, SignJWT, UnsecuredJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { BadRequestError, UnauthenticatedError } from '../../lib/errors.ts';
import { localKeys, remoteKeys, TokenVerifier, type VerifierSource } from '../../lib/oidc/token-verifier.ts';

/**
 * Tokens are made here with jose's SignJWT and keys generated for the test: the provider's side of
 * the wire, never the portal's own signer.
 */
const ISSUER = 'https://idp.example/';
const AUDIENCE = 'https://api.example/';
const CLIENT_ID = 'atrium-portal';
const BACKCHANNEL = 'http://schemas.openid.net/event/backchannel-logout';
const T = 1_750_000_000; // seconds

interface TestKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
  /** For an RSA key: the private key as PKCS#8, since a CryptoKey signs with one hash only. */
  pkcs8?: string;
}
const keys: Record<string, TestKey> = {};
let rsa: TestKey;
let ec256: TestKey;

async function makeKey(kid: string, alg: string, options: { crv?: string } = {}): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...options });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid }, ...(alg.startsWith('RS') ? { pkcs8: await exportPKCS8(privateKey) } : {}) };
}

beforeAll(async () => {
  rsa = await makeKey('rsa', 'RS256');
  ec256 = await makeKey('p256', 'ES256');
  keys.rsa = rsa;
  keys.p256 = ec256;
  keys.p384 = await makeKey('p384', 'ES384');
  keys.p521 = await makeKey('p521', 'ES512');
  keys.ed = await makeKey('ed', 'EdDSA', { crv: 'Ed25519' });
});

/** Which test key signs with each algorithm the portal should accept (written out here, not read from the module). */
const ACCEPTED: [alg: string, key: string][] = [
  ['RS256', 'rsa'],
  ['RS384', 'rsa'],
  ['RS512', 'rsa'],
  ['PS256', 'rsa'],
  ['PS384', 'rsa'],
  ['PS512', 'rsa'],
  ['ES256', 'p256'],
  ['ES384', 'p384'],
  ['ES512', 'p521'],
  ['EdDSA', 'ed'],
];

function source(extra: Partial<VerifierSource> = {}): VerifierSource & { keyLookups: number } {
  const s = {
    keyLookups: 0,
    issuer: async () => ISSUER,
    keys: async () => {
      s.keyLookups++;
      return localKeys({ keys: Object.values(keys).map((k) => k.jwk) });
    },
    ...extra,
  };
  return s;
}

async function sign(claims: JWTPayload, options: { key?: TestKey; alg?: string; kid?: string } = {}): Promise<string> {
  const key = options.key ?? ec256;
  const alg = options.alg ?? 'ES256';
  const privateKey = key.pkcs8 ? await importPKCS8(key.pkcs8, alg) : key.privateKey;
  return new SignJWT(claims).setProtectedHeader({ alg, kid: options.kid ?? key.kid }).sign(privateKey);
}

const now = () => Math.floor(Date.now() / 1000);
const accessClaims = (extra: JWTPayload = {}): JWTPayload => ({ iss: ISSUER, aud: AUDIENCE, sub: 'user-1', iat: now(), exp: now() + 300, scope: 'access:ea', ...extra });

async function refusal(promise: Promise<unknown>): Promise<UnauthenticatedError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof UnauthenticatedError)) throw new Error(`expected an UnauthenticatedError, got ${String(err)}`);
  return err;
}

async function expectInvalid(promise: Promise<unknown>, why: string): Promise<void> {
  const err = await refusal(promise);
  expect(err.status).toBe(401);
  expect(err.code).toBe('invalid_token');
  expect(err.message).toBe(`The bearer token is not valid (${why}).`);
  expect((err as unknown as { headers: Record<string, string> }).headers).toEqual({ 'WWW-Authenticate': `Bearer error="invalid_token", error_description="${why}"` });
}

beforeAll(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(T * 1000);
});
afterEach(() => {
  vi.setSystemTime(T * 1000);
});
afterAll(() => {
  vi.useRealTimers();
});

describe('TokenVerifier.verifyAccessToken', () => {
  it('accepts a token of the provider for our audience, with each allowed algorithm', async () => {
    const verifier = new TokenVerifier(source());
    for (const [alg, key] of ACCEPTED) {
      const token = await sign(accessClaims({ jti: alg }), { key: keys[key], alg });
      expect((await verifier.verifyAccessToken(token, AUDIENCE)).jti, alg).toBe(alg);
    }
  });

  it('accepts an audience among several', async () => {
    const token = await sign(accessClaims({ aud: ['https://other.example/', AUDIENCE] }));
    expect((await new TokenVerifier(source()).verifyAccessToken(token, AUDIENCE)).sub).toBe('user-1');
  });

  it('accepts nothing at all without an audience to check', async () => {
    const s = source();
    const token = await sign(accessClaims());
    for (const audience of [undefined, '']) {
      await expectInvalid(new TokenVerifier(s).verifyAccessToken(token, audience), 'bearer tokens are accepted only when OIDC_AUDIENCE is set');
    }
    expect(s.keyLookups).toBe(0);
  });

  it('refuses a token for another audience or from another issuer', async () => {
    const verifier = new TokenVerifier(source());
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ aud: 'https://other.example/' })), AUDIENCE), 'aud check_failed');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ aud: undefined })), AUDIENCE), 'aud missing');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ iss: 'https://evil.example/' })), AUDIENCE), 'iss check_failed');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ iss: undefined })), AUDIENCE), 'iss missing');
  });

  it('requires an expiry and a subject', async () => {
    const verifier = new TokenVerifier(source());
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ exp: undefined })), AUDIENCE), 'exp missing');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ sub: undefined })), AUDIENCE), 'sub missing');
  });

  it('allows thirty seconds of clock skew and no more', async () => {
    const verifier = new TokenVerifier(source());
    expect((await verifier.verifyAccessToken(await sign(accessClaims({ exp: now() - 29 })), AUDIENCE)).sub).toBe('user-1');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ exp: now() - 30 })), AUDIENCE), 'expired');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ exp: now() - 3600 })), AUDIENCE), 'expired');
    expect((await verifier.verifyAccessToken(await sign(accessClaims({ nbf: now() + 29 })), AUDIENCE)).sub).toBe('user-1');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims({ nbf: now() + 31 })), AUDIENCE), 'nbf check_failed');
  });

  it('refuses HMAC and unsigned tokens whatever they say', async () => {
    const verifier = new TokenVerifier(source());
    const hs = await new SignJWT(accessClaims()).setProtectedHeader({ alg: 'HS256', kid: 'p256' }).sign(new TextEncoder().encode('a-shared-secret-of-thirty-two-bytes!'));
    await expectInvalid(verifier.verifyAccessToken(hs, AUDIENCE), 'algorithm not allowed');
    const none = new UnsecuredJWT(accessClaims()).encode();
    // An unsecured JWT ends in "." (an empty signature): it is not even shaped like a signed one.
    await expectInvalid(verifier.verifyAccessToken(none, AUDIENCE), 'malformed');
    await expectInvalid(verifier.verifyAccessToken(`${none}AAAA`, AUDIENCE), 'algorithm not allowed');
  });

  it('refuses a bad signature, an unknown key, and a token that does not parse', async () => {
    const verifier = new TokenVerifier(source());
    const token = await sign(accessClaims());
    const [header, payload, signature] = token.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...accessClaims(), scope: 'access:admin' })).toString('base64url');
    await expectInvalid(verifier.verifyAccessToken(`${header}.${forged}.${signature}`, AUDIENCE), 'bad signature');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims(), { kid: 'unknown' }), AUDIENCE), 'unknown signing key');
    await expectInvalid(verifier.verifyAccessToken(`aaaa.${payload}.${signature}`, AUDIENCE), 'ERR_JWS_INVALID');
  });

  it('refuses what is not shaped like a compact JWS, before any key is looked up', async () => {
    const s = source();
    const verifier = new TokenVerifier(s);
    const token = await sign(accessClaims());
    for (const bad of ['', 'abc', 'a.b', 'a.b.c.d', `${token}.x`, `${token}!`, `!${token}`, ` ${token}`, `${token} `, `${token}\n`, token.replace('.', '..'), `a.b.c/`, `a+b.c.d`, `${'a'.repeat(16_381)}.b.c`]) {
      await expectInvalid(verifier.verifyAccessToken(bad, AUDIENCE), 'malformed');
    }
    expect(s.keyLookups).toBe(0);
    // At the length limit a token is looked at (and found wanting for what it is).
    const longest = `${'a'.repeat(16_381)}.b.c`.slice(1);
    expect(longest).toHaveLength(16_384);
    await expectInvalid(verifier.verifyAccessToken(longest, AUDIENCE), 'ERR_JWS_INVALID');
  });

  it('says "unreadable" when the keys cannot be had', async () => {
    const verifier = new TokenVerifier(
      source({
        keys: async () => {
          throw new Error('provider down');
        },
      }),
    );
    const err = await refusal(verifier.verifyAccessToken(await sign(accessClaims()), AUDIENCE));
    expect(err.message).toBe('The bearer token is not valid (unreadable).');
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('remembers a verified token until it expires (with the same leeway), then checks it again', async () => {
    const s = source();
    const verifier = new TokenVerifier(s);
    const token = await sign(accessClaims({ exp: T + 60 }));
    const first = await verifier.verifyAccessToken(token, AUDIENCE);
    expect(s.keyLookups).toBe(1);
    expect(await verifier.verifyAccessToken(token, AUDIENCE)).toBe(first);
    vi.setSystemTime((T + 89) * 1000);
    expect(await verifier.verifyAccessToken(token, AUDIENCE)).toBe(first);
    expect(s.keyLookups).toBe(1);
    vi.setSystemTime((T + 90) * 1000);
    await expectInvalid(verifier.verifyAccessToken(token, AUDIENCE), 'expired');
    expect(s.keyLookups).toBe(2);
  });

  it('remembers several tokens at once', async () => {
    const s = source();
    const verifier = new TokenVerifier(s);
    const a = await sign(accessClaims({ jti: 'a' }));
    const b = await sign(accessClaims({ jti: 'b' }));
    await verifier.verifyAccessToken(a, AUDIENCE);
    await verifier.verifyAccessToken(b, AUDIENCE);
    await verifier.verifyAccessToken(a, AUDIENCE);
    await verifier.verifyAccessToken(b, AUDIENCE);
    expect(s.keyLookups).toBe(2);
  });

  it('does not remember a token it refused', async () => {
    const s = source();
    const verifier = new TokenVerifier(s);
    const token = await sign(accessClaims({ aud: 'https://other.example/' }));
    await expectInvalid(verifier.verifyAccessToken(token, AUDIENCE), 'aud check_failed');
    await expectInvalid(verifier.verifyAccessToken(token, AUDIENCE), 'aud check_failed');
    expect(s.keyLookups).toBe(2);
  });
});

describe('TokenVerifier.grantsLevel', () => {
  it('counts a token’s grants unless the source says otherwise', () => {
    expect(new TokenVerifier(source()).grantsLevel({ sub: 'x' })).toBe(true);
    const seen: JWTPayload[] = [];
    const only = new TokenVerifier(source({ tokenGrantsLevel: (claims) => (seen.push(claims), claims.client_id === 'machine') }));
    expect(only.grantsLevel({ sub: 'x', client_id: 'machine' })).toBe(true);
    expect(only.grantsLevel({ sub: 'x' })).toBe(false);
    expect(seen).toEqual([{ sub: 'x', client_id: 'machine' }, { sub: 'x' }]);
  });
});

const logoutClaims = (extra: JWTPayload = {}): JWTPayload => ({ iss: ISSUER, aud: CLIENT_ID, iat: now(), exp: now() + 120, jti: `jti-${Math.random()}`, events: { [BACKCHANNEL]: {} }, sub: 'user-1', sid: 'sid-1', ...extra });

async function logoutRefusal(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof BadRequestError)) throw new Error(`expected a BadRequestError, got ${String(err)}`);
  expect(err.code).toBe('invalid_logout_token');
  expect(err.status).toBe(400);
  return err.message;
}

describe('TokenVerifier.verifyLogoutToken', () => {
  it('accepts a logout token naming a subject, a session or both', async () => {
    const verifier = new TokenVerifier(source());
    expect(await verifier.verifyLogoutToken(await sign(logoutClaims()), CLIENT_ID)).toEqual({ sub: 'user-1', sid: 'sid-1' });
    expect(await verifier.verifyLogoutToken(await sign(logoutClaims({ sid: undefined })), CLIENT_ID)).toEqual({ sub: 'user-1', sid: undefined });
    expect(await verifier.verifyLogoutToken(await sign(logoutClaims({ sub: undefined })), CLIENT_ID)).toEqual({ sub: undefined, sid: 'sid-1' });
    for (const [alg, key] of ACCEPTED) {
      expect((await verifier.verifyLogoutToken(await sign(logoutClaims(), { key: keys[key], alg }), CLIENT_ID)).sub, alg).toBe('user-1');
    }
  });

  it('refuses one that names neither, or names them with something other than strings', async () => {
    const verifier = new TokenVerifier(source());
    const neither = 'The logout token names neither a subject nor a session.';
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ sub: undefined, sid: undefined })), CLIENT_ID))).toBe(neither);
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ sub: undefined, sid: 7 as unknown as string })), CLIENT_ID))).toBe(neither);
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ sub: undefined, sid: '' })), CLIENT_ID))).toBe(neither);
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ sub: 7 as unknown as string, sid: undefined })), CLIENT_ID))).toBe(neither);
    expect(await verifier.verifyLogoutToken(await sign(logoutClaims({ sid: ['x'] as unknown as string })), CLIENT_ID)).toEqual({ sub: 'user-1', sid: undefined });
    expect(await verifier.verifyLogoutToken(await sign(logoutClaims({ sub: 7 as unknown as string })), CLIENT_ID)).toEqual({ sub: undefined, sid: 'sid-1' });
  });

  it('refuses one for another client, from another issuer, or badly signed', async () => {
    const verifier = new TokenVerifier(source());
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ aud: 'other-client' })), CLIENT_ID))).toBe('The logout token is not valid (aud check_failed).');
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ iss: 'https://evil.example/' })), CLIENT_ID))).toBe('The logout token is not valid (iss check_failed).');
    const hs = await new SignJWT(logoutClaims()).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode('a-shared-secret-of-thirty-two-bytes!'));
    expect(await logoutRefusal(verifier.verifyLogoutToken(hs, CLIENT_ID))).toBe('The logout token is not valid (algorithm not allowed).');
  });

  it('requires iat, jti and events, and refuses one older than two minutes', async () => {
    const verifier = new TokenVerifier(source());
    for (const claim of ['iat', 'jti', 'events']) {
      expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ [claim]: undefined })), CLIENT_ID)), claim).toBe(`The logout token is not valid (${claim} missing).`);
    }
    // Two minutes, plus the same thirty seconds of leeway.
    expect((await verifier.verifyLogoutToken(await sign(logoutClaims({ iat: now() - 150 })), CLIENT_ID)).sub).toBe('user-1');
    expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ iat: now() - 151 })), CLIENT_ID))).toBe('The logout token is not valid (expired).');
  });

  it('requires the back-channel logout event, as an object', async () => {
    const verifier = new TokenVerifier(source());
    const noEvent = 'The logout token has no back-channel logout event.';
    for (const events of [{}, { 'http://schemas.openid.net/event/other': {} }, { [BACKCHANNEL]: null }, { [BACKCHANNEL]: 'yes' }, { [BACKCHANNEL]: true }, null, 'events', 1]) {
      expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ events: events as never })), CLIENT_ID)), JSON.stringify(events)).toBe(noEvent);
    }
    expect((await verifier.verifyLogoutToken(await sign(logoutClaims({ events: { [BACKCHANNEL]: [] } })), CLIENT_ID)).sub).toBe('user-1');
  });

  it('refuses one carrying a nonce (an ID token is not a logout token)', async () => {
    const verifier = new TokenVerifier(source());
    for (const nonce of ['n-1', '', null]) {
      expect(await logoutRefusal(verifier.verifyLogoutToken(await sign(logoutClaims({ nonce: nonce as string })), CLIENT_ID))).toBe('A logout token must not carry a nonce.');
    }
  });

  it('refuses a replayed token, also a minute later, and tells replays of different tokens apart', async () => {
    const verifier = new TokenVerifier(source());
    const token = await sign(logoutClaims({ jti: 'once' }));
    await verifier.verifyLogoutToken(token, CLIENT_ID);
    expect(await logoutRefusal(verifier.verifyLogoutToken(token, CLIENT_ID))).toBe('This logout token was already used.');
    vi.setSystemTime((T + 60) * 1000);
    expect(await logoutRefusal(verifier.verifyLogoutToken(token, CLIENT_ID))).toBe('This logout token was already used.');
    // Another token (another jti) is still fine, and does not make the first one usable again.
    expect((await verifier.verifyLogoutToken(await sign(logoutClaims({ jti: 'twice' })), CLIENT_ID)).sub).toBe('user-1');
    expect(await logoutRefusal(verifier.verifyLogoutToken(token, CLIENT_ID))).toBe('This logout token was already used.');
    // Another verifier (another portal process) has its own memory.
    expect((await new TokenVerifier(source()).verifyLogoutToken(token, CLIENT_ID)).sub).toBe('user-1');
  });
});

describe('remoteKeys', () => {
  let server: Server;
  let uri: string;
  let served: JWK[] = [];
  let fetches = 0;

  beforeAll(async () => {
    server = createServer((_req, res) => {
      fetches++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: served }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
  });
  afterAll(() => {
    server?.close();
  });

  const remoteSource = (getKey: ReturnType<typeof remoteKeys>) => source({ keys: async () => getKey });

  it('fetches the provider’s keys and refetches for an unknown kid once the cooldown has passed', async () => {
    served = [ec256.jwk];
    fetches = 0;
    const verifier = new TokenVerifier(remoteSource(remoteKeys(uri, 0)));
    expect((await verifier.verifyAccessToken(await sign(accessClaims()), AUDIENCE)).sub).toBe('user-1');
    expect(fetches).toBe(1);
    // The provider rotated to a new key.
    served = [ec256.jwk, rsa.jwk];
    expect((await verifier.verifyAccessToken(await sign(accessClaims(), { key: rsa, alg: 'RS256' }), AUDIENCE)).sub).toBe('user-1');
    expect(fetches).toBe(2);
  });

  it('does not refetch for unknown kids within the cooldown (thirty seconds by default)', async () => {
    served = [ec256.jwk];
    fetches = 0;
    const verifier = new TokenVerifier(remoteSource(remoteKeys(uri)));
    await verifier.verifyAccessToken(await sign(accessClaims()), AUDIENCE);
    served = [ec256.jwk, rsa.jwk];
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims(), { key: rsa, alg: 'RS256', kid: 'rsa' }), AUDIENCE), 'unknown signing key');
    await expectInvalid(verifier.verifyAccessToken(await sign(accessClaims(), { kid: 'garbage' }), AUDIENCE), 'unknown signing key');
    expect(fetches).toBe(1);
    vi.setSystemTime((T + 31) * 1000);
    expect((await verifier.verifyAccessToken(await sign(accessClaims(), { key: rsa, alg: 'RS256' }), AUDIENCE)).sub).toBe('user-1');
    expect(fetches).toBe(2);
  });

  it('keeps the keys for ten minutes, then fetches them afresh', async () => {
    served = [ec256.jwk];
    fetches = 0;
    const verifier = new TokenVerifier(remoteSource(remoteKeys(uri)));
    await verifier.verifyAccessToken(await sign(accessClaims({ jti: 'a' })), AUDIENCE);
    vi.setSystemTime((T + 599) * 1000);
    await verifier.verifyAccessToken(await sign(accessClaims({ jti: 'b' })), AUDIENCE);
    expect(fetches).toBe(1);
    vi.setSystemTime((T + 601) * 1000);
    await verifier.verifyAccessToken(await sign(accessClaims({ jti: 'c' })), AUDIENCE);
    expect(fetches).toBe(2);
  });
});
