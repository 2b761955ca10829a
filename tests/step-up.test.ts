import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { discoverApps } from '../lib/apps/discovery.ts';
import { parseManifest } from '../lib/apps/manifest.ts';
import type { AtriumUser } from '../lib/app-kit.ts';
import { decide } from '../lib/gate.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { ACR_SECOND_FACTOR } from '../lib/factors/assurance.ts';
import { freePort } from '../lib/free-port.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { EXTERNAL_AUDIENCE, PAPE_MULTI_FACTOR, startExternalIdp, type ExternalIdp, type ProviderShape } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, cookieHeader } from './helpers/sockets.ts';
import { startEchoUpstream } from './helpers/upstream.ts';
import WebSocket from 'ws';
import { stepOf, totpAt } from './helpers/totp-by-hand.ts';

/**
 * Issue 14 item 4: per-app step-up. An app with `"mfa": true` opens only for a session whose
 * sign-in used a second factor; others are sent to sign in again asking for one, and come back. The
 * same rule holds for its socket.io namespace. With an external provider, the token's `amr`/`acr`
 * decides, and a provider that signs in without a second factor gets an explanation, not a loop.
 */

/** A realtime app: its pages and its namespace answer with who the portal says the user is. */
const realtimeApp = (name: string) => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { app: ${JSON.stringify(name)}, user: ctx.state.user?.email ?? null, mfa: ctx.state.user?.mfa ?? null }; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.on('whoami', (ack) => ack({ app: ${JSON.stringify(name)}, user: s.data.user.email }))); } };
`;
const APPS = {
  'stable/vault/index.js': realtimeApp('vault'),
  'stable/vault/app.json': JSON.stringify({ title: 'Vault', mfa: true }),
  'stable/open/index.js': realtimeApp('open'),
};
const JSON_ACCEPT = { Accept: 'application/json' };

/** Opens a websocket through the portal: the upstream's greeting, or the status the upgrade was refused with. */
function openWebsocket(url: string, cookie: string): Promise<{ hello: unknown } | { refused: number }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, { headers: { Cookie: cookie } });
    socket.once('message', (data) => {
      resolve({ hello: JSON.parse(data.toString()) });
      socket.close();
    });
    socket.once('unexpected-response', (_req, res) => {
      resolve({ refused: res.statusCode ?? 0 });
      socket.terminate();
    });
    socket.once('error', reject);
  });
}
const PASSWORD = 'amber kettle orbit 41';
const formAction = (page: AgentResponse) => /<form method="post" action="([^"]+)"/.exec(page.text)?.[1]?.replace(/&amp;/g, '&');

describe('the manifest field', () => {
  it('takes true or false; anything else is a clear manifest error and the app is skipped', async () => {
    expect(parseManifest('{"mfa": true}').mfa).toBe(true);
    expect(parseManifest('{"mfa": false}').mfa).toBe(false);
    expect(() => parseManifest('{"mfa": "yes"}')).toThrow(/mfa: must be true or false/);
    expect(() => parseManifest('{"mfa": 1}')).toThrow(/mfa: must be true or false/);
    const dir = makeAppsDir({ 'stable/bad/index.js': koaAppSource('bad'), 'stable/bad/app.json': '{"mfa": "required"}' });
    const { apps, failures } = await discoverApps(dir);
    expect(apps).toEqual([]);
    expect(failures[0]?.reason).toMatch(/mfa: must be true or false/);
  });
});

describe('the gate', () => {
  const user = (changes: Partial<AtriumUser>): AtriumUser => ({ sub: 's', email: 'a@example.com', name: null, picture: null, level: 'ea', groups: ['ea', 'stable'], profile: {}, ...changes });
  const vault = { tier: 'stable' as const, groups: [], manifest: { mfa: true } };
  it('asks an mfa app for a sign-in with a second factor, of admins too; level and groups are refused first', () => {
    expect(decide(user({ mfa: true }), vault)).toEqual({ allowed: true });
    expect(decide(user({ mfa: false }), vault)).toEqual({ allowed: false, status: 403, reason: 'mfa' });
    expect(decide(user({}), vault)).toEqual({ allowed: false, status: 403, reason: 'mfa' });
    expect(decide(user({ level: 'admin', mfa: false }), vault)).toEqual({ allowed: false, status: 403, reason: 'mfa' });
    expect(decide(user({ level: null, mfa: false }), vault)).toEqual({ allowed: false, status: 403, reason: 'level' });
    expect(decide(user({ mfa: false }), { ...vault, groups: ['finance'] })).toEqual({ allowed: false, status: 403, reason: 'groups' });
    expect(decide(user({ mfa: false }), { tier: 'stable', groups: [], manifest: { mfa: false } })).toEqual({ allowed: true });
    expect(decide(undefined, vault)).toEqual({ allowed: false, status: 401 });
  });
});

describe('step-up with the embedded provider', () => {
  let portal: TestPortal;
  let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
  beforeAll(async () => {
    upstream = await startEchoUpstream();
    // An app in another process too, for its proxied websockets.
    const apps = { ...APPS, 'stable/tunnel/app.json': JSON.stringify({ upstream: upstream.url, mfa: true }) };
    portal = await startTestPortal({ env: { APPS_DIR: makeAppsDir(apps) } });
    await portal.portal.admin.addLocalUser('cli:test', { email: 'step@example.com', password: PASSWORD });
    await portal.portal.admin.addMember('cli:test', 'stable', 'step@example.com');
    await portal.portal.admin.addLocalUser('cli:test', { email: 'fresh@example.com', password: PASSWORD });
    await portal.portal.admin.addMember('cli:test', 'stable', 'fresh@example.com');
  }, 120_000);
  afterAll(async () => {
    vi.useRealTimers();
    await portal?.stopAll();
    await upstream?.close();
  });

  it('a password-only session is sent to sign in again for the second factor, and comes back; pages and sockets follow', async () => {
    const T = Date.UTC(2026, 11, 2, 9, 0, 0);
    vi.useFakeTimers({ toFake: ['Date'], now: T });
    const agent = new Agent(portal.origin);
    expect((await agent.login('step@example.com', PASSWORD, '/me')).status).toBe(200);
    // Enrolment does not change how this session signed in.
    const setup = await agent.get('/profile/factors/totp');
    const secret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(setup.text)![1]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(setup.text)![1]!;
    expect((await agent.request('POST', '/profile/factors/totp', { form: { _csrf: csrf, current: PASSWORD, code: totpAt(secret, stepOf(T)) } })).status).toBe(200);

    // The ordinary app opens; the mfa app does not, on any path.
    expect((await agent.get('/apps/stable/open/', JSON_ACCEPT)).json()).toMatchObject({ app: 'open', mfa: false });
    const api = await agent.get('/apps/stable/vault/', JSON_ACCEPT);
    expect(api.status).toBe(403);
    expect(api.json()).toMatchObject({ error: 'second_factor_required', signIn: '/login?returnTo=%2Fapps%2Fstable%2Fvault%2F&mfa=1' });
    expect(await connect(portal.origin, '/apps/stable/vault', cookieHeader(agent))).toEqual({ ok: false, message: 'forbidden' });
    const tunnel = `${portal.origin.replace('http', 'ws')}/apps/stable/tunnel/ws`;
    expect(await openWebsocket(tunnel, cookieHeader(agent))).toEqual({ refused: 403 });
    const open = await connect(portal.origin, '/apps/stable/open', cookieHeader(agent));
    expect(open.ok).toBe(true);
    if (open.ok) open.socket.close();
    // The launcher shows it as openable (the link steps up), not as locked.
    expect((await agent.get('/')).text).toMatch(/href="\/apps\/stable\/vault\/"/);

    // A browser navigation steps up.
    const page = await agent.get('/apps/stable/vault/page?x=1');
    expect(page.status).toBe(302);
    expect(page.location).toBe(`${portal.origin}/login?returnTo=${encodeURIComponent('/apps/stable/vault/page?x=1')}&mfa=1`);
    const toProvider = await agent.get(page.location!);
    const authorize = new URL(toProvider.location!);
    expect(authorize.searchParams.get('acr_values')?.split(' ')).toContain(ACR_SECOND_FACTOR);
    expect(authorize.searchParams.get('prompt')).toBe('login');
    expect(authorize.searchParams.get('max_age')).toBe('0');
    // The provider session proved the password: only the second step is asked.
    const hops = await agent.follow(authorize.href);
    const factorPage = hops.at(-1)!;
    expect(factorPage.text).toContain('data-testid="second-factor"');
    vi.setSystemTime(T + 30_000);
    const posted = await agent.request('POST', formAction(factorPage)!, { form: { code: totpAt(secret, stepOf(T + 30_000)) } });
    expect(posted.status).toBe(303);
    const back = (await agent.follow(posted.location!)).at(-1)!;
    expect(back.url).toBe(`${portal.origin}/apps/stable/vault/page?x=1`);
    expect(back.status).toBe(200);

    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).json()).toMatchObject({ app: 'vault', user: 'step@example.com', mfa: true });
    const vault = await connect(portal.origin, '/apps/stable/vault', cookieHeader(agent));
    expect(vault.ok).toBe(true);
    if (vault.ok) {
      expect(await vault.socket.emitWithAck('whoami')).toEqual({ app: 'vault', user: 'step@example.com' });
      vault.socket.close();
    }
    expect(await openWebsocket(tunnel, cookieHeader(agent))).toEqual({ hello: { hello: 'step@example.com', path: '/ws', level: 'stable' } });
    vi.useRealTimers();
  });

  it('an account without a factor gives its password again, then sets one up during the step-up sign-in', async () => {
    const T = Date.UTC(2026, 11, 2, 10, 0, 0);
    vi.useFakeTimers({ toFake: ['Date'], now: T });
    const agent = new Agent(portal.origin);
    expect((await agent.login('fresh@example.com', PASSWORD, '/me')).status).toBe(200);
    const hops = await agent.follow('/apps/stable/vault/');
    const passwordPage = hops.at(-1)!;
    expect(passwordPage.text).toContain('name="password"');
    const enrolPage = await agent.request('POST', formAction(passwordPage)!, { form: { email: 'fresh@example.com', password: PASSWORD } });
    expect(enrolPage.text).toContain('data-testid="enrol-factor"');
    expect(enrolPage.text).toContain('The app you are opening needs a sign-in with a second factor.');
    const secret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(enrolPage.text)![1]!;
    const wrong = await agent.request('POST', formAction(enrolPage)!, { form: { code: totpAt(secret, stepOf(T) + 9) } });
    expect(wrong.status).toBe(400);
    const codes = await agent.request('POST', formAction(enrolPage)!, { form: { code: totpAt(secret, stepOf(T)) } });
    expect(codes.status).toBe(200);
    expect([...codes.text.matchAll(/<li><code>/g)]).toHaveLength(10);
    const posted = await agent.request('POST', formAction(codes)!, { form: {} });
    expect(posted.status).toBe(303);
    const back = (await agent.follow(posted.location!)).at(-1)!;
    expect(back.url).toBe(`${portal.origin}/apps/stable/vault/`);
    expect(back.json()).toMatchObject({ app: 'vault', mfa: true });
    vi.useRealTimers();
  });

  it('admins step up too: the second factor is about the sign-in, not a grant', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('admin@example.com', DEMO_PASSWORD);
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(403);
    expect((await agent.get('/apps/stable/vault/')).status).toBe(302);
    // Without the app's level, the refusal is about the level: no step-up would help.
    const nobody = new Agent(portal.origin);
    await nobody.login('nobody@example.com', DEMO_PASSWORD);
    expect((await nobody.get('/apps/stable/vault/', JSON_ACCEPT)).json()).toMatchObject({ error: 'forbidden' });
  });
});

describe('step-up with external providers', () => {
  const running: { portal: TestPortal; idp: ExternalIdp }[] = [];
  afterAll(async () => {
    for (const r of running) {
      await r.portal.stopAll();
      await r.idp.close();
    }
  });

  async function setup(shape: ProviderShape) {
    const port = await freePort();
    const idp = await startExternalIdp(shape, `http://127.0.0.1:${port}`);
    const env: Record<string, string> = { APPS_DIR: makeAppsDir(APPS), OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: idp.clientId, OIDC_CLIENT_SECRET: idp.clientSecret, OIDC_AUDIENCE: EXTERNAL_AUDIENCE };
    env.ACCESS_CLAIM = shape === 'auth0' ? 'permissions' : 'realm_access.roles';
    const portal = await startTestPortal({ port, env });
    running.push({ portal, idp });
    return { portal, idp };
  }

  /** Follows a flow across the two origins, with the account as login_hint at the provider. */
  async function through(portal: TestPortal, idp: ExternalIdp, agent: Agent, start: string, account: string): Promise<AgentResponse> {
    const idpAgent = new Agent(new URL(idp.issuer).origin);
    let next: string | undefined = new URL(start, portal.origin).href;
    let last: AgentResponse | undefined;
    for (let hops = 0; next && hops < 20; hops++) {
      const url: URL = new URL(next);
      if (url.pathname.endsWith('/auth') && url.origin !== portal.origin) url.searchParams.set('login_hint', account);
      const client: Agent = url.origin === portal.origin ? agent : idpAgent;
      const response: AgentResponse = await client.get(url.href, { Accept: 'text/html' });
      last = response;
      next = response.status >= 300 && response.status < 400 ? response.location : undefined;
    }
    return last!;
  }

  it('Auth0-shaped: the step-up asks for the multi-factor policy, amr says mfa, the app and its namespace open', async () => {
    const { portal, idp } = await setup('auth0');
    const agent = new Agent(portal.origin);
    expect((await through(portal, idp, agent, '/login?returnTo=/me', 'ext-ea')).status).toBe(200);
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(403);
    expect(await connect(portal.origin, '/apps/stable/vault', cookieHeader(agent))).toEqual({ ok: false, message: 'forbidden' });

    const back = await through(portal, idp, agent, '/apps/stable/vault/', 'ext-ea');
    const asked = idp.authRequests.at(-1)!;
    expect(String(asked.acr_values).split(' ')).toContain(PAPE_MULTI_FACTOR);
    expect(asked).toMatchObject({ prompt: 'login', max_age: '0' });
    expect(back.url).toBe(`${portal.origin}/apps/stable/vault/`);
    expect(back.status).toBe(200);
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).json()).toMatchObject({ app: 'vault', user: 'ext.ea@corp.example', mfa: true });
    const vault = await connect(portal.origin, '/apps/stable/vault', cookieHeader(agent));
    expect(vault.ok).toBe(true);
    if (vault.ok) vault.socket.close();
  });

  it('Keycloak-shaped without a second factor: the 403 page explains, and the browser is not sent round again', async () => {
    const { portal, idp } = await setup('keycloak');
    const agent = new Agent(portal.origin);
    expect((await through(portal, idp, agent, '/login?returnTo=/me', 'ext-devel')).status).toBe(200);
    const end = await through(portal, idp, agent, '/apps/stable/vault/', 'ext-devel');
    expect(end.status).toBe(403);
    expect(new URL(end.url).pathname).toBe('/login/second-factor-needed');
    expect(end.text).toContain('Your sign-in service signed you in without a second factor');
    expect(end.text).toContain('data-testid="second-factor-needed"');
    // Still signed in, still without the app.
    expect((await agent.get('/apps/stable/open/', JSON_ACCEPT)).status).toBe(200);
    expect((await agent.get('/apps/stable/vault/', JSON_ACCEPT)).status).toBe(403);
    expect(await connect(portal.origin, '/apps/stable/vault', cookieHeader(agent))).toEqual({ ok: false, message: 'forbidden' });
  });
});
