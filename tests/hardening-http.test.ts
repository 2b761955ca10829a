import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { LEVEL, startLoggedPortal, type LogLine } from './helpers/logged-portal.ts';
import { abortedUpload, rawRequest, rawUpgrade, type RawResponse } from './helpers/raw-http.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { listenOnLoopback, startEchoUpstream } from './helpers/upstream.ts';

/**
 * What every request passes, against a real portal: only PUBLIC_URL's host and app origins are
 * served (421 otherwise, upgrades and socket.io included; probes excepted), the provider names
 * PUBLIC_URL only, every response the portal renders keeps the hardening headers, and a client
 * that walks away mid-upload is a disconnect, not a 500.
 */

/** An in-process app that reads its upload itself, as a file-upload handler does. */
const UPLOAD_APP = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use(async (ctx) => {
  let bytes = 0;
  for await (const chunk of ctx.req) bytes += chunk.length;
  ctx.body = { bytes };
});
export default app;
`;

/** An in-process app with a bug: every request is a 500. */
const BROKEN_APP = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use(() => { throw new Error('the app has a bug'); });
export default app;
`;

/** An in-process app that says where Koa believes the request went. */
const HREF_APP = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { href: ctx.href, url: ctx.URL.href, host: ctx.host, originalUrl: ctx.originalUrl }; });
export default app;
`;

const REALTIME_APP = `import Koa from ${JSON.stringify(KOA)};
export default { app: new Koa(), realtime(nsp) { nsp.on('connection', (s) => s.emit('hello')); } };
`;

/** An upstream that reads uploads to the end before answering. */
async function startUploadUpstream() {
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => res.end(JSON.stringify({ bytes })));
    req.on('error', () => res.destroy());
  });
  return listenOnLoopback(server, new WebSocketServer({ noServer: true }));
}

const HARDENING = { 'x-frame-options': 'SAMEORIGIN', 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin' };
const JSON_ACCEPT = { Accept: 'application/json' };
const HTML_ACCEPT = { Accept: 'text/html' };
const ELSEWHERE = 'evil.example';

let echo: Awaited<ReturnType<typeof startEchoUpstream>>;
let uploads: Awaited<ReturnType<typeof startUploadUpstream>>;
let portal: Awaited<ReturnType<typeof startLoggedPortal>>;
let port: number;
let host: string;
let ea: Agent;
let admin: Agent;

beforeAll(async () => {
  echo = await startEchoUpstream();
  uploads = await startUploadUpstream();
  const apps = makeAppsDir({
    'ea/echo/app.json': JSON.stringify({ title: 'Echo', upstream: echo.url }),
    'ea/receiver/app.json': JSON.stringify({ title: 'Receiver', upstream: uploads.url }),
    'ea/uploads/index.js': UPLOAD_APP,
    'ea/broken/index.js': BROKEN_APP,
    'ea/chat/index.js': REALTIME_APP,
    'ea/href/index.js': HREF_APP,
    'devel/secret/index.js': koaAppSource('secret'),
  });
  portal = await startLoggedPortal({ APPS_DIR: apps });
  host = new URL(portal.origin).host;
  port = Number(new URL(portal.origin).port);
  ea = new Agent(portal.origin);
  await ea.login('ea@example.com', DEMO_PASSWORD);
  admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
});
afterAll(async () => {
  await portal?.stopAll();
  await echo?.close();
  await uploads?.close();
});

const hardeningOf = (r: RawResponse | { headers: Headers }) =>
  Object.fromEntries(Object.keys(HARDENING).map((name) => [name, r.headers instanceof Headers ? r.headers.get(name) : r.headers[name]]));

describe('a request for a host the portal does not serve', () => {
  it('is not answered by the embedded provider: discovery names PUBLIC_URL, another Host gets a 421', async () => {
    const own = await rawRequest(port, '/idp/.well-known/openid-configuration', { headers: { Host: host } });
    expect(own.status).toBe(200);
    expect(own.json()).toMatchObject({ issuer: `${portal.origin}/idp`, authorization_endpoint: `${portal.origin}/idp/auth` });

    for (const other of [ELSEWHERE, `${ELSEWHERE}:${port}`, `localhost:${port}`, `10.0.0.7:${port}`, `${host}.evil.example`]) {
      const r = await rawRequest(port, '/idp/.well-known/openid-configuration', { headers: { Host: other, ...JSON_ACCEPT } });
      expect(r.status, other).toBe(421);
      expect(r.json(), other).toMatchObject({ error: 'misdirected_request' });
      expect(r.body, other).not.toContain(other);
    }
  });

  it('gets a clear 421, a page for a browser and JSON for an API call, signed in or not', async () => {
    for (const path of ['/', '/login?returnTo=/', '/apps/ea/echo/', '/me', '/admin', '/profile', '/nothing-here']) {
      const page = await rawRequest(port, path, { headers: { Host: ELSEWHERE, ...HTML_ACCEPT, Cookie: cookieHeader(ea) } });
      expect(page.status, path).toBe(421);
      expect(page.headers['content-type'], path).toMatch(/^text\/html/);
      expect(page.body, path).toContain('Wrong address');
      expect(page.body, path).toContain(`Atrium is at ${portal.origin}/`);
      expect(hardeningOf(page), path).toEqual(HARDENING);
      const api = await rawRequest(port, path, { headers: { Host: ELSEWHERE, ...JSON_ACCEPT } });
      expect(api.status, path).toBe(421);
      expect(api.json(), path).toEqual({ error: 'misdirected_request', message: `This server does not answer for that address. Atrium is at ${portal.origin}/.` });
    }
  });

  it('cannot read /metrics from loopback (a DNS-rebinding page); a loopback name or the portal host can', async () => {
    expect((await rawRequest(port, '/metrics', { headers: { Host: `${ELSEWHERE}:${port}` } })).status).toBe(421);
    // The rebinding page cannot borrow an admin's session either: its cookies are its own host's, but even so.
    expect((await rawRequest(port, '/metrics', { headers: { Host: `${ELSEWHERE}:${port}`, Cookie: cookieHeader(admin) } })).status).toBe(421);
    for (const local of [host, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`]) {
      const r = await rawRequest(port, '/metrics', { headers: { Host: local } });
      expect(r.status, local).toBe(200);
      expect(r.body, local).toContain('atrium_http_requests_total');
    }
  });

  it('leaves probes usable whatever their Host (a kubelet names the pod IP), and tells them only up or down', async () => {
    for (const probeHost of ['10.0.0.7:3000', ELSEWHERE]) {
      expect((await rawRequest(port, '/healthz', { headers: { Host: probeHost } })).json()).toEqual({ status: 'ok' });
      const ready = await rawRequest(port, '/readyz', { headers: { Host: probeHost } });
      expect(ready.status).toBe(200);
      expect(ready.json()).toEqual({ status: 'ready', checks: { database: 'ok', provider: 'ok' } });
    }
    // On the portal's own host the operator's details are there.
    expect((await rawRequest(port, '/readyz', { headers: { Host: host } })).json()).toHaveProperty('isolation');
  });

  it('gets the 421 for upgrades too: upstream websockets, socket.io over websocket and over polling', async () => {
    const cookie = cookieHeader(ea);
    // On the portal's host each of these is served…
    expect((await rawUpgrade(port, '/apps/ea/echo/socket', { Host: host, Cookie: cookie })).status).toBe(101);
    expect((await rawUpgrade(port, '/socket.io/?EIO=4&transport=websocket', { Host: host, Cookie: cookie })).status).toBe(101);
    expect((await rawRequest(port, '/socket.io/?EIO=4&transport=polling', { headers: { Host: host } })).status).toBe(200);
    // …and on another it is not, with the same answer as everything else.
    for (const path of ['/apps/ea/echo/socket', '/socket.io/?EIO=4&transport=websocket', '/apps/devel/secret/']) {
      const r = await rawUpgrade(port, path, { Host: ELSEWHERE, Cookie: cookie });
      expect(r.status, path).toBe(421);
      expect(r.json(), path).toMatchObject({ error: 'misdirected_request' });
      expect(hardeningOf(r), path).toEqual(HARDENING);
    }
    const polling = await rawRequest(port, '/socket.io/?EIO=4&transport=polling', { headers: { Host: ELSEWHERE, Cookie: cookie } });
    expect(polling.status).toBe(421);
    expect(polling.json()).toMatchObject({ error: 'misdirected_request' });
    expect(hardeningOf(polling)).toEqual(HARDENING);
  });
});

describe('an absolute-form request target (GET http://host/path HTTP/1.1)', () => {
  const DISCOVERY = '/idp/.well-known/openid-configuration';
  const expectOnlyPublicUrl = (r: RawResponse, what: string) => {
    expect(r.status, what).toBe(200);
    const discovery = r.json<Record<string, unknown>>();
    expect(discovery.issuer, what).toBe(`${portal.origin}/idp`);
    for (const value of Object.values(discovery)) if (typeof value === 'string' && value.includes('://')) expect(value.startsWith(`${portal.origin}/`), `${what}: ${value}`).toBe(true);
  };

  it('naming another host is refused (421) even with the right Host, so the provider never names it', async () => {
    for (const target of [`http://${ELSEWHERE}${DISCOVERY}`, `https://${ELSEWHERE}${DISCOVERY}`, `http://${ELSEWHERE}:${port}${DISCOVERY}`, `HTTP://${ELSEWHERE.toUpperCase()}${DISCOVERY}`]) {
      const r = await rawRequest(port, target, { headers: { Host: host, ...JSON_ACCEPT } });
      expect(r.status, target).toBe(421);
      expect(r.json(), target).toMatchObject({ error: 'misdirected_request' });
      expect(r.body, target).not.toContain(ELSEWHERE);
    }
    // Naming the portal itself, it is served as its path: discovery names PUBLIC_URL and nothing else.
    expectOnlyPublicUrl(await rawRequest(port, `http://${host}${DISCOVERY}`, { headers: { Host: host } }), 'own host');
    expectOnlyPublicUrl(await rawRequest(port, `http://${host}${DISCOVERY}?x=1`, { headers: { Host: host } }), 'own host, with a query');
  });

  it('reaches an in-process app only in origin-form: its ctx.href is PUBLIC_URL’s', async () => {
    const cookie = cookieHeader(ea);
    const r = await rawRequest(port, `http://${host}/apps/ea/href/x?y=1`, { headers: { Host: host, Cookie: cookie, ...JSON_ACCEPT } });
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ href: `${portal.origin}/apps/ea/href/x?y=1`, url: `${portal.origin}/apps/ea/href/x?y=1`, host, originalUrl: '/apps/ea/href/x?y=1' });
    const elsewhere = await rawRequest(port, `http://${ELSEWHERE}/apps/ea/href/x`, { headers: { Host: host, Cookie: cookie, ...JSON_ACCEPT } });
    expect(elsewhere.status).toBe(421);
    expect(elsewhere.body).not.toContain(ELSEWHERE);
  });

  it('is refused the same by Koa alone (the Host guard), without the server’s raw-host guard in front', async () => {
    // The portal's Koa app on a bare server: only its pipeline between the request and the app.
    const bare: Server = createServer(portal.portal.app.callback());
    await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
    const barePort = (bare.address() as AddressInfo).port;
    try {
      const cookie = cookieHeader(ea);
      const own = await rawRequest(barePort, `http://${host}/apps/ea/href/x?y=1`, { headers: { Host: host, Cookie: cookie, ...JSON_ACCEPT } });
      expect(own.status).toBe(200);
      expect(own.json()).toMatchObject({ href: `${portal.origin}/apps/ea/href/x?y=1`, url: `${portal.origin}/apps/ea/href/x?y=1`, originalUrl: '/apps/ea/href/x?y=1' });
      const elsewhere = await rawRequest(barePort, `http://${ELSEWHERE}/apps/ea/href/x`, { headers: { Host: host, Cookie: cookie, ...JSON_ACCEPT } });
      expect(elsewhere.status).toBe(421);
      expect((await rawRequest(barePort, `http://${ELSEWHERE}${DISCOVERY}`, { headers: { Host: host, ...JSON_ACCEPT } })).status).toBe(421);
      expectOnlyPublicUrl(await rawRequest(barePort, `http://${host}${DISCOVERY}`, { headers: { Host: host } }), 'Koa alone, own host');
      const malformed = await rawRequest(barePort, `ftp://${host}/`, { headers: { Host: host, ...JSON_ACCEPT } });
      expect(malformed.status).toBe(400);
      expect(malformed.json()).toMatchObject({ error: 'bad_request_target' });
    } finally {
      bare.closeAllConnections();
      await new Promise<void>((resolve) => bare.close(() => resolve()));
    }
  });

  it('that is malformed gets a 400', async () => {
    for (const target of [`ftp://${host}/`, `http://user@${host}/`, `http://${ELSEWHERE}@${host}/`, `http://${host},${ELSEWHERE}/`, 'http:///nothing']) {
      const r = await rawRequest(port, target, { headers: { Host: host, ...JSON_ACCEPT } });
      expect(r.status, target).toBe(400);
      expect(r.json(), target).toMatchObject({ error: 'bad_request_target' });
      expect(hardeningOf(r), target).toEqual(HARDENING);
    }
    // The asterisk form names no resource the portal has (the path checks say so first).
    expect((await rawRequest(port, '*', { method: 'OPTIONS', headers: { Host: host, ...JSON_ACCEPT } })).status).toBe(400);
  });

  it('gets the same rule on upgrades and socket.io, and is served as its path when it names the portal', async () => {
    const cookie = cookieHeader(ea);
    for (const path of ['/apps/ea/echo/socket', '/socket.io/?EIO=4&transport=websocket']) {
      const refused = await rawUpgrade(port, `http://${ELSEWHERE}${path}`, { Host: host, Cookie: cookie });
      expect(refused.status, path).toBe(421);
      expect(refused.json(), path).toMatchObject({ error: 'misdirected_request' });
      expect((await rawUpgrade(port, `http://${host}${path}`, { Host: host, Cookie: cookie })).status, path).toBe(101);
      const malformed = await rawUpgrade(port, `http://user@${host}${path}`, { Host: host, Cookie: cookie });
      expect(malformed.status, path).toBe(400);
      expect(malformed.json(), path).toMatchObject({ error: 'bad_request_target' });
    }
    const polling = '/socket.io/?EIO=4&transport=polling';
    expect((await rawRequest(port, `http://${ELSEWHERE}${polling}`, { headers: { Host: host, ...JSON_ACCEPT } })).status).toBe(421);
    expect((await rawRequest(port, `http://${host}${polling}`, { headers: { Host: host } })).status).toBe(200);
  });

  it('lets probes through whatever host it names, as a Host would', async () => {
    expect((await rawRequest(port, `http://10.0.0.7:3000/healthz`, { headers: { Host: host } })).json()).toEqual({ status: 'ok' });
    expect((await rawRequest(port, `http://${ELSEWHERE}/readyz`, { headers: { Host: host } })).json()).not.toHaveProperty('isolation');
  });
});

describe('a Host that readers would read differently', () => {
  it('holding a comma or an @ is a 400, over HTTP and upgrades alike', async () => {
    for (const bad of [`${host},${ELSEWHERE}`, `${ELSEWHERE},${host}`, `, ${host}`, `user@${host}`, `${ELSEWHERE}@${host}`]) {
      const r = await rawRequest(port, '/', { headers: { Host: bad, ...JSON_ACCEPT } });
      expect(r.status, bad).toBe(400);
      expect(r.json(), bad).toMatchObject({ error: 'bad_host' });
      expect(r.body, bad).not.toContain(ELSEWHERE);
      const upgrade = await rawUpgrade(port, '/apps/ea/echo/socket', { Host: bad, Cookie: cookieHeader(ea) });
      expect(upgrade.status, bad).toBe(400);
      expect(upgrade.json(), bad).toMatchObject({ error: 'bad_host' });
    }
  });
});

describe('behind the TLS proxy (an https PUBLIC_URL, the proxy trusted)', () => {
  let secure: Awaited<ReturnType<typeof startLoggedPortal>>;
  let securePort: number;
  beforeAll(async () => {
    secure = await startLoggedPortal((p) => ({ PUBLIC_URL: `https://127.0.0.1:${p}` }));
    securePort = Number(new URL(secure.origin).port);
  });
  afterAll(async () => {
    await secure?.stopAll();
  });

  it('the embedded provider names PUBLIC_URL whatever the forwarded scheme says, and a forwarded host must be known', async () => {
    const publicOrigin = `https://127.0.0.1:${securePort}`;
    const cases: Record<string, string>[] = [{}, { 'X-Forwarded-Proto': 'http' }, { 'X-Forwarded-Proto': 'https' }, { 'X-Forwarded-Host': `127.0.0.1:${securePort}`, 'X-Forwarded-Proto': 'gopher' }];
    for (const forwarded of cases) {
      const r = await rawRequest(securePort, '/idp/.well-known/openid-configuration', { headers: { Host: `127.0.0.1:${securePort}`, ...forwarded } });
      expect(r.status, JSON.stringify(forwarded)).toBe(200);
      const discovery = r.json<Record<string, unknown>>();
      expect(discovery.authorization_endpoint, JSON.stringify(forwarded)).toBe(`${publicOrigin}/idp/auth`);
      for (const value of Object.values(discovery)) if (typeof value === 'string' && value.includes('://')) expect(value.startsWith(`${publicOrigin}/`), value).toBe(true);
    }
    // Koa believes X-Forwarded-Host behind the proxy, so that is the host that must be known.
    const spoofed = await rawRequest(securePort, '/idp/.well-known/openid-configuration', { headers: { Host: `127.0.0.1:${securePort}`, 'X-Forwarded-Host': ELSEWHERE, ...JSON_ACCEPT } });
    expect(spoofed.status).toBe(421);
  });

  it('a forwarded host with an empty first value or a comma is a 400, not a fall-back to Host', async () => {
    // Koa reads `, evil.example` as the empty host; the guard must not read it as "no header, use Host".
    const own = `127.0.0.1:${securePort}`;
    for (const forwarded of [`, ${ELSEWHERE}`, `,${own}`, `${own}, ${ELSEWHERE}`, `${ELSEWHERE}, ${own}`, `${ELSEWHERE}@${own}`]) {
      for (const path of ['/', '/idp/.well-known/openid-configuration', '/socket.io/?EIO=4&transport=polling']) {
        const r = await rawRequest(securePort, path, { headers: { Host: own, 'X-Forwarded-Host': forwarded, ...JSON_ACCEPT } });
        expect(r.status, `${forwarded} ${path}`).toBe(400);
        expect(r.json(), `${forwarded} ${path}`).toMatchObject({ error: 'bad_host' });
      }
      const upgrade = await rawUpgrade(securePort, '/socket.io/?EIO=4&transport=websocket', { Host: own, 'X-Forwarded-Host': forwarded });
      expect(upgrade.status, forwarded).toBe(400);
    }
  });

  it('/metrics is not local when a forwarded host names the portal (a rebinding page can add that header)', async () => {
    const r = await rawRequest(securePort, '/metrics', { headers: { Host: `${ELSEWHERE}:${securePort}`, 'X-Forwarded-Host': `127.0.0.1:${securePort}`, ...JSON_ACCEPT } });
    expect(r.status).toBe(403);
    expect((await rawRequest(securePort, '/metrics', { headers: { Host: `127.0.0.1:${securePort}` } })).status).toBe(200);
  });
});

describe('with APP_ORIGIN, the app hosts the pattern names', () => {
  let origins: Awaited<ReturnType<typeof startLoggedPortal>>;
  let p: number;
  beforeAll(async () => {
    const apps = makeAppsDir({ 'ea/echo/app.json': JSON.stringify({ title: 'Echo', upstream: echo.url }) });
    origins = await startLoggedPortal((listening) => ({ APPS_DIR: apps, APP_ORIGIN: `http://{tier}-{name}.apps.localhost:${listening}` }));
    p = Number(new URL(origins.origin).port);
  });
  afterAll(async () => {
    await origins?.stopAll();
  });

  it('are served (sign-in through the portal), and hosts beside the pattern get a 421', async () => {
    for (const appHost of [`ea-echo.apps.localhost:${p}`, `EA-ECHO.apps.localhost:${p}`, `ea-nothing-here.apps.localhost:${p}`]) {
      const r = await rawRequest(p, '/', { headers: { Host: appHost, ...HTML_ACCEPT } });
      expect(r.status, appHost).toBe(302);
      expect(r.headers.location, appHost).toMatch(new RegExp(`^${origins.origin}/auth/handoff\\?`));
    }
    expect((await rawRequest(p, '/', { headers: { Host: `127.0.0.1:${p}`, ...HTML_ACCEPT } })).status).toBe(200);
    for (const other of [ELSEWHERE, `ea-echo.apps.localhost:1`, `apps.localhost:${p}`, `ea-echo.apps.localhost.evil.example:${p}`, `echo.apps.localhost:${p}`]) {
      expect((await rawRequest(p, '/', { headers: { Host: other, ...JSON_ACCEPT } })).status, other).toBe(421);
      expect((await rawUpgrade(p, '/socket', { Host: other })).status, other).toBe(421);
    }
    // An app host's upgrade reaches the app origin's own checks (no session here: 401).
    expect((await rawUpgrade(p, '/socket', { Host: `ea-echo.apps.localhost:${p}` })).status).toBe(401);
  });

  it('only as `<tier>-<name>`: no other label is an app’s, and a Host Koa would read as another host is a 400', async () => {
    // Koa's ctx.host for `evil,ea-echo…` is `evil`: it must never get past the guard as an app host and then be served as the portal's.
    for (const bad of [`evil,ea-echo.apps.localhost:${p}`, `${ELSEWHERE},ea-echo.apps.localhost:${p}`, `x@ea-echo.apps.localhost:${p}`, `, ea-echo.apps.localhost:${p}`]) {
      for (const accept of [HTML_ACCEPT, JSON_ACCEPT]) {
        const r = await rawRequest(p, '/', { headers: { Host: bad, ...accept } });
        expect(r.status, bad).toBe(400);
        expect(r.body, bad).not.toContain('data-testid="launcher"');
      }
      expect((await rawUpgrade(p, '/socket', { Host: bad })).status, bad).toBe(400);
    }
    for (const other of [`admin-echo.apps.localhost:${p}`, `nope-echo.apps.localhost:${p}`, `ea-a%40b.apps.localhost:${p}`, `ea--echo.apps.localhost:${p}`, `ea-echo-.apps.localhost:${p}`, `ea-ec_ho.apps.localhost:${p}`]) {
      expect((await rawRequest(p, '/', { headers: { Host: other, ...JSON_ACCEPT } })).status, other).toBe(421);
      expect((await rawUpgrade(p, '/socket', { Host: other })).status, other).toBe(421);
    }
  });

  it('serves the app the guard read: an absolute-form target naming an app host is that app’s', async () => {
    const r = await rawRequest(p, `http://ea-echo.apps.localhost:${p}/x`, { headers: { Host: `ea-echo.apps.localhost:${p}`, ...HTML_ACCEPT } });
    expect(r.status).toBe(302);
    expect(r.headers.location).toMatch(new RegExp(`^${origins.origin}/auth/handoff\\?`));
    expect((await rawRequest(p, `http://evil,ea-echo.apps.localhost:${p}/x`, { headers: { Host: `ea-echo.apps.localhost:${p}`, ...JSON_ACCEPT } })).status).toBe(400);
    expect((await rawRequest(p, `http://${ELSEWHERE}/x`, { headers: { Host: `ea-echo.apps.localhost:${p}`, ...JSON_ACCEPT } })).status).toBe(421);
  });
});

describe('error pages keep the hardening headers', () => {
  it('on every status the portal renders itself: 400, 401, 403, 404, 421, 500', async () => {
    const anonymous = new Agent(portal.origin);
    const cases: [string, () => Promise<{ status: number; headers: Headers | RawResponse['headers']; text?: string; body?: string }>, number][] = [
      ['404 page', () => ea.get('/nothing-here'), 404],
      ['403 page with the access-request form', () => ea.get('/apps/devel/secret/'), 403],
      ['403 JSON', () => ea.get('/apps/devel/secret/', JSON_ACCEPT), 403],
      ['401 JSON', () => anonymous.get('/apps/ea/echo/', JSON_ACCEPT), 401],
      ['421 page', () => rawRequest(port, '/', { headers: { Host: ELSEWHERE, ...HTML_ACCEPT } }), 421],
      ['500 page of a broken app', () => ea.get('/apps/ea/broken/'), 500],
      ['400 hostile path', () => rawRequest(port, '/apps/ea/echo/%2e%2e/%2e%2e/devel/secret/', { headers: { Host: host, Cookie: cookieHeader(ea), ...HTML_ACCEPT } }), 400],
      ['400 from the body parser', () => rawRequest(port, '/profile', { method: 'POST', headers: { Host: host, Cookie: cookieHeader(ea), 'Content-Type': 'application/json', ...JSON_ACCEPT }, body: '{"not json' }), 400],
      ['404 for an upgrade nobody serves', () => rawUpgrade(port, '/not-an-app', { Host: host, Cookie: cookieHeader(ea) }), 404],
    ];
    for (const [what, send, status] of cases) {
      const r = await send();
      expect(r.status, what).toBe(status);
      expect(hardeningOf(r as never), what).toEqual(HARDENING);
    }
    // The page that must never be framed: it holds a form that acts for the user.
    const forbidden = await ea.get('/apps/devel/secret/');
    expect(forbidden.text).toContain('data-testid="access-request"');
  });
});

describe('a client that aborts an upload', () => {
  const linesAfter = (start: number) => portal.log.slice(start);
  const waitForLine = async (start: number, msg: string): Promise<LogLine> => {
    for (let i = 0; i < 100; i++) {
      const line = linesAfter(start).find((l) => l.msg === msg);
      if (line) return line;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no "${msg}" log line after ${start}; saw ${JSON.stringify(linesAfter(start).map((l) => l.msg))}`);
  };
  /** Requests counted by area and status class, from /metrics (its counters only ever grow). */
  const counted = async (): Promise<Record<string, number>> => {
    const metrics = await (await fetch(`${portal.origin}/metrics`)).text();
    return Object.fromEntries([...metrics.matchAll(/^atrium_http_requests_total\{area="(\w+)",status="(\dxx)"\} (\d+)$/gm)].map((m) => [`${m[1]} ${m[2]}`, Number(m[3])]));
  };

  it('is logged as a client disconnect (info, not error), and no 5xx is counted, in-process or proxied', async () => {
    const before = await counted();
    // An app reading the upload itself, an upstream reading it through the proxy, the portal's body parser.
    const uploadsTo: [string, string][] = [
      ['/apps/ea/uploads/file', 'application/octet-stream'],
      ['/apps/ea/receiver/file', 'application/octet-stream'],
      ['/profile', 'application/x-www-form-urlencoded'],
    ];
    for (const [path, type] of uploadsTo) {
      const start = portal.log.length;
      await abortedUpload(port, path, { Cookie: cookieHeader(ea), 'Content-Type': type, ...JSON_ACCEPT });
      const line = await waitForLine(start, 'client disconnected');
      expect(line.level, path).toBeLessThanOrEqual(LEVEL.info);
      expect(line, path).toMatchObject({ method: 'POST', url: path });
      // Give any error line time to appear, then make sure there is none.
      await new Promise((r) => setTimeout(r, 300));
      expect(linesAfter(start).filter((l) => l.level >= LEVEL.warn), path).toEqual([]);
    }
    const after = await counted();
    const grew = (key: string) => (after[key] ?? 0) - (before[key] ?? 0);
    // Counted where they happened, as the client's doing (499), never as the server's.
    expect({ apps5xx: grew('apps 5xx'), portal5xx: grew('portal 5xx'), apps4xx: grew('apps 4xx'), portal4xx: grew('portal 4xx') }).toEqual({ apps5xx: 0, portal5xx: 0, apps4xx: 2, portal4xx: 1 });
  });

  it('still leaves a real failure a 500, logged as an error', async () => {
    const start = portal.log.length;
    expect((await ea.get('/apps/ea/broken/', JSON_ACCEPT)).status).toBe(500);
    expect(linesAfter(start).find((l) => l.msg === 'request failed')?.level).toBe(LEVEL.error);
  });

  it('counts proxied requests under apps with the upstream’s status', async () => {
    const before = await counted();
    expect((await ea.get('/apps/ea/echo/', JSON_ACCEPT)).status).toBe(200);
    const after = await counted();
    expect((after['apps 2xx'] ?? 0) - (before['apps 2xx'] ?? 0)).toBe(1);
  });
});
