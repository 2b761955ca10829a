import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../lib/cli.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { MAX_PENDING_SIGN_INS } from '../portal/sessions/login-transactions.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { EXTERNAL_AUDIENCE, startExternalIdp, type ExternalIdp } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * Issue 10: revocation reaches the embedded provider's sessions, a demotion reaches bearer tokens,
 * abandoned sign-ins cannot lock a browser out, a machine client without `scope` gets its level;
 * and, while there, the level re-read at refresh (external provider) and the cached token's expiry.
 */

/** One app per tier answering with the user the portal resolved. */
const whoami = (name: string) => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { app: ${JSON.stringify(name)}, sub: ctx.state.user.sub, level: ctx.state.user.level, groups: ctx.state.user.groups }; });
export default app;
`;
const APPS = { 'stable/who/index.js': whoami('who'), 'ea/api/index.js': whoami('api'), 'devel/lab/index.js': whoami('lab') };
const JSON_ACCEPT = { Accept: 'application/json' };

let portal: TestPortal;
let admin: Agent;
let adminCsrf: string;

beforeAll(async () => {
  portal = await startTestPortal({ env: { APPS_DIR: makeAppsDir(APPS) } });
  admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
  adminCsrf = await admin.csrfToken();
});
afterAll(async () => {
  await portal?.stopAll();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const userId = async (email: string) => (await portal.portal.users.byEmail(email))[0]!.id;
const sessionId = (agent: Agent) => agent.cookie('atrium.sid')!.value;
const sessionRow = async (agent: Agent) => {
  const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', sessionId(agent)).executeTakeFirst();
  return row ? JSON.parse(row.data) : undefined;
};
/** How the console names a session in its forms: a SHA-256 digest of the id (base64url, 22 characters), never the id. */
const consoleRef = (id: string) => createHash('sha256').update(id).digest('base64url').slice(0, 22);
const revoke = (email: string, form: Record<string, string>) =>
  userId(email).then((id) => admin.request('POST', `/admin/users/${id}/sessions/revoke`, { form: { _csrf: adminCsrf, ...form }, headers: { Origin: portal.origin } }));
const cli = async (...argv: string[]) => {
  let out = '';
  let err = '';
  const code = await runCli(argv, portal.portal.database, { out: (t) => (out += t), err: (t) => (err += t) }, 'cli:test');
  return { code, out, err };
};
const bearer = (path: string, token: string) => fetch(`${portal.origin}${path}`, { headers: { Authorization: `Bearer ${token}`, ...JSON_ACCEPT } });

/**
 * Where /login takes this browser now: straight back in (the provider still remembers it) or to
 * the provider's password form.
 */
async function loginOutcome(agent: Agent): Promise<'signed in without a password' | 'asked for a password'> {
  const last = (await agent.follow('/login?returnTo=/me')).at(-1)!;
  if (last.status === 200 && last.url.includes('/idp/interaction/') && last.text.includes('name="password"')) return 'asked for a password';
  if (last.status === 200 && new URL(last.url).pathname === '/me') return 'signed in without a password';
  throw new Error(`unexpected end of /login: ${last.status} ${last.url}`);
}

/** Polls until the portal says the browser is signed out; the CLI's change reaches the portal's session cache within seconds. */
async function signedOut(agent: Agent, deadlineMs = 20_000): Promise<boolean> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if ((await agent.get('/me', JSON_ACCEPT)).status === 401) return true;
    if (Date.now() > until) return false;
    await sleep(250);
  }
}

describe('revoking sessions ends the embedded provider’s sessions too', () => {
  it('"revoke all" in the admin console: no browser of the user signs back in without a password', async () => {
    const laptop = new Agent(portal.origin);
    const phone = new Agent(portal.origin);
    await laptop.login('ea@example.com', DEMO_PASSWORD);
    await phone.login('ea@example.com', DEMO_PASSWORD);
    // The provider remembers the browser: that is single sign-on, until an admin revokes.
    expect(await loginOutcome(laptop)).toBe('signed in without a password');

    expect((await revoke('ea@example.com', {})).status).toBe(303);
    for (const browser of [laptop, phone]) {
      expect((await browser.get('/me', JSON_ACCEPT)).status).toBe(401);
      expect(await loginOutcome(browser)).toBe('asked for a password');
    }
    expect((await laptop.login('ea@example.com', DEMO_PASSWORD)).status).toBe(200);
  });

  it('revoking one session ends the provider session that created it, and no other', async () => {
    const revoked = new Agent(portal.origin);
    const kept = new Agent(portal.origin);
    await revoked.login('stable@example.com', DEMO_PASSWORD);
    await kept.login('stable@example.com', DEMO_PASSWORD);
    expect((await sessionRow(revoked)).idpSid).toEqual(expect.any(String));

    expect((await revoke('stable@example.com', { session: consoleRef(sessionId(revoked)) })).status).toBe(303);
    expect((await revoked.get('/me', JSON_ACCEPT)).status).toBe(401);
    expect(await loginOutcome(revoked)).toBe('asked for a password');
    expect((await kept.get('/me', JSON_ACCEPT)).status).toBe(200);
    expect(await loginOutcome(kept)).toBe('signed in without a password');
  });

  it('the CLI lists and revokes sessions, one or all, with the provider’s', async () => {
    const one = new Agent(portal.origin);
    const other = new Agent(portal.origin);
    await one.login('nobody@example.com', DEMO_PASSWORD);
    await other.login('nobody@example.com', DEMO_PASSWORD);
    const listed = await cli('sessions', 'list', 'nobody@example.com', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out).sessions.map((s: { id: string }) => s.id)).toEqual(expect.arrayContaining([sessionId(one), sessionId(other)]));

    const single = await cli('sessions', 'revoke', 'nobody@example.com', '--session', sessionId(one), '--json');
    expect(single.code, single.err).toBe(0);
    expect(await signedOut(one)).toBe(true);
    expect(await loginOutcome(one)).toBe('asked for a password');
    expect(await loginOutcome(other)).toBe('signed in without a password');

    const all = await cli('sessions', 'revoke', 'nobody@example.com', '--json');
    expect(all.code, all.err).toBe(0);
    expect(JSON.parse(all.out)).toMatchObject({ user: 'nobody@example.com', revoked: 1 });
    expect(await signedOut(other)).toBe(true);
    expect(await loginOutcome(other)).toBe('asked for a password');
    // A session that is not the user's is refused, not ended.
    expect((await cli('sessions', 'revoke', 'nobody@example.com', '--session', sessionId(admin))).code).toBe(1);
    expect((await admin.get('/me', JSON_ACCEPT)).status).toBe(200);
  });

  it('revoking one session that predates provider-session tracking ends all of the account’s provider sessions', async () => {
    const legacy = new Agent(portal.origin);
    const other = new Agent(portal.origin);
    await legacy.login('ea@example.com', DEMO_PASSWORD);
    await other.login('ea@example.com', DEMO_PASSWORD);
    // As a session stored before the provider's `sid` was recorded: it cannot name its own.
    const id = sessionId(legacy);
    const { idpSid: _dropped, ...data } = await sessionRow(legacy);
    await portal.portal.sessions.set(id, data, 60_000, { subject: data.sub });
    const single = await cli('sessions', 'revoke', 'ea@example.com', '--session', id, '--json');
    expect(single.code, single.err).toBe(0);
    expect(JSON.parse(single.out)).toMatchObject({ revoked: 1, everyBrowser: true });
    expect(await signedOut(legacy)).toBe(true);
    expect(await loginOutcome(legacy)).toBe('asked for a password');
    expect(await loginOutcome(other)).toBe('asked for a password');
  });
});

describe('bearer tokens', () => {
  it('a demotion reaches an embedded-provider user token at once: the live directory decides its level', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    const { tokens } = await sessionRow(agent);
    expect(decodeJwt(tokens.access).scope).toContain('access:devel');
    expect((await bearer('/apps/devel/lab/', tokens.access)).status).toBe(200);

    await portal.portal.admin.addMember('test', 'ea', 'devel@example.com');
    await portal.portal.admin.removeMember('test', 'devel', 'devel@example.com');
    try {
      // The same token (verified and cached): its `access:devel` scope no longer counts.
      expect((await bearer('/apps/devel/lab/', tokens.access)).status).toBe(403);
      const ea = await bearer('/apps/ea/api/', tokens.access);
      expect(ea.status).toBe(200);
      expect(await ea.json()).toMatchObject({ level: 'ea', groups: ['ea', 'stable'] });
    } finally {
      await portal.portal.admin.addMember('test', 'devel', 'devel@example.com');
      await portal.portal.admin.removeMember('test', 'ea', 'devel@example.com');
    }
  });

  describe('machine clients', () => {
    let clientId = '';
    let clientSecret = '';
    beforeAll(async () => {
      const added = await cli('clients', 'add', 'reporting', '--level', 'ea', '--json');
      expect(added.code, added.err).toBe(0);
      ({ clientId, clientSecret } = JSON.parse(added.out));
    });

    /** A real client-credentials token from the embedded provider's token endpoint. */
    const machineToken = async (scope?: string) => {
      const body = new URLSearchParams({ grant_type: 'client_credentials', ...(scope === undefined ? {} : { scope }) });
      const r = await fetch(`${portal.origin}/idp/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
        body,
      });
      const json = (await r.json()) as { access_token: string; scope?: string };
      expect(r.status, JSON.stringify(json)).toBe(200);
      return json;
    };

    it('a client that asks for no scope gets the level it was registered with', async () => {
      const response = await machineToken();
      const ok = await bearer('/apps/ea/api/', response.access_token);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toMatchObject({ sub: clientId, level: 'ea' });
      expect((await bearer('/apps/devel/lab/', response.access_token)).status).toBe(403);
      // The token and the token response both say what was granted.
      expect(response.scope).toBe('access:stable access:ea');
      expect(decodeJwt(response.access_token)).toMatchObject({ scope: 'access:stable access:ea', sub: clientId, client_id: clientId });
    });

    it('a client that names its scopes gets those and no more (its token scopes do count)', async () => {
      const narrow = await machineToken('access:stable');
      expect(narrow.scope).toBe('access:stable');
      expect((await bearer('/apps/stable/who/', narrow.access_token)).status).toBe(200);
      expect((await bearer('/apps/ea/api/', narrow.access_token)).status).toBe(403);
      const greedy = await machineToken('access:admin');
      expect(greedy.scope ?? '').toBe('');
      expect((await bearer('/apps/stable/who/', greedy.access_token)).status).toBe(403);
    });
  });
});

describe('abandoned sign-ins', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** The Cookie headers the test's browser sends to /auth/callback from now on (every other fetch passes through untouched). */
  function cookiesSentToCallback(): string[] {
    const sent: string[] = [];
    const realFetch = globalThis.fetch;
    vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.origin === portal.origin && url.pathname === '/auth/callback') sent.push(String((init?.headers as Record<string, string> | undefined)?.Cookie ?? ''));
      return realFetch(input, init);
    });
    return sent;
  }

  it(`forty unfinished /login visits keep only ${MAX_PENDING_SIGN_INS} pending; the next sign-in succeeds with a small Cookie header`, async () => {
    const agent = new Agent(portal.origin);
    for (let i = 0; i < 40; i++) {
      // As far as a browser gets before the user walks away: the provider's password form.
      const form = (await agent.follow(`/login?returnTo=${encodeURIComponent(`/apps/stable/who/?tab=${i}`)}`)).at(-1)!;
      expect(form.text).toContain('name="password"');
    }
    const pending = [...agent.cookies.keys()].filter((name) => name.startsWith('atrium.auth.') && !name.endsWith('.sig'));

    const sent = cookiesSentToCallback();
    const done = await agent.login('stable@example.com', DEMO_PASSWORD, '/me');
    expect(done.status, `the callback's Cookie header was ${sent[0]?.length} bytes`).toBe(200); // 431 with every one of them kept
    expect(done.json()).toMatchObject({ email: 'stable@example.com' });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.length, 'bytes in the Cookie header sent to /auth/callback').toBeLessThan(4 * 1024);
    expect(pending.length).toBeLessThanOrEqual(MAX_PENDING_SIGN_INS);
  });

  it('long returnTo paths count by their size: a few of them cannot fill the header either', async () => {
    const agent = new Agent(portal.origin);
    const long = `/apps/stable/who/?report=${'x'.repeat(2000)}`;
    for (let i = 0; i < 10; i++) await agent.get(`/login?returnTo=${encodeURIComponent(`${long}${i}`)}`);
    const sent = cookiesSentToCallback();
    const done = await agent.login('stable@example.com', DEMO_PASSWORD, '/me');
    expect(done.status, `the callback's Cookie header was ${sent[0]?.length} bytes`).toBe(200);
    // Five of them would be about 13 KB, most of Node's 16 KB for every header of the request.
    expect(sent[0]!.length, 'bytes in the Cookie header sent to /auth/callback').toBeLessThan(9 * 1024);
  });
});

describe('the cached verification of a bearer token', () => {
  let short: TestPortal;
  beforeAll(async () => {
    short = await startTestPortal({ env: { APPS_DIR: makeAppsDir(APPS) } });
  });
  afterAll(async () => {
    vi.useRealTimers();
    await short?.stopAll();
  });

  it('is refused once the token passes its exp (and the leeway), though it was cached as valid', async () => {
    let out = '';
    expect(await runCli(['clients', 'add', 'nightly', '--level', 'stable', '--json'], short.portal.database, { out: (t) => (out += t), err: () => {} }, 'cli:test')).toBe(0);
    const { clientId, clientSecret } = JSON.parse(out) as { clientId: string; clientSecret: string };
    const r = await fetch(`${short.origin}/idp/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'access:stable' }),
    });
    const token = ((await r.json()) as { access_token: string }).access_token;
    const call = () => fetch(`${short.origin}/apps/stable/who/`, { headers: { Authorization: `Bearer ${token}`, ...JSON_ACCEPT } });
    expect((await call()).status).toBe(200); // verified, and now cached
    expect((await call()).status).toBe(200);

    // The clock moves past exp and the 30 s leeway (only Date is faked: timers and sockets run as usual).
    const exp = decodeJwt(token).exp!;
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime((exp + 31 + 60) * 1000);
    try {
      const late = await call();
      expect(late.status).toBe(401);
      expect(late.headers.get('www-authenticate')).toContain('expired');
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('an external provider’s refreshed token', () => {
  let external: { portal: TestPortal; idp: ExternalIdp } | undefined;
  afterAll(async () => {
    await external?.portal.stopAll();
    await external?.idp.close();
  });

  /** The code flow across two origins, each side with its own cookies, as a browser does it. */
  async function externalLogin(target: TestPortal, idp: ExternalIdp, account: string): Promise<Agent> {
    const agent = new Agent(target.origin);
    const idpAgent = new Agent(new URL(idp.issuer).origin);
    const authorize = new URL((await agent.get('/login?returnTo=/me')).location!);
    authorize.searchParams.set('login_hint', account);
    let next: string | undefined = authorize.href;
    for (let hops = 0; next && hops < 15; hops++) {
      const client: Agent = new URL(next).origin === target.origin ? agent : idpAgent;
      const r: AgentResponse = await client.get(next, { Accept: 'application/json, text/html' });
      next = r.status >= 300 && r.status < 400 ? r.location : undefined;
    }
    return agent;
  }

  it('sets the level again from the new token: the provider took a scope away, the portal follows at the refresh', async () => {
    const port = await freePort();
    const idp = await startExternalIdp('generic', `http://127.0.0.1:${port}`);
    const target = await startTestPortal({
      port,
      env: {
        APPS_DIR: makeAppsDir(APPS),
        OIDC_ISSUER: idp.issuer,
        OIDC_CLIENT_ID: idp.clientId,
        OIDC_CLIENT_SECRET: idp.clientSecret,
        OIDC_AUDIENCE: EXTERNAL_AUDIENCE,
        OIDC_SCOPE: 'openid profile email offline_access access:stable access:ea',
      },
    });
    external = { portal: target, idp };
    const agent = await externalLogin(target, idp, 'ext-ea');
    expect((await agent.get('/me', JSON_ACCEPT)).json()).toMatchObject({ email: 'ext.ea@corp.example', level: 'ea' });
    expect((await agent.get('/apps/ea/api/', JSON_ACCEPT)).status).toBe(200);

    // At the provider, an administrator takes access:ea away from the user's grant.
    const id = agent.cookie('atrium.sid')!.value;
    const readRow = async () => JSON.parse((await target.portal.database.db.selectFrom('sessions').select('data').where('id', '=', id).executeTakeFirstOrThrow()).data);
    const before = await readRow();
    const refreshToken = await idp.provider.RefreshToken.find(before.tokens.refresh);
    const grant = (await idp.provider.Grant.find(refreshToken!.grantId!))!;
    grant.rejectResourceScope(EXTERNAL_AUDIENCE, 'access:ea');
    await grant.save();

    // The access token is near its end (as if its five minutes had passed): the next request refreshes it.
    const due = { ...before, tokens: { ...before.tokens, expiresAt: Date.now() } };
    await target.portal.database.db.updateTable('sessions').set({ data: JSON.stringify(due) }).where('id', '=', id).execute();
    target.portal.sessions.forget(id);

    const me = await agent.get('/me', JSON_ACCEPT);
    expect(me.status).toBe(200);
    expect(me.json()).toMatchObject({ email: 'ext.ea@corp.example', level: 'stable' });
    const after = await readRow();
    expect(after.tokens.access).not.toBe(before.tokens.access);
    expect(after.tokenLevel).toBe('stable');
    expect((await agent.get('/apps/ea/api/', JSON_ACCEPT)).status).toBe(403);
    expect((await agent.get('/apps/stable/who/', JSON_ACCEPT)).status).toBe(200);
  });
});
