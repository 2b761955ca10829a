import { createServer, type IncomingHttpHeaders } from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import WebSocket, { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { EXTERNAL_AUDIENCE, startExternalIdp, type ExternalIdp } from './helpers/external-idp.ts';
import { createTestDatabase } from './helpers/databases.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { ResponseRules } from '../portal/apps/response-rules.ts';
import { connect } from './helpers/sockets.ts';
import { listenOnLoopback } from './helpers/upstream.ts';

/**
 * A hostile app author against the portal, through app responses and planted cookies: an app may
 * not set portal cookies, clear site data or widen a service worker's scope (portal/apps/
 * response-rules.ts), and a request carrying the session cookie twice is signed out everywhere.
 */

/** Set-Cookie lines that would hand the visitor the session `__SID__` (signed `__SIG__`), under every spelling. */
const HARMFUL = [
  'atrium.sid=__SID__; Path=/; HttpOnly',
  'atrium.sid.sig=__SIG__; Path=/; HttpOnly',
  '__Host-atrium.sid=__SID__; Path=/; Secure; HttpOnly',
  'ATRIUM.SID=__SID__; Path=/',
  '=atrium.sid=__SID__; Path=/',
  'atrium.auth.__SID__=x; Path=/auth/callback',
];
/** The app's own cookie: it must pass untouched. */
const APP_COOKIE = 'app_pref=dark; Path=/apps';

/** The same headers, as JavaScript for an app module: what a request's `sid`/`sig` query asks to plant. */
const HOSTILE_HEADERS_JS = `const HARMFUL = ${JSON.stringify(HARMFUL)};
function hostileCookies(query) {
  const sid = String(query.sid ?? 'none'), sig = String(query.sig ?? 'none');
  return [...HARMFUL.map((l) => l.replaceAll('__SID__', sid).replaceAll('__SIG__', sig)), ${JSON.stringify(APP_COOKIE)}];
}`;

/**
 * An in-process app that answers everything with the hostile headers (and breaks on /fail, after
 * setting them). With `replace`, it overwrites the Set-Cookie header instead of adding to it.
 */
const HOSTILE_APP = `import Koa from ${JSON.stringify(KOA)};
${HOSTILE_HEADERS_JS}
const app = new Koa();
app.use((ctx) => {
  if (ctx.query.replace) ctx.set('Set-Cookie', hostileCookies(ctx.query));
  else ctx.append('Set-Cookie', hostileCookies(ctx.query));
  ctx.set('Clear-Site-Data', '"cookies", "storage"');
  ctx.set('Service-Worker-Allowed', '/');
  ctx.set('X-Accel-Redirect', '/me');
  ctx.set('X-Sendfile', '/etc/passwd');
  if (ctx.path === '/fail') throw new Error('the app broke after setting its headers');
  ctx.body = { user: ctx.state.user.email };
});
export default app;
`;

/** A realtime app, for socket.io handshakes. */
const REALTIME_APP = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.emit('hello', s.data.user.email)); } };
`;

function hostileCookies(query: URLSearchParams): string[] {
  const sid = query.get('sid') ?? 'none';
  const sig = query.get('sig') ?? 'none';
  return [...HARMFUL.map((l) => l.replaceAll('__SID__', sid).replaceAll('__SIG__', sig)), APP_COOKIE];
}

/**
 * An upstream app in another process, equally hostile: its HTTP answers and its websocket
 * handshakes carry the hostile headers; it echoes the cookies it received.
 */
async function startHostileUpstream() {
  const server = createServer((req, res) => {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    res.setHeader('Set-Cookie', hostileCookies(query));
    res.setHeader('Clear-Site-Data', '"*"');
    res.setHeader('Service-Worker-Allowed', '/');
    res.setHeader('X-Accel-Redirect', '/me');
    res.setHeader('X-Sendfile', '/etc/passwd');
    res.setHeader('X-LIGHTTPD-send-file', '/etc/passwd');
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ path: req.url, cookie: req.headers.cookie ?? null, user: decodeURIComponent(String(req.headers['x-atrium-email'] ?? '')) }));
  });
  const wss = new WebSocketServer({ server });
  wss.on('headers', (headers, req) => {
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    headers.push(...hostileCookies(query).map((line) => `Set-Cookie: ${line}`), 'Clear-Site-Data: "*"', 'Service-Worker-Allowed: /');
  });
  wss.on('connection', (socket) => socket.send('hello'));
  return listenOnLoopback(server, wss);
}

let upstream: Awaited<ReturnType<typeof startHostileUpstream>>;
let portal: TestPortal;
let victim: Agent;
let attacker: Agent;

beforeAll(async () => {
  upstream = await startHostileUpstream();
  const apps = makeAppsDir({
    'ea/evil/index.js': HOSTILE_APP,
    'ea/evil-up/app.json': JSON.stringify({ title: 'Evil upstream', upstream: upstream.url }),
    'ea/plain/index.js': koaAppSource('plain'),
    'ea/chat/index.js': REALTIME_APP,
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  victim = new Agent(portal.origin);
  await victim.login('ea@example.com', DEMO_PASSWORD);
  // The app's author, signed in with an account of their own: the session they would plant.
  attacker = new Agent(portal.origin);
  await attacker.login('devel@example.com', DEMO_PASSWORD);
});
afterAll(async () => {
  await portal?.stopAll();
  await upstream?.close();
});

const JSON_ACCEPT = { Accept: 'application/json' };
const sessionOf = (agent: Agent, name = 'atrium.sid') => ({ sid: agent.cookie(name)!.value, sig: agent.cookie(`${name}.sig`)!.value });
const plantQuery = (agent: Agent) => {
  const { sid, sig } = sessionOf(agent);
  return `sid=${encodeURIComponent(sid)}&sig=${encodeURIComponent(sig)}`;
};

/** The harmful lines are gone (each names the attacker's session), the app's own cookie is there. */
function expectOnlyHarmlessCookies(setCookies: string[]): void {
  const { sid, sig } = sessionOf(attacker);
  expect(setCookies).toContain(APP_COOKIE);
  expect(setCookies.filter((line) => line.includes(sid) || line.includes(sig))).toEqual([]);
}

function expectNoSiteWideHeaders(headers: Headers | IncomingHttpHeaders): void {
  const get = (name: string) => (headers instanceof Headers ? headers.get(name) : headers[name]) ?? null;
  expect(get('clear-site-data')).toBeNull();
  expect(get('service-worker-allowed')).toBeNull();
  // A front proxy's internal redirect would serve one of its own paths under the app's answer.
  expect(get('x-accel-redirect')).toBeNull();
  expect(get('x-sendfile')).toBeNull();
  expect(get('x-lighttpd-send-file')).toBeNull();
}

async function expectStillThemselves(agent: Agent, email: string, sid: string): Promise<void> {
  expect(agent.cookie('atrium.sid')!.value).toBe(sid);
  const me = await agent.get('/me', JSON_ACCEPT);
  expect(me.status).toBe(200);
  expect(me.json().email).toBe(email);
  const app = await agent.get('/apps/ea/plain/', JSON_ACCEPT);
  expect(app.json()).toMatchObject({ user: email });
}

/** A visitor of their own per test: a response that did get through would not spill into the next test. */
async function visitor(): Promise<Agent> {
  const agent = new Agent(portal.origin);
  await agent.login('ea@example.com', DEMO_PASSWORD);
  return agent;
}

describe('what an app response may not do', () => {
  it.each([
    ['an in-process app', '/apps/ea/evil'],
    ['an upstream app', '/apps/ea/evil-up'],
  ])('%s cannot set portal cookies, clear site data or widen a worker scope; its own cookie passes', async (_kind, prefix) => {
    const victim = await visitor();
    const { sid } = sessionOf(victim);
    const r = await victim.get(`${prefix}/page?${plantQuery(attacker)}`, JSON_ACCEPT);
    expect(r.status).toBe(200);
    expect(r.json().user).toBe('ea@example.com');
    expectOnlyHarmlessCookies(r.headers.getSetCookie());
    expectNoSiteWideHeaders(r.headers);
    expect(victim.cookie('app_pref')?.value).toBe('dark');
    await expectStillThemselves(victim, 'ea@example.com', sid);
  });

  it('filters an in-process app that throws after setting its headers (the error page keeps Set-Cookie)', async () => {
    const victim = await visitor();
    const { sid } = sessionOf(victim);
    const r = await victim.get(`/apps/ea/evil/fail?${plantQuery(attacker)}`, JSON_ACCEPT);
    expect(r.status).toBe(500);
    expectOnlyHarmlessCookies(r.headers.getSetCookie());
    expectNoSiteWideHeaders(r.headers);
    await expectStillThemselves(victim, 'ea@example.com', sid);
  });

  it('filters an upstream’s websocket handshake answer', async () => {
    const victim = await visitor();
    const cookie = `atrium.sid=${sessionOf(victim).sid}; atrium.sid.sig=${sessionOf(victim).sig}`;
    const answer = await upgrade(`/apps/ea/evil-up/ws?${plantQuery(attacker)}`, cookie);
    expect(answer.status).toBe(101);
    expectOnlyHarmlessCookies(([] as string[]).concat(answer.headers['set-cookie'] ?? []));
    expectNoSiteWideHeaders(answer.headers);
  });
});

describe('the refusal log', () => {
  it('says once per app and header what was refused, not once per response', () => {
    const lines: { app: string; header: string; cookie?: string; level: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()));
        done();
      },
    });
    const rules = new ResponseRules(pino({ level: 'warn' }, sink));
    for (let i = 0; i < 3; i++) {
      for (const app of ['/apps/ea/one', '/apps/ea/two']) {
        const headers: IncomingHttpHeaders = { 'set-cookie': ['atrium.sid=x', 'own=1'], 'clear-site-data': '"*"', 'service-worker-allowed': '/' };
        rules.filterUpstream(headers, app);
        expect(headers).toEqual({ 'set-cookie': ['own=1'] });
      }
    }
    expect(lines.map((l) => [l.app, l.header, l.level])).toEqual([
      ['/apps/ea/one', 'set-cookie', 40],
      ['/apps/ea/one', 'clear-site-data', 40],
      ['/apps/ea/one', 'service-worker-allowed', 40],
      ['/apps/ea/two', 'set-cookie', 40],
      ['/apps/ea/two', 'clear-site-data', 40],
      ['/apps/ea/two', 'service-worker-allowed', 40],
    ]);
    expect(lines[0]!.cookie).toBe('atrium.sid');
  });
});

describe('a request carrying the session cookie twice', () => {
  const pair = (agent: Agent) => `atrium.sid=${sessionOf(agent).sid}; atrium.sid.sig=${sessionOf(agent).sig}`;

  it('each cookie alone is a working session (so the refusals below are the duplicate’s doing)', async () => {
    for (const [agent, email] of [[victim, 'ea@example.com'], [attacker, 'devel@example.com']] as const) {
      const me = await fetch(`${portal.origin}/me`, { headers: { Cookie: pair(agent), ...JSON_ACCEPT } });
      expect(((await me.json()) as { email: string }).email).toBe(email);
      const socket = await connect(portal.origin, '/apps/ea/chat', pair(agent));
      expect(socket.ok).toBe(true);
      if (socket.ok) socket.socket.close();
      expect((await upgrade('/apps/ea/evil-up/ws', pair(agent))).status).toBe(101);
    }
  });

  it.each([
    ['the planted one first', () => `${pair(attacker)}; ${pair(victim)}`],
    ['the victim’s first', () => `${pair(victim)}; ${pair(attacker)}`],
  ])('is signed out everywhere, %s', async (_order, both) => {
    const cookie = both();
    // An app page, as a browser navigation: to /login as usual, and the narrower copies expire.
    const nav = await fetch(`${portal.origin}/apps/ea/plain/deep/page`, { headers: { Cookie: cookie, Accept: 'text/html' }, redirect: 'manual' });
    expect(nav.status).toBe(302);
    const location = new URL(nav.headers.get('location')!, portal.origin);
    expect(location.pathname).toBe('/login');
    expect(location.searchParams.get('returnTo')).toBe('/apps/ea/plain/deep/page');
    const expired = nav.headers.getSetCookie().filter((line) => line.startsWith('atrium.sid=;'));
    const paths = expired.map((line) => /path=([^;]*)/i.exec(line)?.[1]);
    expect(paths).toEqual(expect.arrayContaining(['/apps', '/apps/ea/plain', '/apps/ea/plain/deep', '/apps/ea/plain/deep/page']));
    expect(paths).not.toContain('/');
    // The same as an API call, and the portal's own routes.
    expect((await fetch(`${portal.origin}/apps/ea/plain/`, { headers: { Cookie: cookie, ...JSON_ACCEPT } })).status).toBe(401);
    expect((await fetch(`${portal.origin}/me`, { headers: { Cookie: cookie, ...JSON_ACCEPT } })).status).toBe(401);
    const page = await fetch(`${portal.origin}/profile`, { headers: { Cookie: cookie, Accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(401);
    const html = await page.text();
    expect(html).not.toContain('devel@example.com');
    expect(html).not.toContain('ea@example.com');
    // Sockets: a socket.io handshake and a websocket upgrade.
    expect(await connect(portal.origin, '/apps/ea/chat', cookie)).toEqual({ ok: false, message: 'unauthenticated' });
    expect((await upgrade('/apps/ea/evil-up/ws', cookie)).status).toBe(401);
  });

  it('is still refused when the copies differ only in spacing', async () => {
    const cookie = `${pair(attacker)};${pair(victim).replace('; ', ';   ')}`;
    expect((await fetch(`${portal.origin}/me`, { headers: { Cookie: cookie, ...JSON_ACCEPT } })).status).toBe(401);
    // A cookie that merely ends in the name is another cookie.
    const other = `x-atrium.sid=${sessionOf(attacker).sid}; ${pair(victim)}`;
    const me = await fetch(`${portal.origin}/me`, { headers: { Cookie: other, ...JSON_ACCEPT } });
    expect(((await me.json()) as { email: string }).email).toBe('ea@example.com');
  });
});

describe('the portal’s own Set-Cookie on an app’s response', () => {
  it('survives an app that replaces the header: a signature re-signed under a new key (SESSION_SECRET rotation)', async () => {
    const database = await createTestDatabase('sqlite');
    const apps = makeAppsDir({ 'ea/evil/index.js': HOSTILE_APP, 'ea/evil-up/app.json': JSON.stringify({ upstream: upstream.url }) });
    const oldKey = 'o'.repeat(40);
    const before = await startTestPortal({ database, env: { SESSION_SECRET: oldKey, APPS_DIR: apps } });
    const signedIn = new Agent(before.origin);
    await signedIn.login('ea@example.com', DEMO_PASSWORD);
    await before.stopAll();
    const rotated = await startTestPortal({ database, env: { SESSION_SECRET: `${'n'.repeat(40)},${oldKey}`, APPS_DIR: apps } });
    try {
      for (const prefix of ['/apps/ea/evil', '/apps/ea/evil-up']) {
        const agent = new Agent(rotated.origin);
        for (const [name, cookie] of signedIn.cookies) agent.cookies.set(name, cookie);
        const r = await agent.get(`${prefix}/?replace=1&sid=planted-id&sig=planted-sig`, JSON_ACCEPT);
        expect(r.status, prefix).toBe(200);
        const lines = r.headers.getSetCookie();
        expect(lines, prefix).toContain(APP_COOKIE);
        expect(lines.filter((line) => line.includes('planted-')), prefix).toEqual([]);
        // The portal re-signed the session cookie before the app ran; that line is still there.
        const resigned = lines.filter((line) => line.startsWith('atrium.sid.sig='));
        expect(resigned, prefix).toHaveLength(1);
        expect(agent.cookie('atrium.sid.sig')!.value, prefix).not.toBe(signedIn.cookie('atrium.sid.sig')!.value);
        expect((await agent.get('/me', JSON_ACCEPT)).json().email, prefix).toBe('ea@example.com');
      }
    } finally {
      await rotated.stopAll();
      await database.drop();
    }
  });
});

describe('under an https PUBLIC_URL (TLS ends in front; the portal listens on http)', () => {
  let secure: TestPortal;
  let idp: ExternalIdp;
  let publicOrigin: string;
  const responses: AgentResponse[] = [];
  let agent: Agent;

  beforeAll(async () => {
    // The embedded provider's issuer would be https too, and discovery needs TLS: an external
    // provider (oidc-provider on its own http port) signs the user in instead.
    const port = await freePort();
    publicOrigin = `https://127.0.0.1:${port}`;
    idp = await startExternalIdp('generic', publicOrigin);
    const apps = makeAppsDir({
      'stable/plain/index.js': koaAppSource('plain'),
      'stable/up/app.json': JSON.stringify({ upstream: upstream.url }),
      'stable/chat/index.js': REALTIME_APP,
    });
    secure = await startTestPortal({
      port,
      env: {
        PUBLIC_URL: publicOrigin,
        APPS_DIR: apps,
        OIDC_ISSUER: idp.issuer,
        OIDC_CLIENT_ID: idp.clientId,
        OIDC_CLIENT_SECRET: idp.clientSecret,
        OIDC_AUDIENCE: EXTERNAL_AUDIENCE,
        OIDC_SCOPE: 'openid profile email offline_access access:stable access:ea',
      },
    });
    // The code flow across both origins, the portal's public https URLs going to its http port.
    agent = new Agent(secure.origin);
    const idpAgent = new Agent(new URL(idp.issuer).origin);
    const start = await agent.get('/login?returnTo=/me');
    responses.push(start);
    const authorize = new URL(start.location!);
    authorize.searchParams.set('login_hint', 'ext-ea');
    let next: string | undefined = authorize.href;
    for (let hops = 0; next && hops < 15; hops++) {
      const url: URL = new URL(next);
      const portalHop: boolean = url.origin === publicOrigin || url.origin === secure.origin;
      const r: AgentResponse = portalHop ? await agent.get(`${url.pathname}${url.search}`, JSON_ACCEPT) : await idpAgent.get(next, { Accept: 'application/json, text/html' });
      if (portalHop) responses.push(r);
      next = r.status >= 300 && r.status < 400 ? r.location : undefined;
    }
  });
  afterAll(async () => {
    await secure?.stopAll();
    await idp?.close();
  });

  const attributes = (line: string) => line.split(';').slice(1).map((a) => a.trim().toLowerCase());

  it('names the session cookie __Host-atrium.sid: Secure, Path=/, no Domain', async () => {
    expect(responses.at(-1)!.json()).toMatchObject({ email: 'ext.ea@corp.example' });
    const lines = responses.flatMap((r) => r.headers.getSetCookie());
    for (const name of ['__Host-atrium.sid', '__Host-atrium.sid.sig']) {
      const set = lines.filter((line) => line.startsWith(`${name}=`) && !line.startsWith(`${name}=;`));
      expect(set, name).toHaveLength(1);
      const attrs = attributes(set[0]!);
      expect(attrs).toContain('secure');
      expect(attrs).toContain('path=/');
      expect(attrs).toContain('httponly');
      expect(attrs.some((a) => a.startsWith('domain'))).toBe(false);
    }
    expect(lines.some((line) => /^atrium\.sid[.=]/.test(line))).toBe(false);
    // The login transaction is scoped to the callback, so __Secure- rather than __Host-.
    const transaction = lines.find((line) => line.startsWith('__Secure-atrium.auth.') && !line.includes('.sig='));
    expect(transaction).toBeDefined();
    expect(attributes(transaction!)).toEqual(expect.arrayContaining(['secure', 'path=/auth/callback', 'httponly']));
  });

  it('reads it on every path: portal routes, app requests, socket.io handshakes', async () => {
    expect((await agent.get('/me', JSON_ACCEPT)).json()).toMatchObject({ email: 'ext.ea@corp.example' });
    expect((await agent.get('/apps/stable/plain/', JSON_ACCEPT)).json()).toMatchObject({ user: 'ext.ea@corp.example' });
    const { sid, sig } = sessionOf(agent, '__Host-atrium.sid');
    const cookie = `__Host-atrium.sid=${sid}; __Host-atrium.sid.sig=${sig}`;
    const socket = await connect(secure.origin, '/apps/stable/chat', cookie);
    expect(socket.ok).toBe(true);
    if (socket.ok) socket.socket.close();
    // Twice is signed out here too.
    const twice = `${cookie}; ${cookie}`;
    expect((await fetch(`${secure.origin}/me`, { headers: { Cookie: twice, ...JSON_ACCEPT } })).status).toBe(401);
    expect((await fetch(`${secure.origin}/apps/stable/plain/`, { headers: { Cookie: twice, ...JSON_ACCEPT } })).status).toBe(401);
    expect(await connect(secure.origin, '/apps/stable/chat', twice)).toEqual({ ok: false, message: 'unauthenticated' });
  });

  it('never lets the prefixed cookies reach an upstream', async () => {
    agent.cookies.set('app_cookie', { name: 'app_cookie', value: 'kept', path: '/', httpOnly: false, secure: false, sameSite: undefined, raw: '' });
    const r = await agent.get('/apps/stable/up/', JSON_ACCEPT);
    agent.cookies.delete('app_cookie');
    expect(r.status).toBe(200);
    expect(r.json().cookie).toBe('app_cookie=kept');
  });
});

/** A websocket handshake through the portal: the status, and the answer's headers. */
function upgrade(path: string, cookie: string): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${portal.origin.replace('http', 'ws')}${path}`, { headers: { Cookie: cookie } });
    ws.once('upgrade', (res) => {
      resolve({ status: res.statusCode ?? 101, headers: res.headers });
      ws.once('open', () => ws.close());
    });
    ws.once('unexpected-response', (req, res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.resume();
      req.destroy();
    });
    ws.once('error', reject);
  });
}
