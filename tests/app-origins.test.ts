import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { handoffForm, HostAgent, type HostResponse } from './helpers/host-agent.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, disconnected } from './helpers/sockets.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

/** App origins (APP_ORIGIN): every app on a host of its own, signed in through a hand-off. */

const realtimeApp = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { app: 'chat', user: ctx.state.user?.email ?? null }; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.emit('hello', s.data.user.email)); } };
`;

// What an in-process app on its own origin sees of the portal's ctx.session, and a write to it.
const peekApp = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => {
  let write = 'allowed';
  try { ctx.session = { sub: 'someone-else' }; } catch { write = 'refused'; }
  ctx.body = { session: typeof ctx.session, write };
});
export default app;
`;

let portal: TestPortal;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let port: number;
let PORTAL: string;
const appUrl = (tier: string, name: string, path = '/') => `http://${tier}-${name}.apps.localhost:${port}${path}`;

beforeAll(async () => {
  upstream = await startEchoUpstream();
  port = await freePort();
  PORTAL = `http://127.0.0.1:${port}`;
  const apps = makeAppsDir({
    'ea/notes/index.js': koaAppSource('notes'),
    'devel/lab/index.js': koaAppSource('lab'),
    'ea/echo/app.json': JSON.stringify({ title: 'Echo', upstream: upstream.url }),
    'ea/chat/index.js': realtimeApp,
    'ea/peek/index.js': peekApp,
  });
  portal = await startTestPortal({ port, env: { APPS_DIR: apps, PUBLIC_URL: PORTAL, APP_ORIGIN: `http://{tier}-{name}.apps.localhost:${port}` } });
});
afterAll(async () => {
  await portal?.stopAll();
  await upstream?.close();
});

/** A browser signed in as `email` on the portal and on the app origin it started from. */
async function signedIn(email: string, start = appUrl('ea', 'notes', '/')): Promise<{ agent: HostAgent; last: HostResponse }> {
  const agent = new HostAgent(port);
  const last = await agent.signIn(start, email, DEMO_PASSWORD);
  return { agent, last };
}

/** Walks an app origin up to the hand-off page and returns its code without posting it. */
async function codeFor(agent: HostAgent, url: string): Promise<{ action: string; code: string }> {
  let response = await agent.get(url);
  for (let hops = 0; hops < 5 && response.location; hops++) response = await agent.get(response.location);
  const form = handoffForm(response.text);
  if (!form) throw new Error(`no hand-off form at ${response.url}: ${response.status} ${response.text.slice(0, 200)}`);
  return form;
}

/** Whether a response gave the browser an app-origin session cookie. */
const setsAppSession = (response: HostResponse) => response.setCookies.some((c) => c.startsWith('atrium.app='));
const appCookie = (agent: HostAgent, tier: string, name: string) => agent.jar(`${tier}-${name}.apps.localhost:${port}`).get('atrium.app');

describe('apps on their own origins', () => {
  it('signs in from an app origin through the portal and lands on the page asked for', async () => {
    const { agent, last } = await signedIn('ea@example.com', appUrl('ea', 'notes', '/deep/page?x=1'));
    expect(last.status).toBe(200);
    expect(last.url).toBe(appUrl('ea', 'notes', '/deep/page?x=1'));
    expect(last.json()).toMatchObject({ app: 'notes', path: '/deep/page', user: 'ea@example.com' });
    // The portal's cookie stays on the portal's host; the app origin holds only its own.
    expect(agent.jar(`127.0.0.1:${port}`).has('atrium.sid')).toBe(true);
    expect([...agent.jar(`ea-notes.apps.localhost:${port}`).keys()]).toEqual(['atrium.app', 'atrium.app.sig']);
  });

  it('sets every cookie host-only: no Domain attribute on either origin', async () => {
    const agent = new HostAgent(port);
    const first = await agent.get(appUrl('ea', 'notes', '/'));
    const hops = await agent.follow(appUrl('ea', 'notes', '/'));
    const cookies = [...first.setCookies, ...hops.flatMap((h) => h.setCookies)];
    expect(cookies.length).toBeGreaterThan(0);
    for (const raw of cookies) expect(raw.toLowerCase()).not.toContain('domain=');
  });

  it('redirects the path form on the portal origin to the app origin, keeping path and query', async () => {
    const { agent } = await signedIn('ea@example.com');
    const response = await agent.get(`${PORTAL}/apps/ea/notes/a/b?c=d&e=f`);
    expect(response.status).toBe(302);
    expect(response.location).toBe(appUrl('ea', 'notes', '/a/b?c=d&e=f'));
    expect((await agent.get(`${PORTAL}/apps/ea/notes`)).location).toBe(appUrl('ea', 'notes', '/'));
    // Anonymous visitors are still sent to sign in first; they learn nothing of which apps exist.
    const anonymous = await new HostAgent(port).get(`${PORTAL}/apps/ea/notes/a`);
    expect(anonymous.status).toBe(302);
    expect(anonymous.location).toContain('/login?returnTo=');
  });

  it('links the launcher to app origins', async () => {
    const { agent } = await signedIn('admin@example.com');
    const launcher = await agent.get(`${PORTAL}/`);
    expect(launcher.text).toContain(`href="${appUrl('ea', 'notes', '/')}"`);
    expect(launcher.text).not.toContain('href="/apps/ea/notes/"');
  });

  it('serves no portal page on an app origin: its paths are all the app’s', async () => {
    const { agent } = await signedIn('ea@example.com');
    for (const path of ['/me', '/admin/users', '/profile', '/login', '/idp/.well-known/openid-configuration']) {
      const response = await agent.get(appUrl('ea', 'notes', path), { Accept: 'application/json' });
      expect(response.status, path).toBe(200);
      expect(response.json(), path).toMatchObject({ app: 'notes', path });
    }
  });

  it('gates the hand-off by tier: an ea user opening a devel app gets the 403 page on the portal, and no app session', async () => {
    const { agent } = await signedIn('ea@example.com');
    const hops = await agent.follow(appUrl('devel', 'lab', '/'));
    const last = hops.at(-1) as HostResponse;
    expect(last.status).toBe(403);
    expect(last.url.startsWith(`${PORTAL}/auth/handoff?`)).toBe(true);
    expect(appCookie(agent, 'devel', 'lab')).toBeUndefined();
  });

  it('shows an app on its origin no portal session, and refuses its writes to one', async () => {
    const { last } = await signedIn('ea@example.com', appUrl('ea', 'peek', '/'));
    expect(last.status).toBe(200);
    expect(last.json()).toEqual({ session: 'undefined', write: 'refused' });
  });

  it('answers an API call without an app session with 401, not a redirect', async () => {
    const response = await new HostAgent(port).get(appUrl('ea', 'notes', '/api'), { Accept: 'application/json' });
    expect(response.status).toBe(401);
  });

  it('sends an unknown app host through sign-in, then says there is no such app', async () => {
    const { agent } = await signedIn('admin@example.com');
    const last = (await agent.follow(appUrl('ea', 'nothing-here', '/'))).at(-1) as HostResponse;
    expect(last.status).toBe(404);
    expect(last.url.startsWith(PORTAL)).toBe(true);
  });
});

describe('the hand-off code', () => {
  it('works once: a second use fails and sets no session', async () => {
    const { agent } = await signedIn('ea@example.com');
    const fresh = new HostAgent(port);
    fresh.jars.set(`127.0.0.1:${port}`, new Map(agent.jar(`127.0.0.1:${port}`)));
    const { action, code } = await codeFor(fresh, appUrl('ea', 'echo', '/'));
    const first = await fresh.request('POST', action, { form: { code } });
    expect(first.status).toBe(303);
    const again = await fresh.request('POST', action, { form: { code } });
    expect(again.status).toBe(400);
    expect(setsAppSession(again)).toBe(false);
  });

  it('is bound to its app origin: posted to another app it fails, and is spent', async () => {
    const { agent } = await signedIn('admin@example.com');
    const { action, code } = await codeFor(agent, appUrl('devel', 'lab', '/'));
    const elsewhere = await agent.request('POST', appUrl('ea', 'notes', '/.well-known/atrium/session'), { form: { code } });
    expect(elsewhere.status).toBe(400);
    expect(setsAppSession(elsewhere)).toBe(false);
    expect((await agent.request('POST', action, { form: { code } })).status).toBe(400);
  });

  it('is bound to the browser that asked: without its state cookie it fails', async () => {
    const { agent } = await signedIn('admin@example.com');
    const { action, code } = await codeFor(agent, appUrl('devel', 'lab', '/'));
    // Login CSRF: the admin's code posted in another browser (the victim's, without the admin's state).
    const victim = new HostAgent(port);
    const posted = await victim.request('POST', action, { form: { code } });
    expect(posted.status).toBe(303);
    const confirmed = await victim.get(posted.location as string);
    expect(confirmed.status).toBe(400);
    expect(victim.jar(`devel-lab.apps.localhost:${port}`).has('atrium.app')).toBe(false);
    // Nor does a state made up by the victim's browser help.
    victim.jar(`devel-lab.apps.localhost:${port}`).set('atrium.handoff', 'A'.repeat(43));
    expect((await victim.get(posted.location as string)).status).toBe(400);
  });

  it('refuses forged, malformed and empty codes with 400', async () => {
    const { agent } = await signedIn('ea@example.com');
    for (const code of ['A'.repeat(43), 'x', '', '../../etc', 'A'.repeat(5000)]) {
      const response = await agent.request('POST', appUrl('ea', 'echo', '/.well-known/atrium/session'), { form: { code } });
      expect([400, 413], code.slice(0, 10)).toContain(response.status);
      expect(setsAppSession(response)).toBe(false);
    }
    expect((await agent.get(appUrl('ea', 'echo', '/.well-known/atrium/session'))).status).toBe(404);
    expect((await agent.get(appUrl('ea', 'echo', '/.well-known/atrium/other'))).status).toBe(404);
  });

  it('refuses hostile hand-off requests at the portal with 400 and issues no code', async () => {
    const { agent } = await signedIn('admin@example.com');
    const state = 'S'.repeat(32);
    for (const query of [
      `app=ea/notes`,
      `app=ea/notes&state=short`,
      `app=ea/notes&state=${'S'.repeat(65)}`,
      `app=ea/notes&state=${state}%00`,
      `app=../notes&state=${state}`,
      `app=ea/notes/x&state=${state}`,
      `app=EA/notes&state=${state}`,
      `app=ea&state=${state}`,
      `app[]=ea/notes&state=${state}`,
      `state=${state}`,
    ]) {
      const response = await agent.get(`${PORTAL}/auth/handoff?${query}`);
      expect(response.status, query).toBe(400);
      expect(handoffForm(response.text), query).toBeUndefined();
    }
    // A hostile returnTo ends at the app's root, never on another origin.
    const browser = new HostAgent(port);
    browser.jars.set(`127.0.0.1:${port}`, new Map(agent.jar(`127.0.0.1:${port}`)));
    const started = await browser.get(appUrl('ea', 'echo', '/'));
    const realState = new URL(started.location as string).searchParams.get('state') as string;
    const form = await browser.get(`${PORTAL}/auth/handoff?app=ea/echo&state=${realState}&returnTo=${encodeURIComponent('//evil.example/x')}`);
    const handoff = handoffForm(form.text);
    expect(handoff).toBeDefined();
    const posted = await browser.request('POST', handoff!.action, { form: { code: handoff!.code } });
    expect(posted.status).toBe(303);
    const confirmed = await browser.get(posted.location as string);
    expect(confirmed.status).toBe(302);
    expect(confirmed.location).toBe(appUrl('ea', 'echo', '/'));
  });

  it('treats two app session cookies as none (a planted copy), sending the browser to sign in again', async () => {
    const { agent } = await signedIn('ea@example.com');
    const jar = agent.jar(`ea-notes.apps.localhost:${port}`);
    expect((await agent.get(appUrl('ea', 'notes', '/'))).status).toBe(200);
    const header = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const twice = await agent.request('GET', appUrl('ea', 'notes', '/'), { cookies: false, headers: { Cookie: `atrium.app=planted; ${header}` } });
    expect(twice.status).toBe(302);
    expect(twice.location?.startsWith(`${PORTAL}/auth/handoff?`)).toBe(true);
    const api = await agent.request('GET', appUrl('ea', 'notes', '/'), { cookies: false, headers: { Cookie: `${header}; atrium.app=planted`, Accept: 'application/json' } });
    expect(api.status).toBe(401);
  });

  it('expires: a code past its lifetime fails', async () => {
    const { agent } = await signedIn('ea@example.com');
    const { action, code } = await codeFor(agent, appUrl('ea', 'echo', '/'));
    // Time passing, as the store sees it: the record's expiry moves into the past.
    await portal.portal.database.db.updateTable('sessions').set({ expires_at: Date.now() - 1 }).where('id', '=', code).execute();
    const response = await agent.request('POST', action, { form: { code } });
    expect(response.status).toBe(400);
    expect(setsAppSession(response)).toBe(false);
  });

  it('dies with the portal session: replayed after logout it fails', async () => {
    const { agent } = await signedIn('ea@example.com');
    const { action, code } = await codeFor(agent, appUrl('ea', 'echo', '/'));
    const csrf = await agent.csrfToken(PORTAL);
    expect((await agent.request('POST', `${PORTAL}/logout`, { form: { _csrf: csrf } })).status).toBe(303);
    const response = await agent.request('POST', action, { form: { code } });
    expect(response.status).toBe(400);
    expect(setsAppSession(response)).toBe(false);
  });

  it('never appears in a URL: it travels in a form post', async () => {
    const agent = new HostAgent(port);
    const hops = await agent.follow(appUrl('ea', 'notes', '/'));
    const urls = hops.map((h) => h.url).concat(hops.map((h) => h.location ?? ''));
    expect(urls.some((u) => /[?&]code=/.test(u))).toBe(false);
  });
});

describe('app-origin sessions follow the portal session', () => {
  it('end at once on logout at the portal', async () => {
    const { agent } = await signedIn('ea@example.com');
    expect((await agent.get(appUrl('ea', 'notes', '/'))).status).toBe(200);
    const csrf = await agent.csrfToken(PORTAL);
    await agent.request('POST', `${PORTAL}/logout`, { form: { _csrf: csrf } });
    const after = await agent.get(appUrl('ea', 'notes', '/'));
    expect(after.status).toBe(302);
    expect(after.location?.startsWith(`${PORTAL}/auth/handoff?`)).toBe(true);
  });

  it('end at once when an admin revokes the user’s sessions', async () => {
    const { agent: other } = await signedIn('devel@example.com', appUrl('devel', 'lab', '/'));
    expect((await other.get(appUrl('devel', 'lab', '/'))).status).toBe(200);
    await portal.portal.admin.revokeSessions('test', 'devel@example.com');
    expect((await other.get(appUrl('devel', 'lab', '/'))).status).toBe(302);
  });

  it('follow a demotion at once', async () => {
    const { agent } = await signedIn('devel@example.com', appUrl('devel', 'lab', '/'));
    expect((await agent.get(appUrl('devel', 'lab', '/'))).status).toBe(200);
    await portal.portal.admin.removeMember('test', 'devel', 'devel@example.com');
    try {
      const refused = await agent.get(appUrl('devel', 'lab', '/'));
      expect(refused.status).toBe(403);
      // The page is on the app's origin, readable by the app's scripts: no portal token on it.
      expect(refused.text).not.toContain('_csrf');
      expect(refused.text).toContain(`href="${PORTAL}/"`);
      expect((await agent.get(appUrl('ea', 'notes', '/'), { Accept: 'application/json' })).status).not.toBe(403);
    } finally {
      await portal.portal.admin.addMember('test', 'devel', 'devel@example.com');
    }
  });
});

describe('upstream apps on their origins', () => {
  it('get the request at / with the app origin as forwarded host and assertion audience, and no portal cookie', async () => {
    const { agent } = await signedIn('ea@example.com', appUrl('ea', 'echo', '/x?y=1'));
    const response = await agent.get(appUrl('ea', 'echo', '/x?y=1'), { Accept: 'application/json' });
    const seen = response.json<{ path: string; headers: Record<string, string> }>();
    expect(seen.path).toBe('/x?y=1');
    expect(seen.headers['x-forwarded-host']).toBe(`ea-echo.apps.localhost:${port}`);
    expect(seen.headers['x-forwarded-prefix']).toBeUndefined();
    expect(seen.headers['x-atrium-email']).toBeTruthy();
    expect(seen.headers.cookie ?? '').not.toContain('atrium.');
    const audience = JSON.parse(Buffer.from((seen.headers['x-atrium-assertion'] ?? '').split('.')[1] ?? '', 'base64url').toString()).aud;
    expect(audience).toBe(appUrl('ea', 'echo', ''));
  });

  it('proxy websockets on the app origin, from its own pages only, and close them on logout', async () => {
    const { agent } = await signedIn('ea@example.com', appUrl('ea', 'echo', '/'));
    const host = `ea-echo.apps.localhost:${port}`;
    const cookie = [...agent.jar(host)].map(([k, v]) => `${k}=${v}`).join('; ');
    const open = (headers: Record<string, string>) =>
      new Promise<{ ok: true; socket: WebSocket; first: string } | { ok: false; status: number }>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers });
        socket.once('message', (data) => resolve({ ok: true, socket, first: data.toString() }));
        socket.once('unexpected-response', (_req, res) => resolve({ ok: false, status: res.statusCode ?? 0 }));
        socket.once('error', () => undefined);
      });
    const good = await open({ Host: host, Cookie: cookie, Origin: `http://${host}` });
    expect(good.ok && decodeURIComponent(JSON.parse(good.first).hello)).toBe('ea@example.com');
    expect(await open({ Host: host, Cookie: cookie, Origin: PORTAL })).toEqual({ ok: false, status: 403 });
    expect(await open({ Host: host, Origin: `http://${host}` })).toEqual({ ok: false, status: 401 });
    // The portal's own host serves no app websockets in this mode.
    expect(await open({ Host: `127.0.0.1:${port}`, Cookie: [...agent.jar(`127.0.0.1:${port}`)].map(([k, v]) => `${k}=${v}`).join('; ') })).toMatchObject({ ok: false, status: 404 });
    if (!good.ok) return;
    const closed = new Promise<void>((resolve) => good.socket.once('close', () => resolve()));
    const csrf = await agent.csrfToken(PORTAL);
    await agent.request('POST', `${PORTAL}/logout`, { form: { _csrf: csrf } });
    await closed;
  });
});

describe('socket.io on app origins', () => {
  it('admits the app’s own namespace on its own origin, and nowhere else', async () => {
    const { agent } = await signedIn('ea@example.com', appUrl('ea', 'chat', '/'));
    const host = `ea-chat.apps.localhost:${port}`;
    const cookie = [...agent.jar(host)].map(([k, v]) => `${k}=${v}`).join('; ');
    const base = `http://127.0.0.1:${port}`;
    const ok = await connect(base, '/apps/ea/chat', cookie, ['websocket'], { Host: host, Origin: `http://${host}` });
    expect(ok.ok).toBe(true);
    if (!ok.ok) return;
    // Another origin's page, the portal's host and another app's host are all refused.
    expect(await connect(base, '/apps/ea/chat', cookie, ['websocket'], { Host: host, Origin: PORTAL })).toEqual({ ok: false, message: 'forbidden' });
    const portalCookie = [...agent.jar(`127.0.0.1:${port}`)].map(([k, v]) => `${k}=${v}`).join('; ');
    expect(await connect(base, '/apps/ea/chat', portalCookie, ['websocket'], { Host: `127.0.0.1:${port}` })).toEqual({ ok: false, message: 'forbidden' });
    expect(await connect(base, '/apps/ea/chat', cookie, ['websocket'], { Host: `ea-notes.apps.localhost:${port}` })).toEqual({ ok: false, message: 'forbidden' });
    expect(await connect(base, '/apps/ea/chat', undefined, ['websocket'], { Host: host })).toEqual({ ok: false, message: 'unauthenticated' });
    const gone = disconnected(ok.socket, 10_000);
    const csrf = await agent.csrfToken(PORTAL);
    await agent.request('POST', `${PORTAL}/logout`, { form: { _csrf: csrf } });
    await gone;
  });
});
