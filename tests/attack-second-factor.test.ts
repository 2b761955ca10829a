import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { runCli } from '../lib/cli.ts';
import { assuranceOf } from '../lib/factors/assurance.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir, writeFiles } from './helpers/apps.ts';
import { startModePortal, type ModePortal } from './helpers/modes.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { rawRequest, rawUpgrade } from './helpers/raw-http.ts';
import { connect, cookieHeader } from './helpers/sockets.ts';
import { stepOf, totpAt } from './helpers/totp-by-hand.ts';
import { startEchoUpstream } from './helpers/upstream.ts';
import { SoftPasskey } from './helpers/soft-passkey.ts';

/**
 * A reviewer's attack on the second factor and per-app step-up (issue 14 items 3-4): every way to
 * reach an `"mfa": true` app without a second factor, every way to confuse how a session signed
 * in, and the limits on guessing codes. Real portal, real code flows, codes computed by hand.
 */

const PASSWORD = 'amber kettle orbit 41';
const JSON_ACCEPT = { Accept: 'application/json' };
const HTML_ACCEPT = { Accept: 'text/html,application/xhtml+xml' };

/** An app that answers every path and method with its name, and serves a namespace. */
const realtimeApp = (name: string) => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { app: ${JSON.stringify(name)}, secret: 'CONTENT-OF-${name}', path: ctx.path, user: ctx.state.user?.email ?? null, mfa: ctx.state.user?.mfa ?? null }; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.on('whoami', (ack) => ack({ app: ${JSON.stringify(name)} }))); } };
`;
const contentOf = (name: string) => `CONTENT-OF-${name}`;

/** Date only is faked, and only ever moves forward: TOTP steps are exact, timers and sockets run. */
let now = 0;
const tick = (seconds = 30) => {
  now += seconds * 1000;
  vi.setSystemTime(now);
};
const codeNow = (secret: string) => totpAt(secret, stepOf(now));

const formAction = (page: AgentResponse) => /<form method="post" action="([^"]+)"/.exec(page.text)?.[1]?.replace(/&amp;/g, '&');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls with real timers (Date is frozen) until `check` holds, for at most ~`seconds`. */
async function eventually(check: () => Promise<boolean>, seconds = 20): Promise<boolean> {
  for (let i = 0; i < seconds * 4; i++) {
    if (await check()) return true;
    await sleep(250);
  }
  return false;
}

function openWebsocket(url: string, cookie: string): Promise<{ socket: WebSocket; hello: unknown } | { refused: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers: { Cookie: cookie } });
    socket.once('message', (data) => resolve({ socket, hello: JSON.parse(data.toString()) }));
    socket.once('unexpected-response', (_req, res) => {
      resolve({ refused: res.statusCode ?? 0 });
      socket.terminate();
    });
    socket.once('error', reject);
  });
}

let portal: TestPortal;
let appsDir: string;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let port: number;
/** Secrets and recovery codes of the accounts enrolled in beforeAll. */
const enrolled = new Map<string, { secret: string; codes: string[] }>();

const users = ['pw', 'otp', 'brute', 'race', 'rec', 'victim', 'attacker', 'switch', 'pka', 'pkb', 'lost', 'keep'] as const;
const email = (who: (typeof users)[number]) => `${who}@example.com`;

/** Enrols an authenticator app from /profile for a signed-in agent. */
async function enrol(agent: Agent): Promise<{ secret: string; codes: string[] }> {
  const setup = await agent.get('/profile/factors/totp');
  const secret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(setup.text)![1]!;
  const csrf = /name="_csrf" value="([^"]+)"/.exec(setup.text)![1]!;
  tick();
  const done = await agent.request('POST', '/profile/factors/totp', { form: { _csrf: csrf, current: PASSWORD, code: codeNow(secret) } });
  expect(done.status, done.text.slice(0, 300)).toBe(200);
  return { secret, codes: [...done.text.matchAll(/<li><code>([A-Z0-9-]+)<\/code><\/li>/g)].map((m) => m[1]!) };
}

/** Password step; the page must be the second step. */
async function passwordStep(agent: Agent, who: string, returnTo = '/me'): Promise<AgentResponse> {
  const page = await agent.login(who, PASSWORD, returnTo);
  expect(page.text, page.text.slice(0, 300)).toContain('data-testid="second-factor"');
  return page;
}

/** Posts a code on the second-step page; on a 303 follows to the end and returns every hop. */
async function postCode(agent: Agent, page: AgentResponse, code: string, headers: Record<string, string> = {}): Promise<AgentResponse[]> {
  const posted = await agent.request('POST', formAction(page)!, { form: { code }, headers });
  if (posted.status !== 303) return [posted];
  return [posted, ...(await agent.follow(posted.location!))];
}

/**
 * The provider ends the old account's session with a page whose script posts a form at once
 * (oidc-provider, when another account signs in); posts it, as the browser's script does, and
 * follows on.
 */
async function followAutoSubmit(agent: Agent, hops: AgentResponse[]): Promise<AgentResponse[]> {
  for (let round = 0; round < 3; round++) {
    const last = hops.at(-1)!;
    if (!last.text.includes('document.forms[0].submit()')) return hops;
    const action = /<form method="post" action="([^"]+)"/.exec(last.text)![1]!.replace(/&amp;/g, '&');
    const fields = Object.fromEntries([...last.text.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!.replace(/&amp;/g, '&')]));
    const posted = await agent.request('POST', action, { form: fields });
    hops = [...hops, posted, ...(posted.location ? await agent.follow(posted.location) : [])];
  }
  return hops;
}

/** A full sign-in with the account's TOTP (a fresh step). */
async function signInWithTotp(agent: Agent, who: string, returnTo = '/me'): Promise<AgentResponse[]> {
  const page = await passwordStep(agent, who, returnTo);
  tick();
  return postCode(agent, page, codeNow(enrolled.get(who)!.secret));
}

beforeAll(async () => {
  upstream = await startEchoUpstream();
  appsDir = makeAppsDir({
    'stable/vault/index.js': realtimeApp('vault'),
    'stable/vault/app.json': JSON.stringify({ title: 'Vault', mfa: true }),
    'stable/open/index.js': realtimeApp('open'),
    'stable/later/index.js': realtimeApp('later'),
    'stable/tunnel/app.json': JSON.stringify({ upstream: upstream.url, mfa: true }),
    'stable/tunnellater/app.json': JSON.stringify({ upstream: upstream.url }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: appsDir } });
  port = Number(new URL(portal.origin).port);
  for (const who of users) {
    await portal.portal.admin.addLocalUser('cli:test', { email: email(who), password: PASSWORD });
    await portal.portal.admin.addMember('cli:test', 'stable', email(who));
  }
  // From here on the clock is ours (Date only), a little ahead of the real one, always forward.
  now = (stepOf(Date.now()) + 2) * 30_000 + 1_000;
  vi.useFakeTimers({ toFake: ['Date'], now });
  for (const who of ['otp', 'brute', 'race', 'rec', 'switch', 'lost', 'keep'] as const) {
    const agent = new Agent(portal.origin);
    expect((await agent.login(email(who), PASSWORD, '/me')).status).toBe(200);
    enrolled.set(email(who), await enrol(agent));
  }
}, 180_000);

afterAll(async () => {
  vi.useRealTimers();
  await portal?.stopAll();
  await upstream?.close();
});

describe('reaching an mfa app without a second factor (shared origin)', () => {
  let pw: Agent;
  beforeAll(async () => {
    pw = new Agent(portal.origin);
    expect((await pw.login(email('pw'), PASSWORD, '/me')).status).toBe(200);
    // Sanity: the session works, and opens an ordinary app.
    expect((await pw.get('/apps/stable/open/', JSON_ACCEPT)).json()).toMatchObject({ app: 'open', mfa: false });
  });

  it('every spelling of the path, every method: a 4xx or a step-up, never the app', async () => {
    const paths = [
      '/apps/stable/vault',
      '/apps/stable/vault?x=1',
      '/apps/stable/vault/',
      '/apps/stable/vault/child/deeper?x=1',
      '/apps/stable/vault/static/app.js',
      '/apps/stable/vault/index.html',
      '/apps/stable/VAULT/',
      '/apps/stable/Vault/',
      '/apps/STABLE/vault/',
      '/APPS/stable/vault/',
      '/apps/stable/%76ault/',
      '/apps/stable/vault%2F',
      '/apps/stable/vault%2fx',
      '/apps/%73table/vault/',
      '/apps/stable//vault/',
      '/apps//stable/vault/',
      '/apps/stable/./vault/',
      '/apps/stable/open/../vault/',
      '/apps/stable/open/%2e%2e/vault/',
      '/apps/stable/open/..%2fvault/',
      '/apps/stable/vault;x=1/',
      '/apps/stable/vault%00/',
      '/apps/stable/vault%20/',
      '/apps/stable/vault/%2e%2e/vault/',
      '/apps\\stable\\vault\\',
    ];
    const cookie = cookieHeader(pw);
    const leaks: string[] = [];
    for (const path of paths) {
      for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD']) {
        for (const accept of [JSON_ACCEPT, HTML_ACCEPT]) {
          const r = await rawRequest(port, path, { method, headers: { Cookie: cookie, ...accept, Host: new URL(portal.origin).host, Origin: portal.origin } });
          const stepUp = r.status === 302 && /^\/login\?returnTo=[^&]+&mfa=1$/.test(String(r.headers.location));
          const refused = r.status >= 400 && r.status < 500;
          if (!(stepUp || refused) || r.body.includes(contentOf('vault'))) leaks.push(`${method} ${path} (${accept.Accept.slice(0, 9)}) → ${r.status} ${r.headers.location ?? ''} ${r.body.slice(0, 80)}`);
        }
      }
    }
    expect(leaks).toEqual([]);
  });

  it('the socket.io namespace, in every spelling and transport, refuses the session', async () => {
    const cookie = cookieHeader(pw);
    for (const ns of ['/apps/stable/vault', '/apps/stable/VAULT', '/apps/stable/vault/', '/apps/stable/vault/x', '/apps/stable//vault']) {
      for (const transports of [['websocket'], ['polling']] as ('websocket' | 'polling')[][]) {
        const r = await connect(portal.origin, ns, cookie, transports);
        if (r.ok) r.socket.close();
        expect(r.ok, `${ns} over ${transports[0]}`).toBe(false);
      }
    }
  });

  it('the proxied websocket, in every spelling, is refused', async () => {
    const cookie = cookieHeader(pw);
    expect(await openWebsocket(`ws://127.0.0.1:${port}/apps/stable/tunnel/ws`, cookie)).toEqual({ refused: 403 });
    for (const path of ['/apps/stable/tunnel', '/apps/stable/tunnel/', '/apps/stable/TUNNEL/ws', '/apps/stable/tunnel/../tunnel/ws', '/apps/stable//tunnel/ws', '/apps/stable/tunnel%2Fws', '/apps/stable/open/../tunnel/ws']) {
      const r = await rawUpgrade(port, path, { Cookie: cookie });
      expect(r.status, path).not.toBe(101);
      expect(r.status >= 400 && r.status < 500, `${path} → ${r.status}`).toBe(true);
    }
  });

  it('bearer tokens: a machine client (even with access:admin) and a user’s password-only access token are refused', async () => {
    let out = '';
    expect(await runCli(['clients', 'add', 'robot', '--level', 'admin', '--json'], portal.portal.database, { out: (t) => (out += t), err: () => {} }, 'cli:test')).toBe(0);
    const { clientId, clientSecret } = JSON.parse(out) as { clientId: string; clientSecret: string };
    const r = await fetch(`${portal.origin}/idp/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'access:admin' }),
    });
    const machine = ((await r.json()) as { access_token: string }).access_token;
    const stored = await portal.portal.sessions.get(pw.cookie('atrium.sid')!.value);
    const userToken = (stored!.data as { tokens: { access: string } }).tokens.access;
    for (const token of [machine, userToken]) {
      const call = (path: string, accept = JSON_ACCEPT) => fetch(`${portal.origin}${path}`, { headers: { Authorization: `Bearer ${token}`, ...accept }, redirect: 'manual' });
      // The token works (so the refusals below are the gate's).
      expect((await call('/apps/stable/open/')).status).toBe(200);
      for (const path of ['/apps/stable/vault/', '/apps/stable/vault', '/apps/stable/vault/x', '/apps/stable/tunnel/']) {
        const answer = await call(path);
        expect(answer.status, path).toBe(403);
        expect(await answer.text()).not.toContain(contentOf('vault'));
      }
      const html = await call('/apps/stable/vault/', HTML_ACCEPT);
      expect(html.status === 403 || html.status === 302, String(html.status)).toBe(true);
      expect(await html.text()).not.toContain(contentOf('vault'));
    }
  });

  it('forged assurance: acr/amr in /login, in the callback, in the sign-in form, in the authorize request: still no app', async () => {
    const agent = new Agent(portal.origin);
    // 1. /login with acr_values/amr of its own (not the step-up switch) and the password form with extra fields.
    const hops = await agent.follow(`/login?returnTo=/me&acr_values=urn:atrium:acr:mfa&amr=otp&acr=urn:atrium:acr:mfa&mfa=true`);
    const form = hops.at(-1)!;
    expect(form.text).toContain('name="password"');
    const posted = await agent.request('POST', formAction(form)!, { form: { email: email('pw'), password: PASSWORD, amr: 'otp', acr: 'urn:atrium:acr:mfa', mfa: '1', step: 'verify' } });
    expect(posted.status).toBe(303);
    const rest = await agent.follow(posted.location!);
    const callback = rest.find((h) => new URL(h.url).pathname === '/auth/callback');
    expect(callback).toBeDefined();
    expect((await agent.get('/me', JSON_ACCEPT)).json()).toMatchObject({ email: email('pw') });
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(403);

    // 2. The authorize request rewritten by the browser: a `claims` request for an essential mfa acr.
    const second = new Agent(portal.origin);
    const start = await second.get('/login?returnTo=/me');
    const authorize = new URL(start.location!);
    authorize.searchParams.set('claims', JSON.stringify({ id_token: { acr: { essential: true, value: 'urn:atrium:acr:mfa' }, amr: { essential: true, values: ['otp'] } } }));
    const flow = await second.follow(authorize.href);
    const last = flow.at(-1)!;
    if (last.text.includes('name="password"')) {
      const p = await second.request('POST', formAction(last)!, { form: { email: email('pw'), password: PASSWORD } });
      if (p.status === 303) await second.follow(p.location!);
    }
    const vault = await second.get('/apps/stable/vault/', JSON_ACCEPT);
    expect([401, 403]).toContain(vault.status);
    expect(vault.text).not.toContain(contentOf('vault'));
  });

  it('a step-up whose authorize request is stripped of acr_values/prompt/max_age ends at the explanation, not the app', async () => {
    const start = await pw.get('/login?returnTo=%2Fapps%2Fstable%2Fvault%2F&mfa=1');
    const authorize = new URL(start.location!);
    for (const p of ['acr_values', 'prompt', 'max_age']) authorize.searchParams.delete(p);
    const hops = await pw.follow(authorize.href);
    const end = hops.at(-1)!;
    expect(end.text).not.toContain(contentOf('vault'));
    expect(new URL(end.url).pathname).toBe('/login/second-factor-needed');
    expect(end.status).toBe(403);
    expect((await pw.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(403);
  });

  it('a session alone (stolen cookies, no password) cannot enrol a factor during step-up', async () => {
    // The thief has every cookie of the pw browser (portal and provider).
    const thief = new Agent(portal.origin);
    for (const [k, v] of pw.cookies) thief.cookies.set(k, v);
    const hops = await thief.follow('/login?returnTo=%2Fapps%2Fstable%2Fvault%2F&mfa=1');
    const page = hops.at(-1)!;
    expect(page.text).toContain('name="password"');
    expect(page.text).not.toContain('data-testid="enrol-factor"');
    const enrolAction = formAction(page)!.replace(/\/login$/, '/enrol');
    const forced = await thief.request('POST', enrolAction, { form: { code: '123456' } });
    expect(forced.status).toBe(400);
    const factorAction = formAction(page)!.replace(/\/login$/, '/factor');
    expect((await thief.request('POST', factorAction, { form: { code: '123456' } })).status).toBe(400);
    const pwId = (await portal.portal.admin.resolveUser(email('pw'))).id;
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', pwId).execute()).toEqual([]);
  });
});

describe('session and assurance confusion', () => {
  it('a password-only sign-in of another account in the same browser after a 2FA sign-in: the new session has no mfa', async () => {
    const agent = new Agent(portal.origin);
    const hops = await signInWithTotp(agent, email('otp'), '/me');
    expect(hops.at(-1)!.json()).toMatchObject({ email: email('otp') });
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).json()).toMatchObject({ app: 'vault', mfa: true });
    const before = agent.cookie('atrium.sid')!.value;
    // Tab B: a fresh sign-in (prompt=login, as a browser can ask) with another account's password.
    const start = await agent.get('/login?returnTo=/me');
    const authorize = new URL(start.location!);
    authorize.searchParams.set('prompt', 'login');
    const form = (await agent.follow(authorize.href)).at(-1)!;
    expect(form.text).toContain('name="password"');
    const posted = await agent.request('POST', formAction(form)!, { form: { email: email('pw'), password: PASSWORD } });
    expect(posted.status).toBe(303);
    const meHops = await followAutoSubmit(agent, await agent.follow(posted.location!));
    const end = meHops.at(-1)!;
    const meAnswer = await agent.get('/me', JSON_ACCEPT);
    const me = meAnswer.json() as { email?: string };
    if (me.email === email('pw')) {
      // Signed in as the other account: a new session, and it did not inherit the second factor.
      expect(agent.cookie('atrium.sid')!.value).not.toBe(before);
      const vault = await agent.get('/apps/stable/vault/', JSON_ACCEPT);
      expect(vault.status).toBe(403);
      expect(vault.text).not.toContain(contentOf('vault'));
    } else {
      // The switch was refused (oidc-provider ends the old account's provider session, which ends
      // its portal sessions, and then has lost the interaction): a clear 4xx, signed out, no mfa kept.
      expect(end.status >= 400 && end.status < 500, `${end.status} ${end.url}`).toBe(true);
      expect(meAnswer.status).toBe(401);
      expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(401);
    }
    // And the 2FA account asked again with prompt=login must give its second factor again.
    const again = await agent.get('/login?returnTo=/me');
    const authorize2 = new URL(again.location!);
    authorize2.searchParams.set('prompt', 'login');
    const form2 = (await agent.follow(authorize2.href)).at(-1)!;
    const posted2 = await agent.request('POST', formAction(form2)!, { form: { email: email('otp'), password: PASSWORD } });
    expect(posted2.status).toBe(200);
    expect(posted2.text).toContain('data-testid="second-factor"');
    // The second step not taken: no session for it.
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).text).not.toContain(contentOf('vault'));
  });

  it('after an admin reset, the same account’s password-only sign-in does not keep mfa from the old one', async () => {
    const agent = new Agent(portal.origin);
    await signInWithTotp(agent, email('switch'), '/me');
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(200);
    // The factor goes (a lost phone).
    let out = '';
    expect(await runCli(['users', 'reset-factors', email('switch')], portal.portal.database, { out: (t) => (out += t), err: (t) => (out += t) }, 'cli:test')).toBe(0);
    const start = await agent.get('/login?returnTo=/me');
    const authorize = new URL(start.location!);
    authorize.searchParams.set('prompt', 'login');
    const form = (await agent.follow(authorize.href)).at(-1)!;
    const posted = await agent.request('POST', formAction(form)!, { form: { email: email('switch'), password: PASSWORD } });
    expect(posted.status).toBe(303);
    await agent.follow(posted.location!);
    expect((await agent.get('/me', JSON_ACCEPT)).json()).toMatchObject({ email: email('switch') });
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(403);
  });

  it('an admin reset of a lost device’s factors ends what that device opened: the 2FA session no longer opens the mfa app', async () => {
    const holder = new Agent(portal.origin);
    await signInWithTotp(holder, email('lost'), '/me');
    const vault = await connect(portal.origin, '/apps/stable/vault', cookieHeader(holder));
    expect(vault.ok).toBe(true);
    expect((await holder.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(200);
    const admin = new Agent(portal.origin);
    await admin.login('admin@example.com', DEMO_PASSWORD);
    const target = await portal.portal.admin.resolveUser(email('lost'));
    expect((await admin.request('POST', `/admin/users/${target.id}/factors/reset`, { form: { _csrf: await admin.csrfToken() } })).status).toBe(303);
    const after = await holder.get('/apps/stable/vault/', JSON_ACCEPT);
    if (vault.ok) vault.socket.close();
    expect.soft(after.text).not.toContain(contentOf('vault'));
    expect.soft([401, 403], `the portal session signed in with the reset factor still opens the mfa app (${after.status})`).toContain(after.status);
    // Nor may the provider session made with that factor sign the browser in again with "mfa".
    holder.cookies.delete('atrium.sid');
    holder.cookies.delete('atrium.sid.sig');
    const again = (await holder.follow('/login?returnTo=%2Fapps%2Fstable%2Fvault%2F')).at(-1)!;
    expect.soft(again.text, `the provider session re-signed the browser in with mfa (${again.url})`).not.toContain(contentOf('vault'));
  });

  it('a step-up asks the second factor again though the provider session has one: max_age=0 holds, with or without prompt=login', async () => {
    const agent = new Agent(portal.origin);
    await signInWithTotp(agent, email('otp'), '/me');
    tick(3600);
    for (const strip of [[], ['prompt'], ['prompt', 'acr_values']]) {
      const start = await agent.get('/login?returnTo=%2Fapps%2Fstable%2Fvault%2F&mfa=1');
      const authorize = new URL(start.location!);
      expect(authorize.searchParams.get('max_age')).toBe('0');
      for (const p of strip) authorize.searchParams.delete(p);
      const end = (await agent.follow(authorize.href)).at(-1)!;
      // The provider asks again (the second step, or the password): never straight back with a fresh "mfa".
      expect(end.url, `without ${strip.join(', ') || 'nothing'}: ended at ${end.url}`).toContain('/idp/interaction/');
      const asks = end.text.includes('data-testid="second-factor"') || end.text.includes('name="password"');
      expect(asks, `without ${strip.join(', ') || 'nothing'}: ${end.status}`).toBe(true);
      expect(end.text).not.toContain(contentOf('vault'));
    }
  });

  it('the callback of a 2FA sign-in replayed (same browser, another browser) is a 4xx and gives nobody a session', async () => {
    const agent = new Agent(portal.origin);
    const hops = await signInWithTotp(agent, email('otp'), '/me');
    const callback = hops.find((h) => h.url.includes('/auth/callback'))!;
    expect(callback).toBeDefined();
    const replay = await agent.get(callback.url);
    expect(replay.status >= 400 && replay.status < 500, `same browser → ${replay.status}`).toBe(true);
    const stranger = new Agent(portal.origin);
    const stolen = await stranger.get(callback.url);
    expect(stolen.status >= 400 && stolen.status < 500, `another browser → ${stolen.status}`).toBe(true);
    expect((await stranger.get('/me', JSON_ACCEPT)).status).toBe(401);
    expect((await stranger.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(401);
  });

  it('a step-up with a hostile returnTo comes back to the portal, never elsewhere', async () => {
    for (const hostile of ['https://evil.example/x', '//evil.example/x', '/\\evil.example/x', '/%2F%2Fevil.example', 'javascript:alert(1)']) {
      const agent = new Agent(portal.origin);
      await signInWithTotp(agent, email('otp'), '/me');
      // The provider session has the second factor: the step-up asks the second step only.
      const hops = await agent.follow(`/login?returnTo=${encodeURIComponent(hostile)}&mfa=1`);
      const page = hops.at(-1)!;
      expect(page.text).toContain('data-testid="second-factor"');
      tick();
      const after = await postCode(agent, page, codeNow(enrolled.get(email('otp'))!.secret));
      for (const h of after) {
        if (h.location) expect(new URL(h.location).host, `${hostile}: ${h.location}`).not.toContain('evil');
      }
      const end = after.at(-1)!;
      expect(new URL(end.url).origin).toBe(portal.origin);
    }
    const explained = await new Agent(portal.origin).get('/login/second-factor-needed?returnTo=%2F%2Fevil.example%2F');
    expect(explained.status).toBe(403);
    expect(explained.text).not.toContain('evil.example');
  });
});

describe('assurance claims an ID token might carry', () => {
  it('only well-formed second-factor methods and levels count: look-alikes, wrong types and sizes are nothing', () => {
    const hostile: Record<string, unknown>[] = [
      { amr: 'mfa' },
      { amr: 'otp' },
      { amr: { 0: 'otp', length: 1 } },
      { amr: [['otp']] },
      { amr: [{ toString: () => 'otp' }] },
      { amr: ['MFA', 'OTP', 'Otp', ' otp', 'otp ', 'pwd'] },
      { amr: ['pwd', 'otp'.padEnd(40, 'x')] },
      { acr: ['urn:atrium:acr:mfa'] },
      { acr: ' urn:atrium:acr:mfa' },
      { acr: 'urn:atrium:acr:mfa ' },
      { acr: 'URN:ATRIUM:ACR:MFA' },
      { acr: 'urn:atrium:acr:pwd urn:atrium:acr:mfa' },
      { acr: 'urn:atrium:acr:pwd' },
      { acr: 0 },
      { amr: null, acr: null },
      { mfa: true },
      {},
    ];
    for (const claims of hostile) expect(assuranceOf(claims).mfa, JSON.stringify(claims)).toBe(false);
  });
});

describe('TOTP guessing and reuse', () => {
  it('wrong codes are bounded per account across browsers and claimed addresses: then the right code waits too', async () => {
    const who = email('brute');
    const secret = enrolled.get(who)!.secret;
    const statuses: number[] = [];
    for (let b = 0; b < 6; b++) {
      const browser = new Agent(portal.origin);
      const page = await passwordStep(browser, who);
      for (let i = 0; i < 2; i++) {
        const wrong = totpAt(secret, stepOf(now) + 50 + b * 2 + i);
        statuses.push((await postCode(browser, page, wrong, { 'X-Forwarded-For': `10.0.${b}.${i}`, 'X-Real-IP': `10.1.${b}.${i}` }))[0]!.status);
      }
    }
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10)).toEqual([429, 429]);
    const last = new Agent(portal.origin);
    const page = await passwordStep(last, who);
    tick();
    const right = await postCode(last, page, codeNow(secret), { 'X-Forwarded-For': '192.0.2.77' });
    expect(right[0]!.status).toBe(429);
    expect((await last.get('/me', JSON_ACCEPT)).status).toBe(401);
    // Passkey answers count against the same allowance (no passkey: still a 4xx, never a pass).
    const pk = await last.request('POST', formAction(page)!.replace(/\/factor$/, '/passkey'), { json: { id: 'x' }, headers: JSON_ACCEPT });
    expect(pk.status).toBe(429);
  });

  it('one code, two concurrent sign-ins: exactly one gets in', async () => {
    const who = email('race');
    const a = new Agent(portal.origin);
    const b = new Agent(portal.origin);
    const pa = await passwordStep(a, who);
    const pb = await passwordStep(b, who);
    tick();
    const code = codeNow(enrolled.get(who)!.secret);
    const [ra, rb] = await Promise.all([a.request('POST', formAction(pa)!, { form: { code } }), b.request('POST', formAction(pb)!, { form: { code } })]);
    expect([ra.status, rb.status].sort()).toEqual([303, 401]);
  });

  it('a recovery code works once, whatever its case, spaces or dashes; another account’s code never', async () => {
    const who = email('rec');
    const [first, second] = enrolled.get(who)!.codes;
    const plain = first!.replace('-', '');
    const a = new Agent(portal.origin);
    const ok = await postCode(a, await passwordStep(a, who), `  ${plain.slice(0, 3).toLowerCase()} ${plain.slice(3, 7)}\t${plain.slice(7).toLowerCase()} `);
    expect(ok.at(-1)!.json()).toMatchObject({ email: who });
    for (const variant of [first!, first!.toLowerCase(), plain, plain.split('').join('-'), ` ${plain} `]) {
      const b = new Agent(portal.origin);
      const refused = await postCode(b, await passwordStep(b, who), variant);
      expect(refused[0]!.status, variant).toBe(401);
    }
    // Another account's unused code.
    const c = new Agent(portal.origin);
    const otpCode = enrolled.get(email('otp'))!.codes[9]!;
    expect((await postCode(c, await passwordStep(c, who), otpCode))[0]!.status).toBe(401);
    // The second code still works (the refusals above spent nothing).
    const d = new Agent(portal.origin);
    expect((await postCode(d, await passwordStep(d, who), second!)).at(-1)!.json()).toMatchObject({ email: who });
  });
});

describe('enrolment and admin routes: CSRF, other accounts, non-admins, CLI input', () => {
  it('/profile factor routes refuse a missing, forged or cross-site token, and enrol only the signed-in account', async () => {
    const victim = new Agent(portal.origin);
    expect((await victim.login(email('victim'), PASSWORD, '/me')).status).toBe(200);
    const setup = await victim.get('/profile/factors/totp');
    const secret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(setup.text)![1]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(setup.text)![1]!;
    tick();
    const base = { current: PASSWORD, code: codeNow(secret) };
    const tries = [
      await victim.request('POST', '/profile/factors/totp', { form: base, headers: JSON_ACCEPT }),
      await victim.request('POST', '/profile/factors/totp', { form: { ...base, _csrf: 'forged' }, headers: JSON_ACCEPT }),
      await victim.request('POST', '/profile/factors/totp', { form: { ...base, _csrf: `${csrf.slice(0, -1)}x` }, headers: JSON_ACCEPT }),
      await victim.request('POST', '/profile/factors/totp', { form: { ...base, _csrf: csrf }, headers: { ...JSON_ACCEPT, Origin: 'https://evil.example' } }),
      await victim.request('POST', '/profile/factors/passkey/options', { json: { current: PASSWORD }, headers: JSON_ACCEPT }),
      await victim.request('POST', '/profile/factors/passkey/options', { json: { current: PASSWORD }, headers: { ...JSON_ACCEPT, 'X-CSRF-Token': 'forged' } }),
      await victim.request('POST', '/profile/factors/passkey', { json: { credential: {} }, headers: JSON_ACCEPT }),
      await victim.request('POST', '/profile/factors/recovery-codes', { form: { current: PASSWORD }, headers: JSON_ACCEPT }),
    ];
    expect(tries.map((t) => t.status)).toEqual(Array(tries.length).fill(403));
    const victimId = (await portal.portal.admin.resolveUser(email('victim'))).id;
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', victimId).execute()).toEqual([]);

    // An attacker's own enrolment naming the victim lands on the attacker, never the victim.
    const attacker = new Agent(portal.origin);
    await attacker.login(email('attacker'), PASSWORD, '/me');
    const own = await attacker.get('/profile/factors/totp');
    const ownSecret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(own.text)![1]!;
    const ownCsrf = /name="_csrf" value="([^"]+)"/.exec(own.text)![1]!;
    tick();
    const done = await attacker.request('POST', '/profile/factors/totp', {
      form: { _csrf: ownCsrf, current: PASSWORD, code: codeNow(ownSecret), uid: String(victimId), user: email('victim'), email: email('victim'), userId: String(victimId) },
    });
    expect(done.status).toBe(200);
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', victimId).execute()).toEqual([]);
    // The attacker cannot remove the victim's factor either (the id of another account is unknown to them).
    const otpId = (await portal.portal.admin.resolveUser(email('otp'))).id;
    const [otpFactor] = await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', otpId).execute();
    // With the attacker's own password right, so that it is the ownership check that refuses.
    const removal = await attacker.request('POST', `/profile/factors/${otpFactor!.id}/remove`, { form: { _csrf: ownCsrf, current: PASSWORD }, headers: JSON_ACCEPT });
    expect(removal.status).toBe(404);
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', otpId).execute()).toHaveLength(1);
  });

  it('a session alone (no current password) cannot remove the account’s second factor, as it cannot add one', async () => {
    const owner = new Agent(portal.origin);
    await signInWithTotp(owner, email('keep'), '/me');
    const profile = await owner.get('/profile');
    const factorId = /action="\/profile\/factors\/(\d+)\/remove"/.exec(profile.text)![1]!;
    const csrf = await owner.csrfToken();
    const keepId = (await portal.portal.admin.resolveUser(email('keep'))).id;
    const removal = await owner.request('POST', `/profile/factors/${factorId}/remove`, { form: { _csrf: csrf }, headers: JSON_ACCEPT });
    const left = await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', keepId).execute();
    expect(left, `removed without the password (answered ${removal.status})`).toHaveLength(1);
    expect([400, 401, 403]).toContain(removal.status);
    // With a wrong password: refused too.
    const wrong = await owner.request('POST', `/profile/factors/${factorId}/remove`, { form: { _csrf: csrf, current: 'not it' }, headers: JSON_ACCEPT });
    expect([400, 401, 403]).toContain(wrong.status);
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', keepId).execute()).toHaveLength(1);
  });

  it('admin routes: non-admins refused, a forged token refused, odd ids a 4xx; nothing reset', async () => {
    const target = await portal.portal.admin.resolveUser(email('otp'));
    const countFactors = async () => (await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', target.id).execute()).length;
    const before = await countFactors();
    expect(before).toBe(1);
    const stranger = new Agent(portal.origin);
    await stranger.login('stable@example.com', DEMO_PASSWORD);
    const strangerCsrf = await stranger.csrfToken();
    expect((await stranger.request('POST', `/admin/users/${target.id}/factors/reset`, { form: { _csrf: strangerCsrf }, headers: JSON_ACCEPT })).status).toBe(403);
    expect((await stranger.request('POST', '/admin/groups/stable/second-factor', { form: { _csrf: strangerCsrf, required: '1' }, headers: JSON_ACCEPT })).status).toBe(403);
    const admin = new Agent(portal.origin);
    await admin.login('admin@example.com', DEMO_PASSWORD);
    expect((await admin.request('POST', `/admin/users/${target.id}/factors/reset`, { form: {}, headers: JSON_ACCEPT })).status).toBe(403);
    expect((await admin.request('POST', `/admin/users/${target.id}/factors/reset`, { form: { _csrf: strangerCsrf }, headers: JSON_ACCEPT })).status).toBe(403);
    const adminCsrf = await admin.csrfToken();
    expect((await admin.request('POST', `/admin/users/${target.id}/factors/reset`, { form: { _csrf: adminCsrf }, headers: { ...JSON_ACCEPT, Origin: 'https://evil.example' } })).status).toBe(403);
    expect((await admin.request('GET', `/admin/users/${target.id}/factors/reset`, { headers: JSON_ACCEPT })).status).toBeGreaterThanOrEqual(400);
    for (const id of ['999999999', 'abc', '-1', '1e3', '%00', '1%20OR%201=1']) {
      const r = await admin.request('POST', `/admin/users/${id}/factors/reset`, { form: { _csrf: adminCsrf }, headers: JSON_ACCEPT });
      expect(r.status >= 400 && r.status < 500, `${id} → ${r.status}`).toBe(true);
    }
    const group = await admin.request('POST', '/admin/groups/no-such-group/second-factor', { form: { _csrf: adminCsrf, required: '1' }, headers: JSON_ACCEPT });
    expect(group.status).toBe(404);
    expect(await countFactors()).toBe(before);
  });

  it('CLI: missing and unknown arguments exit non-zero with a message, never a throw', async () => {
    const cli = async (...argv: string[]) => {
      let out = '';
      const code = await runCli(argv, portal.portal.database, { out: (t) => (out += t), err: (t) => (out += t) }, 'cli:test');
      return { code, out };
    };
    for (const argv of [['users', 'reset-factors'], ['users', 'reset-factors', 'no-such-user@example.com'], ['groups', 'require-factor'], ['groups', 'require-factor', 'no-such-group'], ['groups', 'require-factor', 'no-such-group', '--off'], ['groups', 'require-factor', "x'; DROP TABLE groups;--"]]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).not.toBe(0);
      expect(r.out.length, argv.join(' ')).toBeGreaterThan(0);
    }
    expect(await portal.portal.database.db.selectFrom('groups').select('id').where('name', '=', 'stable').executeTakeFirst()).toBeDefined();
  });
});

describe('passkeys (a software authenticator written from the spec)', () => {
  const api = (csrf: string) => ({ ...JSON_ACCEPT, 'X-CSRF-Token': csrf });
  async function startRegistration(agent: Agent): Promise<{ csrf: string; options: { challenge: string; rp: { id?: string } } }> {
    const csrf = await agent.csrfToken();
    const options = await agent.request('POST', '/profile/factors/passkey/options', { json: { current: PASSWORD }, headers: api(csrf) });
    expect(options.status, options.text.slice(0, 200)).toBe(200);
    return { csrf, options: options.json() };
  }
  const passkeysOf = async (who: string) =>
    portal.portal.database.db.selectFrom('user_factors').select(['id', 'credential_id', 'public_key']).where('user_id', '=', (await portal.portal.admin.resolveUser(who)).id).where('kind', '=', 'passkey').execute();
  const keyA = new SoftPasskey();
  const keyB = new SoftPasskey();
  let a: Agent;
  let b: Agent;
  beforeAll(async () => {
    a = new Agent(portal.origin);
    b = new Agent(portal.origin);
    expect((await a.login(email('pka'), PASSWORD, '/me')).status).toBe(200);
    expect((await b.login(email('pkb'), PASSWORD, '/me')).status).toBe(200);
    // A has a passkey from the start (each case below stands on its own).
    const { csrf, options } = await startRegistration(a);
    expect((await a.request('POST', '/profile/factors/passkey', { json: { credential: keyA.register(options, portal.origin), label: 'Key A' }, headers: api(csrf) })).status).toBe(200);
  });

  it('a registration response is good once: replayed as is, or against a fresh challenge, it is refused', async () => {
    const before = (await passkeysOf(email('pka'))).length;
    const { csrf, options } = await startRegistration(a);
    const response = new SoftPasskey().register(options, portal.origin);
    const first = await a.request('POST', '/profile/factors/passkey', { json: { credential: response, label: 'Key R' }, headers: api(csrf) });
    expect(first.status, first.text.slice(0, 200)).toBe(200);
    const replayed = await a.request('POST', '/profile/factors/passkey', { json: { credential: response, label: 'Key A again' }, headers: api(csrf) });
    expect(replayed.status).toBe(400);
    await startRegistration(a);
    const stale = await a.request('POST', '/profile/factors/passkey', { json: { credential: response, label: 'Key A stale' }, headers: api(csrf) });
    expect(stale.status).toBe(400);
    expect(stale.json()).toMatchObject({ error: 'passkey_refused' });
    expect(await passkeysOf(email('pka'))).toHaveLength(before + 1);
  });

  it('another account cannot register a credential id that is already someone’s: a clear 4xx, never a 500', async () => {
    const owned = new SoftPasskey();
    const mine = await startRegistration(a);
    expect((await a.request('POST', '/profile/factors/passkey', { json: { credential: owned.register(mine.options, portal.origin), label: 'Key A2' }, headers: api(mine.csrf) })).status).toBe(200);
    const { csrf, options } = await startRegistration(b);
    const squatter = new SoftPasskey(owned.credentialId);
    const answer = await b.request('POST', '/profile/factors/passkey', { json: { credential: squatter.register(options, portal.origin), label: 'Not mine' }, headers: api(csrf) });
    expect(answer.status, `${answer.status} ${answer.text.slice(0, 200)}`).toBeGreaterThanOrEqual(400);
    expect(answer.status, `${answer.status} ${answer.text.slice(0, 200)}`).toBeLessThan(500);
    expect(await passkeysOf(email('pkb'))).toHaveLength(0);
    // The owner's passkey is untouched.
    expect((await passkeysOf(email('pka'))).map((p) => p.credential_id)).toContain(owned.id);
  });

  it('hostile answers at the sign-in passkey step are clear 4xx answers', async () => {
    const browser = new Agent(portal.origin);
    const page = await passwordStep(browser, email('pka'));
    const base = /\/idp\/interaction\/([A-Za-z0-9_-]+)\//.exec(page.text)![0];
    const bodies: { body: string; type: string }[] = [
      { body: 'null', type: 'application/json' },
      { body: '[]', type: 'application/json' },
      { body: '"x"', type: 'application/json' },
      { body: JSON.stringify({ id: { $ne: 1 }, response: 'x' }), type: 'application/json' },
      { body: JSON.stringify({ id: keyA.id, rawId: keyA.id, type: 'public-key', response: { clientDataJSON: 'e30', authenticatorData: '', signature: '' } }), type: 'application/json' },
      { body: '{"id":', type: 'application/json' },
      { body: 'id=x', type: 'application/x-www-form-urlencoded' },
      { body: JSON.stringify({ id: 'x'.repeat(20_000) }), type: 'application/json' },
    ];
    for (const { body, type } of bodies) {
      expect((await browser.request('POST', `${base}passkey/options`, { headers: JSON_ACCEPT })).status).toBe(200);
      const r = await fetch(new URL(`${base}passkey`, portal.origin), { method: 'POST', headers: { 'Content-Type': type, Accept: 'application/json', Cookie: cookieHeader(browser) }, body });
      expect(r.status >= 400 && r.status < 500, `${body.slice(0, 40)} → ${r.status}`).toBe(true);
    }
    expect((await browser.get('/me', JSON_ACCEPT)).status).toBe(401);
  });

  it('at sign-in, a passkey of account A does not sign in account B; B’s own does, once per challenge', async () => {
    const { csrf, options } = await startRegistration(b);
    expect((await b.request('POST', '/profile/factors/passkey', { json: { credential: keyB.register(options, portal.origin), label: 'Key B' }, headers: api(csrf) })).status).toBe(200);

    const browser = new Agent(portal.origin);
    const page = await passwordStep(browser, email('pkb'));
    const base = /\/idp\/interaction\/([A-Za-z0-9_-]+)\//.exec(page.text)![0];
    const challenge = async () => {
      const r = await browser.request('POST', `${base}passkey/options`, { headers: JSON_ACCEPT });
      expect(r.status).toBe(200);
      return r.json() as { challenge: string; rpId?: string; allowCredentials?: { id: string }[] };
    };
    const first = await challenge();
    // Only B's own credentials are offered.
    expect(first.allowCredentials?.map((c) => c.id)).toEqual([keyB.id]);
    const withA = await browser.request('POST', `${base}passkey`, { json: keyA.assert(first, portal.origin), headers: JSON_ACCEPT });
    expect(withA.status).toBe(400);
    expect((await browser.get('/me', JSON_ACCEPT)).status).toBe(401);
    // B's credential id, signed by another key (a forged assertion).
    const forger = new SoftPasskey(keyB.credentialId);
    const forged = await browser.request('POST', `${base}passkey`, { json: forger.assert(await challenge(), portal.origin), headers: JSON_ACCEPT });
    expect(forged.status).toBe(400);
    // B's own, for the current challenge: in, with a second factor.
    const own = keyB.assert(await challenge(), portal.origin);
    const ok = await browser.request('POST', `${base}passkey`, { json: own, headers: JSON_ACCEPT });
    expect(ok.status, ok.text.slice(0, 200)).toBe(200);
    await browser.follow((ok.json() as { redirectTo: string }).redirectTo);
    expect((await browser.get('/apps/stable/vault/', JSON_ACCEPT)).json()).toMatchObject({ app: 'vault', user: email('pkb'), mfa: true });
    // That assertion again, in another sign-in: refused (its challenge was this sign-in's).
    const other = new Agent(portal.origin);
    const otherPage = await passwordStep(other, email('pkb'));
    const otherBase = /\/idp\/interaction\/([A-Za-z0-9_-]+)\//.exec(otherPage.text)![0];
    expect((await other.request('POST', `${otherBase}passkey/options`, { headers: JSON_ACCEPT })).status).toBe(200);
    expect((await other.request('POST', `${otherBase}passkey`, { json: own, headers: JSON_ACCEPT })).status).toBe(400);
    expect((await other.get('/me', JSON_ACCEPT)).status).toBe(401);
  });
});

describe('an app becomes mfa while signed in (manifest change)', () => {
  it('pages, socket.io and an open proxied websocket of a password-only session all end', async () => {
    const pw = new Agent(portal.origin);
    expect((await pw.login(email('pw'), PASSWORD, '/me')).status).toBe(200);
    const cookie = cookieHeader(pw);
    expect((await pw.get('/apps/stable/later/', JSON_ACCEPT)).json()).toMatchObject({ app: 'later' });
    const socket = await connect(portal.origin, '/apps/stable/later', cookie);
    expect(socket.ok).toBe(true);
    const tunnel = await openWebsocket(`ws://127.0.0.1:${port}/apps/stable/tunnellater/ws`, cookie);
    expect('hello' in tunnel).toBe(true);
    const tunnelClosed = new Promise<boolean>((resolve) => (tunnel as { socket: WebSocket }).socket.once('close', () => resolve(true)));
    const socketGone = socket.ok ? new Promise<boolean>((resolve) => socket.socket.once('disconnect', () => resolve(true))) : Promise.resolve(true);

    writeFiles(appsDir, {
      'stable/later/app.json': JSON.stringify({ title: 'Later', mfa: true }),
      'stable/tunnellater/app.json': JSON.stringify({ upstream: upstream.url, mfa: true }),
    });
    expect(await eventually(async () => (await pw.get('/apps/stable/later/', JSON_ACCEPT)).status === 403)).toBe(true);
    expect(await eventually(async () => (await pw.get('/apps/stable/tunnellater/', JSON_ACCEPT)).status === 403)).toBe(true);
    // New connections are refused.
    const again = await connect(portal.origin, '/apps/stable/later', cookie);
    if (again.ok) again.socket.close();
    expect(again.ok).toBe(false);
    expect(await openWebsocket(`ws://127.0.0.1:${port}/apps/stable/tunnellater/ws`, cookie)).toEqual({ refused: 403 });
    // Connections opened before: the socket.io one ends (the namespace is remounted) ...
    expect(await Promise.race([socketGone, sleep(10_000).then(() => false)])).toBe(true);
    // ... and so must the proxied websocket (the gate is re-applied every second).
    const closed = await Promise.race([tunnelClosed, sleep(10_000).then(() => false)]);
    if (!closed) (tunnel as { socket: WebSocket }).socket.terminate();
    expect(closed, 'the proxied websocket opened before the app became mfa is still open').toBe(true);
  }, 60_000);
});

describe('app origins (APP_ORIGIN)', () => {
  let setup: ModePortal;
  let dir: string;
  beforeAll(async () => {
    dir = makeAppsDir({
      'stable/vault/index.js': realtimeApp('vault'),
      'stable/vault/app.json': JSON.stringify({ title: 'Vault', mfa: true }),
      'stable/open/index.js': realtimeApp('open'),
      'stable/later/index.js': realtimeApp('later'),
      'stable/plain/index.js': koaAppSource('plain'),
    });
    vi.useRealTimers();
    setup = await startModePortal('app origins', { env: { APPS_DIR: dir } });
    now = Math.max(now, Date.now()) + 1_000;
    vi.useFakeTimers({ toFake: ['Date'], now });
  }, 120_000);
  afterAll(async () => {
    await setup?.stopAll();
  });

  it('a password-only session: the portal path steps up, the hand-off refuses, the app origin serves nothing', async () => {
    const browser = await setup.signedIn('stable@example.com');
    // The portal's path form steps up instead of handing off.
    const viaPortal = await browser.get(`${setup.origin}/apps/stable/vault/x`, HTML_ACCEPT);
    expect(viaPortal.status).toBe(302);
    expect(new URL(viaPortal.location!, setup.origin).pathname).toBe('/login');
    // Straight to the app origin: through the hand-off, which refuses; no app session, no content.
    const hops = await browser.follow(setup.appUrl('stable', 'vault', '/x'), 10, HTML_ACCEPT);
    for (const h of hops) expect(h.text).not.toContain(contentOf('vault'));
    expect(hops.at(-1)!.status).toBeGreaterThanOrEqual(400);
    expect(browser.appSession('stable', 'vault')).toBeUndefined();
    // The open app's app-origin session, replayed on the vault origin, is no key.
    expect((await browser.call('stable', 'open', '/')).text).toContain(contentOf('open'));
    const openCookie = browser.cookieFor('stable', 'open');
    const replay = await browser.request('GET', setup.appUrl('stable', 'vault', '/'), { headers: { ...JSON_ACCEPT, Cookie: openCookie }, cookies: false });
    expect(replay.text).not.toContain(contentOf('vault'));
    const sock = await connect(setup.appOrigin('stable', 'vault'), '/apps/stable/vault', openCookie, ['polling'], { Origin: setup.appOrigin('stable', 'vault') });
    if (sock.ok) sock.socket.close();
    expect(sock.ok).toBe(false);
  });

  it('an app session made before the app became mfa is refused, and a navigation is sent to step up at the portal', async () => {
    const browser = await setup.signedIn('stable@example.com');
    expect((await browser.call('stable', 'later', '/')).text).toContain(contentOf('later'));
    writeFiles(dir, { 'stable/later/app.json': JSON.stringify({ title: 'Later', mfa: true }) });
    expect(await eventually(async () => (await browser.call('stable', 'later', '/')).status === 403)).toBe(true);
    const api = await browser.call('stable', 'later', '/');
    expect(api.text).not.toContain(contentOf('later'));
    // The refusal's way out must lead to the portal's step-up, not to a path of the app's own origin.
    const signIn = (JSON.parse(api.text) as { signIn?: string }).signIn;
    expect(signIn).toBeDefined();
    expect.soft(new URL(signIn!, setup.appOrigin('stable', 'later')).origin, `signIn link ${signIn} resolves on the app origin`).toBe(setup.origin);
    // A navigation on the app origin: sent to step up (a redirect to the portal), not a dead-end 403.
    const nav = await browser.get(setup.appUrl('stable', 'later', '/page'), HTML_ACCEPT);
    expect(nav.text).not.toContain(contentOf('later'));
    expect(nav.status, `navigation answered ${nav.status}`).toBe(302);
    expect(new URL(nav.location!).origin).toBe(setup.origin);
  }, 60_000);
});
