import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ACCOUNTS, DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

let portal: TestPortal;
beforeAll(async () => {
  portal = await startTestPortal();
});
afterAll(async () => {
  await portal?.stopAll();
});

const EXPECTED_LEVEL: Record<string, string | null> = {
  'admin@example.com': 'admin',
  'devel@example.com': 'devel',
  'ea@example.com': 'ea',
  'stable@example.com': 'stable',
  'nobody@example.com': null,
};

describe('the OpenID Connect code flow through the embedded provider', () => {
  it.each(DEMO_ACCOUNTS.map((a) => a.email))('signs in %s and reports the right level', async (email) => {
    const agent = new Agent(portal.origin);
    const landed = await agent.login(email, DEMO_PASSWORD);
    expect(landed.status).toBe(200);
    expect(landed.url).toBe(`${portal.origin}/`);
    const me = await agent.get('/me', { Accept: 'application/json' });
    expect(me.status).toBe(200);
    expect(me.json()).toMatchObject({ email, level: EXPECTED_LEVEL[email] });
  });

  it('uses PKCE S256, state and nonce on the authorization request', async () => {
    const agent = new Agent(portal.origin);
    const start = await agent.get('/login');
    expect(start.status).toBe(302);
    const auth = new URL(start.location as string);
    expect(auth.pathname).toBe('/idp/auth');
    expect(auth.searchParams.get('code_challenge_method')).toBe('S256');
    expect(auth.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(auth.searchParams.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(auth.searchParams.get('nonce')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(auth.searchParams.get('response_type')).toBe('code');
  });

  it('brings the user back to the page they asked for', async () => {
    const agent = new Agent(portal.origin);
    const first = await agent.get('/apps/ea/notes/api/notes?x=1');
    expect(first.status).toBe(302);
    expect(first.location).toBe(`${portal.origin}/login?returnTo=${encodeURIComponent('/apps/ea/notes/api/notes?x=1')}`);
    const landed = await agent.login('ea@example.com', DEMO_PASSWORD, '/apps/ea/notes/api/notes?x=1');
    expect(landed.url).toBe(`${portal.origin}/apps/ea/notes/api/notes?x=1`);
    expect(landed.status).toBe(200);
    expect(JSON.parse(landed.text)).toMatchObject({ notes: [] });
  });

  it('refuses a wrong password without signing anyone in', async () => {
    const agent = new Agent(portal.origin);
    const result = await agent.login('admin@example.com', 'not-the-password');
    expect(result.status).toBe(401);
    expect(result.text).toContain('do not match');
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
  });

  it('keeps tokens on the server: the browser holds only an HttpOnly, SameSite=Lax session id', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    const names = [...agent.cookies.keys()];
    const sid = agent.cookie('atrium.sid');
    expect(sid?.httpOnly).toBe(true);
    expect(sid?.sameSite).toBe('lax');
    expect(sid?.secure).toBe(false); // PUBLIC_URL is http here; the https case is in tests/app-responses.test.ts
    expect(sid?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    for (const cookie of agent.cookies.values()) {
      expect(cookie.value).not.toMatch(/^eyJ/); // no JWT anywhere in a cookie
      expect(cookie.value.length).toBeLessThan(200);
    }
    expect(names.filter((n) => n.startsWith('atrium.auth.'))).toEqual([]);
    // The session row holds the tokens, including the refresh token.
    const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', sid!.value).executeTakeFirstOrThrow();
    const data = JSON.parse(row.data);
    expect(data.tokens.refresh).toEqual(expect.any(String));
    expect(decodeJwt(data.tokens.access).scope).toBe('access:stable access:ea access:devel');
  });

  it('changes the session id at login (no fixation)', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    const before = agent.cookie('atrium.sid')!.value;
    const sigBefore = agent.cookie('atrium.sid.sig')!.value;
    // An attacker plants their own valid session cookie in the victim's browser...
    const victim = new Agent(portal.origin);
    victim.cookies.set('atrium.sid', { ...agent.cookie('atrium.sid')! });
    victim.cookies.set('atrium.sid.sig', { ...agent.cookie('atrium.sid.sig')! });
    // ...and the victim signs in: the planted id must not become the victim's session.
    await victim.login('admin@example.com', DEMO_PASSWORD);
    expect(victim.cookie('atrium.sid')!.value).not.toBe(before);
    expect(victim.cookie('atrium.sid.sig')!.value).not.toBe(sigBefore);
    expect((await victim.get('/me', { Accept: 'application/json' })).json().email).toBe('admin@example.com');
    // The planted id no longer names any session.
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
  });

  it('rejects a callback without its login transaction, and a replayed one', async () => {
    const agent = new Agent(portal.origin);
    const bare = await agent.get('/auth/callback?code=abc&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    expect(bare.status).toBe(400);
    const garbage = await agent.get('/auth/callback?code=abc&state=%3Cscript%3E');
    expect(garbage.status).toBe(400);
    expect(garbage.text).not.toContain('<script>');

    // Capture a real callback URL, use it once, then replay it.
    const hops = await agent.follow('/login');
    const form = hops.at(-1)!;
    const action = /action="([^"]+)"/.exec(form.text)![1]!;
    const posted = await agent.request('POST', action, { form: { email: 'ea@example.com', password: DEMO_PASSWORD } });
    const toCallback = await agent.get(posted.location!);
    const callback = toCallback.location!;
    expect(new URL(callback).pathname).toBe('/auth/callback');
    expect((await agent.get(callback)).status).toBe(302);
    const replay = await agent.get(callback);
    expect(replay.status).toBe(400);
  });
});

describe('logout', () => {
  it('is a POST protected by a CSRF token and the Origin header', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const token = await agent.csrfToken();

    const noToken = await agent.request('POST', '/logout', { form: {} });
    expect(noToken.status).toBe(403);
    const wrongToken = await agent.request('POST', '/logout', { form: { _csrf: `${token}x` } });
    expect(wrongToken.status).toBe(403);
    const crossSite = await agent.request('POST', '/logout', { form: { _csrf: token }, headers: { Origin: 'https://evil.example' } });
    expect(crossSite.status).toBe(403);
    const viaGet = await agent.get('/logout');
    expect(viaGet.status).toBe(404);
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(200);

    const sid = agent.cookie('atrium.sid')!.value;
    const out = await agent.request('POST', '/logout', { form: { _csrf: token }, headers: { Origin: portal.origin } });
    expect(out.status).toBe(303);
    const endSession = new URL(out.location!);
    expect(endSession.pathname).toBe('/idp/session/end');
    expect(endSession.searchParams.get('id_token_hint')).toMatch(/^eyJ/);
    expect(endSession.searchParams.get('post_logout_redirect_uri')).toBe(`${portal.origin}/`);
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
    const row = await portal.portal.database.db.selectFrom('sessions').select('id').where('id', '=', sid).executeTakeFirst();
    expect(row).toBeUndefined();

    // Ending the provider's session too: confirm its form, land back on the portal.
    const confirm = await agent.get(out.location!);
    expect(confirm.status).toBe(200);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.text)![1]!;
    const action = /action="([^"]+)"/.exec(confirm.text)![1]!;
    const done = await agent.request('POST', action, { form: { xsrf, logout: 'yes' } });
    expect(done.status).toBe(303);
    expect(done.location).toBe(`${portal.origin}/`);
    // The provider forgot the user: a new login shows the sign-in form again.
    const again = await agent.follow('/login');
    expect(again.at(-1)!.text).toContain('Sign in to Atrium');
  });
});

describe('password guessing', () => {
  it('is throttled per account after 10 failures, even for the right password, without locking out other accounts', async () => {
    const attacker = new Agent(portal.origin);
    for (let i = 0; i < 10; i++) expect((await attacker.login('stable@example.com', `guess-${i}`)).status).toBe(401);
    const blocked = await attacker.login('stable@example.com', DEMO_PASSWORD);
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(blocked.text).toContain('Too many failed attempts');
    // Another account is unaffected.
    expect((await new Agent(portal.origin).login('ea@example.com', DEMO_PASSWORD)).status).toBe(200);
  });

  it('holds against parallel guesses too', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => new Agent(portal.origin).login('devel@example.com', `parallel-${i}`)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 401).length).toBeLessThanOrEqual(10);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThanOrEqual(10);
  });
});
