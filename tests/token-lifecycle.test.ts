import { createHmac } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../lib/cli.ts';
import { readSetting } from '../lib/db/settings.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { MODES, startModePortal } from './helpers/modes.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, cookieHeader, disconnected } from './helpers/sockets.ts';

/** One app per tier answering with the user the portal resolved, and a realtime namespace. */
const whoami = (name: string) => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { app: ${JSON.stringify(name)}, sub: ctx.state.user.sub, level: ctx.state.user.level, groups: ctx.state.user.groups }; });
export default { app, realtime(nsp) { nsp.on('connection', () => {}); } };
`;

let portal: TestPortal;
const TTL_S = 4;

beforeAll(async () => {
  const apps = makeAppsDir({ 'stable/who/index.js': whoami('who'), 'ea/api/index.js': whoami('api'), 'devel/lab/index.js': whoami('lab') });
  portal = await startTestPortal({ env: { APPS_DIR: apps, IDP_ACCESS_TOKEN_TTL: String(TTL_S) } });
});
afterAll(async () => {
  await portal?.stopAll();
});

const sessionRow = async (agent: Agent) => {
  const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', agent.cookie('atrium.sid')!.value).executeTakeFirst();
  return row ? JSON.parse(row.data) : undefined;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('server-side refresh', () => {
  it('refreshes shortly before expiry without the browser noticing; the refresh token never leaves the server', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const before = await sessionRow(agent);
    // The embedded provider issued a short-lived token (how much of it is left depends on the clock).
    expect(before.tokens.expiresAt - before.tokens.issuedAt).toBeGreaterThan(0);
    // Token times are whole seconds and the portal's clock reads milliseconds: up to a second apart.
    expect(before.tokens.expiresAt - before.tokens.issuedAt).toBeLessThanOrEqual(TTL_S * 1000 + 1000);
    expect(decodeJwt(before.tokens.access).exp! - decodeJwt(before.tokens.access).iat!).toBe(TTL_S);
    await sleep(TTL_S * 1000);
    const r = await agent.get('/apps/ea/api/', { Accept: 'application/json' });
    expect(r.status).toBe(200);
    const after = await sessionRow(agent);
    expect(after.tokens.access).not.toBe(before.tokens.access);
    expect(after.tokens.expiresAt).toBeGreaterThan(Date.now());
    expect(decodeJwt(after.tokens.access).scope).toBe('access:stable access:ea');
    for (const cookie of agent.cookies.values()) expect(cookie.value).not.toContain(after.tokens.refresh);
  });

  it('twenty concurrent requests at expiry cause exactly one refresh', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    await sleep(TTL_S * 1000);
    const count = portal.portal.refresher.refreshes;
    const results = await Promise.all(Array.from({ length: 20 }, () => agent.get('/apps/devel/lab/', { Accept: 'application/json' })));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(portal.portal.refresher.refreshes - count).toBe(1);
    // And the session still works afterwards with the rotated tokens.
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(200);
  });

  it('a revoked refresh token ends the session: a browser goes to login with returnTo, an API call gets 401', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    const { tokens } = await sessionRow(agent);
    const secret = portal.portal.embedded!.client.secret;
    const revoke = await fetch(`${portal.origin}/idp/token/revocation`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Basic ${Buffer.from(`atrium-portal:${secret}`).toString('base64')}` },
      body: new URLSearchParams({ token: tokens.refresh, token_type_hint: 'refresh_token' }),
    });
    expect(revoke.status).toBe(200);
    await sleep(TTL_S * 1000);
    const browser = await agent.get('/apps/stable/who/?x=1');
    expect(browser.status).toBe(302);
    expect(browser.location).toBe(`${portal.origin}/login?returnTo=${encodeURIComponent('/apps/stable/who/?x=1')}`);
    expect((await agent.get('/apps/stable/who/', { Accept: 'application/json' })).status).toBe(401);
  });
});

describe('session limits', () => {
  it('ends an idle session and an old one, on the server, and disconnects their sockets', async () => {
    const limited = await startTestPortal({ env: { SESSION_IDLE_TIMEOUT: '2', SESSION_MAX_LIFETIME: '4', APPS_DIR: makeAppsDir({ 'stable/who/index.js': whoami('who') }) } });
    try {
      // Idle: unused for longer than 2 s.
      const idle = new Agent(limited.origin);
      await idle.login('stable@example.com', DEMO_PASSWORD);
      // A socket is not activity: an open one does not keep the session alive, and goes with it.
      const idleSocket = await connect(limited.origin, '/apps/stable/who', cookieHeader(idle));
      if (!idleSocket.ok) throw new Error(`socket refused: ${idleSocket.message}`);
      // No request meanwhile: the session's own idle deadline closes the socket, not a request that finds it over.
      await disconnected(idleSocket.socket, 20_000);
      expect((await idle.get('/apps/stable/who/', { Accept: 'application/json' })).status).toBe(401);

      // Absolute: active every second, still ended after 4 s; its socket goes with it.
      const busy = new Agent(limited.origin);
      await busy.login('stable@example.com', DEMO_PASSWORD);
      const socket = await connect(limited.origin, '/apps/stable/who', cookieHeader(busy));
      if (!socket.ok) throw new Error(`socket refused: ${socket.message}`);
      const started = Date.now();
      // The deadline only bounds a failure: ending is event-driven.
      const gone = disconnected(socket.socket, 20_000);
      let status = 200;
      while (status === 200 && Date.now() - started < 8_000) {
        status = (await busy.get('/apps/stable/who/', { Accept: 'application/json' })).status;
        if (status === 200) await sleep(700);
      }
      expect(status).toBe(401);
      expect(Date.now() - started).toBeGreaterThan(3_000);
      await gone;
    } finally {
      await limited.stopAll();
    }
  });
});

describe.each(MODES)('the absolute lifetime, with %s', (mode) => {
  it('ends a session in use on every app path: the hot path, sockets and app origins alike', { timeout: 60_000 }, async () => {
    // Requests every 200 ms: most take the hot path (an idle touch is due only once a second).
    // Every request that starts after the lifetime must be refused, on whichever path it takes.
    const LIFETIME_MS = 4_000;
    const setup = await startModePortal(mode, { env: { SESSION_IDLE_TIMEOUT: '3', SESSION_MAX_LIFETIME: String(LIFETIME_MS / 1000), APPS_DIR: makeAppsDir({ 'stable/who/index.js': whoami('who') }) } });
    try {
      const browser = await setup.signedIn('stable@example.com');
      const signedInAt = Date.now();
      expect((await browser.call('stable', 'who', '/')).status).toBe(200);
      const socket = await browser.socket('stable', 'who');
      if (!socket.ok) throw new Error(`socket refused: ${socket.message}`);
      const gone = disconnected(socket.socket, 30_000);
      const servedAfterLifetime: number[] = [];
      let refused = false;
      while (Date.now() - signedInAt < LIFETIME_MS + 2_000) {
        const startedAt = Date.now();
        const { status } = await browser.call('stable', 'who', '/');
        if (status === 200 && startedAt - signedInAt > LIFETIME_MS) servedAfterLifetime.push(startedAt - signedInAt);
        if (status === 401) refused = true;
        await sleep(200);
      }
      expect(servedAfterLifetime).toEqual([]);
      expect(refused).toBe(true);
      await gone;
    } finally {
      await setup.stopAll();
    }
  });
});

describe('the hot path', () => {
  it('refuses a session past its absolute lifetime even while its stored copy lives on', async () => {
    // Defence in depth: the store's expiry normally ends such a session first. Here the stored
    // copy is given a long life, so only the hot path's own lifetime check stands in the way.
    const limited = await startTestPortal({ env: { SESSION_IDLE_TIMEOUT: '600', SESSION_MAX_LIFETIME: '3600', APPS_DIR: makeAppsDir({ 'stable/who/index.js': whoami('who') }) } });
    try {
      const agent = new Agent(limited.origin);
      await agent.login('stable@example.com', DEMO_PASSWORD);
      expect((await agent.get('/apps/stable/who/', { Accept: 'application/json' })).status).toBe(200);
      const sid = agent.cookie('atrium.sid')!.value;
      const stored = await limited.portal.sessions.get(sid);
      const data = stored!.data as Record<string, unknown> & { sub: string };
      const now = Date.now();
      // Signed in two hours ago, seen a moment ago: no idle touch is due, the lifetime is over.
      await limited.portal.sessions.set(sid, { ...data, authAt: now - 7_200_000, seenAt: now, _expire: now + 600_000 }, 600_000, { subject: data.sub });
      expect((await agent.get('/apps/stable/who/', { Accept: 'application/json' })).status).toBe(401);
    } finally {
      await limited.stopAll();
    }
  });
});

describe('back-channel logout', () => {
  it('ending the provider session ends the portal session and its sockets', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    expect((await sessionRow(agent)).idpSid).toEqual(expect.any(String));
    const socket = await connect(portal.origin, '/apps/ea/api', cookieHeader(agent));
    if (!socket.ok) throw new Error('expected a socket');
    const gone = disconnected(socket.socket, 15_000);
    // Sign out at the provider directly (as another app of the same provider would).
    const confirm = await agent.get('/idp/session/end?client_id=atrium-portal');
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.text)![1]!;
    const done = await agent.request('POST', '/idp/session/end/confirm', { form: { xsrf, logout: 'yes' } });
    expect(done.status).toBe(303);
    await gone;
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
  });

  it('refuses forged, replayed and malformed logout tokens with 400', async () => {
    const post = (body: Record<string, string>) =>
      fetch(`${portal.origin}/auth/backchannel-logout`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) });
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sid: 'x' })
      .setProtectedHeader({ alg: 'RS256' })
      .setIssuer(`${portal.origin}/idp`)
      .setAudience('atrium-portal')
      .setIssuedAt()
      .setJti('forged')
      .sign(privateKey);
    for (const body of [{}, { logout_token: 'garbage' }, { logout_token: forged }] as Record<string, string>[]) expect((await post(body)).status).toBe(400);
    const key = await idpKey();
    const valid = (claims: Record<string, unknown>) =>
      new SignJWT({ events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: key.kid })
        .setIssuer(`${portal.origin}/idp`)
        .setAudience('atrium-portal')
        .setIssuedAt()
        .setJti(`jti-${Math.random()}`)
        .sign(key.privateKey);
    expect((await post({ logout_token: await valid({ sub: 'someone' }) })).status).toBe(200);
    const once = await valid({ sub: 'someone' });
    expect((await post({ logout_token: once })).status).toBe(200);
    expect((await post({ logout_token: once })).status).toBe(400); // replay
    expect((await post({ logout_token: await valid({ sub: 'x', nonce: 'n' }) })).status).toBe(400);
    expect((await post({ logout_token: await valid({}) })).status).toBe(400); // neither sub nor sid
    const noEvent = await new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'RS256', kid: key.kid }).setIssuer(`${portal.origin}/idp`).setAudience('atrium-portal').setIssuedAt().setJti('ne').sign(key.privateKey);
    expect((await post({ logout_token: noEvent })).status).toBe(400);
  });
});

/** The embedded provider's signing key, read from its database, to mint tokens with chosen flaws. */
async function idpKey(): Promise<{ privateKey: CryptoKey; kid: string; jwk: JWK }> {
  const jwks = JSON.parse((await readSetting(portal.portal.database, 'idp_jwks'))!) as { keys: (JWK & { kid: string })[] };
  const jwk = jwks.keys[0]!;
  return { privateKey: (await importJWK(jwk, 'RS256')) as CryptoKey, kid: jwk.kid, jwk };
}

describe('bearer tokens', () => {
  let clientId: string;
  let clientSecret: string;

  beforeAll(async () => {
    let out = '';
    const code = await runCli(['clients', 'add', 'reporting', '--level', 'ea', '--json'], portal.portal.database, { out: (t) => (out += t), err: () => {} }, 'cli:test');
    expect(code).toBe(0);
    ({ clientId, clientSecret } = JSON.parse(out));
  });

  const machineToken = async (scope: string) => {
    const r = await fetch(`${portal.origin}/idp/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
    });
    const body = (await r.json()) as { access_token: string };
    expect(r.status, JSON.stringify(body)).toBe(200);
    return body.access_token;
  };
  const call = (path: string, token: string) => fetch(`${portal.origin}${path}`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });

  it('a machine client registered with the CLI gets a token by client credentials and calls apps of its level', async () => {
    const token = await machineToken('access:stable access:ea');
    expect(decodeJwt(token)).toMatchObject({ scope: 'access:stable access:ea', aud: portal.origin, client_id: clientId });
    const ok = await call('/apps/ea/api/', token);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ sub: clientId, level: 'ea' });
    expect((await call('/apps/devel/lab/', token)).status).toBe(403);
    // Asking for more than the client was registered with gets nothing more.
    const greedy = await machineToken('access:admin access:devel');
    expect(decodeJwt(greedy).scope ?? '').not.toMatch(/admin|devel/);
    expect((await call('/apps/devel/lab/', greedy)).status).toBe(403);
    expect((await call('/apps/stable/who/', greedy)).status).toBe(403);
  });

  it('a user’s access token works as a bearer token too, with their directory groups', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    const { tokens } = await sessionRow(agent);
    const r = await call('/apps/devel/lab/', tokens.access);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ level: 'devel', groups: ['devel', 'ea', 'stable'] });
  });

  it('answers every hostile token with 401 and never 500', async () => {
    const key = await idpKey();
    const good = await machineToken('access:stable access:ea');
    const claims = decodeJwt(good);
    const header = decodeProtectedHeader(good);
    const sign = (payload: Record<string, unknown>, options: { kid?: string; alg?: string } = {}) =>
      new SignJWT({ ...claims, ...payload }).setProtectedHeader({ alg: 'RS256', kid: options.kid ?? key.kid, typ: header.typ }).sign(key.privateKey);
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const [h, p, s] = good.split('.');
    const publicPem = JSON.stringify({ kty: key.jwk.kty, n: key.jwk.n, e: key.jwk.e });
    const hs256 = `${b64({ alg: 'HS256', kid: key.kid })}.${b64({ ...claims, scope: 'access:admin' })}`;
    const { privateKey: stranger } = await generateKeyPair('RS256');
    const hostile: Record<string, string> = {
      'alg none': `${b64({ alg: 'none' })}.${b64({ ...claims, scope: 'access:admin' })}.`,
      'HS256 signed with the public key': `${hs256}.${createHmac('sha256', publicPem).update(hs256).digest('base64url')}`,
      expired: await sign({ exp: now - 120, iat: now - 600 }),
      'not yet valid': await sign({ nbf: now + 600 }),
      'wrong issuer': await sign({ iss: 'https://evil.example/' }),
      'wrong audience': await sign({ aud: 'https://another-api.example' }),
      'tampered payload': `${h}.${b64({ ...claims, scope: 'access:admin' })}.${s}`,
      'unknown kid': await sign({}, { kid: 'not-a-known-key' }),
      'signed by a stranger': await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: key.kid }).sign(stranger),
      'a token for another client (an ID token)': await sign({ aud: 'atrium-portal', scope: undefined }),
      garbage: 'not.a.jwt',
      empty: '',
      huge: 'a'.repeat(20_000),
    };
    void p;
    for (const [name, token] of Object.entries(hostile)) {
      const r = await call('/apps/ea/api/', token);
      if (name === 'huge') {
        expect(r.status, name).toBe(431); // Node's HTTP parser refuses the header before the portal sees it
        continue;
      }
      expect(r.status, name).toBe(401);
      const body = (await r.json()) as { error: string };
      expect(body.error, name).toMatch(/invalid_token|invalid_request/);
      expect(r.headers.get('www-authenticate') ?? '', name).toMatch(/^Bearer error=/);
    }
    for (const value of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b', 'Token abc']) {
      const r = await fetch(`${portal.origin}/apps/ea/api/`, { headers: { Authorization: value, Accept: 'application/json' } });
      expect(r.status, value).toBe(401);
    }
    // The good one still works, and is served from the cache the second time.
    expect((await call('/apps/ea/api/', good)).status).toBe(200);
    expect((await call('/apps/ea/api/', good)).status).toBe(200);
  });

  it('refuses a disabled user’s token at once', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('nobody@example.com', DEMO_PASSWORD);
    await portal.portal.admin.addMember('test', 'stable', 'nobody@example.com');
    await agent.login('nobody@example.com', DEMO_PASSWORD);
    const { tokens } = await sessionRow(agent);
    expect((await call('/apps/stable/who/', tokens.access)).status).toBe(200);
    await portal.portal.admin.setDisabled('test', 'nobody@example.com', true);
    try {
      expect((await call('/apps/stable/who/', tokens.access)).status).toBe(401);
    } finally {
      await portal.portal.admin.setDisabled('test', 'nobody@example.com', false);
    }
  });
});
