import { request } from 'node:http';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { type HostAgentInMode, MODES, type ModePortal, startModePortal } from './helpers/modes.ts';
import { EXAMPLE_APPS, startTestPortal, type TestPortal } from './helpers/portal.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

let portal: TestPortal;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let ea: Agent;

/** A supervised upstream: a Node one-liner that serves its pid on PORT. */
const SUPERVISED = `require('http').createServer((q, s) => s.end(JSON.stringify({ pid: process.pid, port: process.env.PORT }))).listen(process.env.PORT, '127.0.0.1')`;

let upstreamApps: string;

beforeAll(async () => {
  upstream = await startEchoUpstream();
  const apps = (upstreamApps = makeAppsDir({
    'ea/echo/app.json': JSON.stringify({ title: 'Echo', upstream: upstream.url }),
    'devel/secret/app.json': JSON.stringify({ title: 'Secret', upstream: upstream.url }),
    'stable/down/app.json': JSON.stringify({ title: 'Down', upstream: 'http://127.0.0.1:9' }),
    'stable/supervised/app.json': JSON.stringify({ upstream: 'http://127.0.0.1:0', command: `node -e "${SUPERVISED.replace(/"/g, '\\"')}"` }),
    'stable/inproc/index.js': koaAppSource('inproc'),
  }));
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  ea = new Agent(portal.origin);
  await ea.login('ea@example.com', DEMO_PASSWORD);
});
afterAll(async () => {
  await portal?.stopAll();
  await upstream?.close();
});

const SPOOFED = {
  'X-Atrium-User': 'admin-sub',
  'X-Atrium-Email': 'admin@example.com',
  'X-Atrium-Level': 'admin',
  'X-Atrium-Groups': 'admin',
  'X-Atrium-Assertion': 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
  'x-atrium-anything': 'x',
  'X-Forwarded-Prefix': '/evil',
  'X-Forwarded-Host': 'evil.example',
  'X-Forwarded-For': '6.6.6.6',
  X_Atrium_Groups: 'admin',
  'X-Real-IP': '6.6.6.6',
  'X-Forwarded-Port': '1',
};

/** Long enough for any loaded machine: closing is event-driven, so this only bounds a failure. */
const CLOSED_WITHIN_MS = 10_000;

describe.each(MODES)('an upstream app, with %s', (mode) => {
  let setup: ModePortal;
  let eaBrowser: HostAgentInMode;
  let develBrowser: HostAgentInMode;
  beforeAll(async () => {
    setup = await startModePortal(mode, { env: { APPS_DIR: upstreamApps } });
    eaBrowser = await setup.signedIn('ea@example.com');
    develBrowser = await setup.signedIn('devel@example.com');
  });
  afterAll(async () => {
    await setup?.stopAll();
  });
  const echoed = (r: { json<T>(): T }) => r.json<{ path: string; method: string; headers: Record<string, string> }>();

  it('gets the path below its mount and the identity; every spoofed header and the portal’s cookies are dropped', async () => {
    await eaBrowser.visit('ea', 'echo', '/');
    const host = new URL(setup.appOrigin('ea', 'echo')).host;
    eaBrowser.jar(host).set('app_cookie', 'kept');
    const r = await eaBrowser.call('ea', 'echo', '/some/path?q=1', { Accept: 'application/json', ...SPOOFED });
    eaBrowser.jar(host).delete('app_cookie');
    expect(r.status).toBe(200);
    const { path, headers } = echoed(r);
    expect(path).toBe('/some/path?q=1');
    expect(headers['x-forwarded-prefix']).toBe(mode === 'shared origin' ? '/apps/ea/echo' : undefined);
    expect(headers['x-forwarded-host']).toBe(host);
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-atrium-email']).toBe('ea@example.com');
    expect(headers['x-atrium-level']).toBe('ea');
    expect(headers['x-atrium-groups']).toBe('ea,stable');
    expect(headers['x-atrium-user']).toMatch(/./);
    expect(headers['x-atrium-user']).not.toBe('admin-sub');
    expect(headers['x-atrium-anything']).toBeUndefined();
    expect(headers.x_atrium_groups).toBeUndefined();
    expect(headers['x-real-ip']).toBeUndefined();
    expect(headers['x-forwarded-port']).toBeUndefined();
    expect(JSON.parse(Buffer.from(headers['x-atrium-profile'] ?? '', 'base64url').toString())).toEqual({});
    expect(headers.cookie).toBe('app_cookie=kept');
    expect(JSON.stringify(headers)).not.toContain('atrium.');
  });

  it('signs an assertion for this app alone, which the upstream can verify with the published keys', async () => {
    const r = await eaBrowser.call('ea', 'echo', '/');
    const assertion = echoed(r).headers['x-atrium-assertion'] ?? '';
    const jwks = (await (await fetch(`${setup.origin}/.well-known/atrium/jwks.json`)).json()) as JSONWebKeySet;
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const keys = createLocalJWKSet(jwks);
    const audience = setup.appUrl('ea', 'echo', '');
    const { payload, protectedHeader } = await jwtVerify(assertion, keys, { issuer: setup.origin, audience, algorithms: ['ES256'] });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ email: 'ea@example.com', level: 'ea', groups: ['ea', 'stable'] });
    expect(payload.exp! - payload.iat!).toBe(60);
    // It is bound to the app: another app's audience check fails, and so does any tampering.
    await expect(jwtVerify(assertion, keys, { issuer: setup.origin, audience: setup.appUrl('devel', 'secret', '') })).rejects.toThrow();
    const [h, , sig] = assertion.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(assertion), level: 'admin' })).toString('base64url')}.${sig}`;
    await expect(jwtVerify(forged, keys, { issuer: setup.origin, audience })).rejects.toThrow();
  });

  it('after a demotion sends the new level at once: no assertion or header keeps the old one', async () => {
    const browser = await setup.signedIn('devel@example.com');
    const before = echoed(await browser.call('ea', 'echo', '/'));
    expect(before.headers['x-atrium-level']).toBe('devel');
    expect(decodeJwt(before.headers['x-atrium-assertion'] ?? '').level).toBe('devel');
    await setup.portal.portal.admin.addMember('test', 'ea', 'devel@example.com');
    await setup.portal.portal.admin.removeMember('test', 'devel', 'devel@example.com');
    try {
      const after = echoed(await browser.call('ea', 'echo', '/'));
      expect(after.headers['x-atrium-level']).toBe('ea');
      expect(decodeJwt(after.headers['x-atrium-assertion'] ?? '').level).toBe('ea');
      expect(decodeJwt(after.headers['x-atrium-assertion'] ?? '').groups).not.toContain('devel');
    } finally {
      await setup.portal.portal.admin.addMember('test', 'devel', 'devel@example.com');
      await setup.portal.portal.admin.removeMember('test', 'ea', 'devel@example.com');
    }
  });

  it('is gated like any other app', async () => {
    expect((await eaBrowser.visit('devel', 'secret', '/')).status).toBe(403);
    expect((await develBrowser.call('devel', 'secret', '/')).status).toBe(200);
    expect((await setup.browser().get(setup.appUrl('ea', 'echo', '/'), { Accept: 'application/json' })).status).toBe(401);
  });

  it('answers 502 when the upstream is down, and keeps serving everything else', async () => {
    const page = await eaBrowser.visit('stable', 'down', '/');
    expect(page.status).toBe(502);
    expect(page.text).toContain('not answering');
    const api = await eaBrowser.call('stable', 'down', '/');
    expect(api.json()).toMatchObject({ error: 'upstream_unavailable' });
    expect((await eaBrowser.call('ea', 'echo', '/')).status).toBe(200);
  });

  it('passes request bodies and methods through', async () => {
    await eaBrowser.visit('ea', 'echo', '/');
    const r = await eaBrowser.request('POST', setup.appUrl('ea', 'echo', '/submit'), { form: { a: '1' }, headers: { Accept: 'application/json' } });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ method: 'POST', path: '/submit' });
  });

  describe('websockets', () => {
    const open = (target: { url: string; headers: Record<string, string> }) =>
      new Promise<{ opened: boolean; status?: number; first?: string; ws: WebSocket }>((resolve) => {
        const ws = new WebSocket(target.url, { headers: target.headers });
        ws.once('message', (data) => resolve({ opened: true, first: data.toString(), ws }));
        ws.once('unexpected-response', (_req, res) => {
          resolve({ opened: false, status: res.statusCode, ws });
          ws.terminate();
        });
        ws.once('error', () => resolve({ opened: false, ws }));
      });
    const closed = (ws: WebSocket) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`still open after ${CLOSED_WITHIN_MS} ms`)), CLOSED_WITHIN_MS);
        ws.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });

    it('proxies an allowed upgrade with the identity, after the gate', async () => {
      await eaBrowser.visit('ea', 'echo', '/');
      const result = await open(eaBrowser.upgradeTo('ea', 'echo', '/socket'));
      expect(result.opened).toBe(true);
      expect(JSON.parse(result.first!)).toEqual({ hello: 'ea@example.com', path: '/socket', level: 'ea' });
      const reply = new Promise<string>((resolve) => result.ws.once('message', (d) => resolve(d.toString())));
      result.ws.send('ping');
      expect(await reply).toBe('echo:ping');
      result.ws.close();
    });

    it('refuses an upgrade from another origin, and one above the user’s level', async () => {
      const target = eaBrowser.upgradeTo('ea', 'echo', '/socket');
      expect(await open({ ...target, headers: { ...target.headers, Origin: 'https://evil.example' } })).toMatchObject({ opened: false, status: 403 });
      await eaBrowser.visit('devel', 'secret', '/');
      const above = await open(eaBrowser.upgradeTo('devel', 'secret', '/socket'));
      expect(above.opened).toBe(false);
      expect([401, 403]).toContain(above.status);
    });

    it('closes a proxied websocket on logout', async () => {
      const browser = await setup.signedIn('ea@example.com');
      await browser.visit('ea', 'echo', '/');
      const result = await open(browser.upgradeTo('ea', 'echo', '/socket'));
      expect(result.opened).toBe(true);
      const gone = closed(result.ws);
      await browser.logout();
      await gone;
    });

    it('closes a proxied websocket on a demotion below the app’s tier', async () => {
      const browser = await setup.signedIn('devel@example.com');
      await browser.visit('devel', 'secret', '/');
      const result = await open(browser.upgradeTo('devel', 'secret', '/socket'));
      expect(result.opened).toBe(true);
      const gone = closed(result.ws);
      await setup.portal.portal.admin.removeMember('test', 'devel', 'devel@example.com');
      try {
        await gone;
      } finally {
        await setup.portal.portal.admin.addMember('test', 'devel', 'devel@example.com');
      }
    });
  });
});

describe('bearer tokens to an upstream', () => {
  it('never forwards the caller’s bearer token', async () => {
    const { tokens } = JSON.parse(
      (await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', ea.cookie('atrium.sid')!.value).executeTakeFirstOrThrow()).data,
    );
    const r = await fetch(`${portal.origin}/apps/ea/echo/`, { headers: { Authorization: `Bearer ${tokens.access}`, Accept: 'application/json' } });
    expect(r.status).toBe(200);
    const { headers } = (await r.json()) as { headers: Record<string, string> };
    expect(headers.authorization).toBeUndefined();
    expect(headers['x-atrium-level']).toBe('ea');
    expect(headers['x-atrium-assertion']).toMatch(/^eyJ/);
  });
});

describe('the supervised process', () => {
  it('starts with PORT, restarts after being killed, and is stopped with the portal', async () => {
    const first = await waitFor<{ pid: number; port: string }>(async () => {
      const r = await ea.get('/apps/stable/supervised/', { Accept: 'application/json' });
      return r.status === 200 ? r.json() : undefined;
    });
    // The served pid is the node process; the supervisor holds its shell's process group.
    expect(portal.portal.supervisor.pid('/apps/stable/supervised')).toEqual(expect.any(Number));
    expect(Number(first.port)).toBeGreaterThan(0);
    process.kill(first.pid, 'SIGKILL');
    const second = await waitFor<{ pid: number; port: string }>(async () => {
      const r = await ea.get('/apps/stable/supervised/', { Accept: 'application/json' });
      return r.status === 200 && r.json().pid !== first.pid ? r.json() : undefined;
    });
    expect(second.port).toBe(first.port);
    expect(portal.portal.supervisor.restarts('/apps/stable/supervised')).toBeGreaterThanOrEqual(1);
  });
});

describe('websocket upgrades with hostile paths (shared origin)', () => {
  it('refuses hostile upgrades with 4xx and closes the socket', async () => {
    const eaCookie = cookieHeader(ea);
    const sid = ea.cookie('atrium.sid')!.value;
    const cases: [string, string | undefined, number][] = [
      ['/apps/ea/echo/socket', undefined, 401],
      ['/apps/ea/echo/socket', `atrium.sid=${sid}; atrium.sid.sig=forged`, 401],
      ['/apps/ea/echo/socket', `atrium.sid=${sid}`, 401],
      ['/apps/devel/secret/socket', eaCookie, 403],
      ['/apps/ea/echo/../../devel/secret/socket', eaCookie, 400],
      ['/apps/ea/echo/%2e%2e/%2e%2e/devel/secret/', eaCookie, 400],
      ['/apps/ea%2fecho/socket', eaCookie, 400],
      ['/apps//devel/secret/', eaCookie, 400],
      ['/apps/DEVEL/secret/', eaCookie, 404],
      ['/apps/stable/inproc/socket', eaCookie, 404],
      ['/apps/ea/echo', eaCookie, 404],
      ['/not-an-app', eaCookie, 404],
    ];
    for (const [path, cookie, status] of cases) {
      const result = await rawUpgrade(path, cookie);
      expect(result, `${path} with ${cookie ? 'a cookie' : 'no cookie'}`).toBe(status);
    }
    expect((await fetch(`${portal.origin}/healthz`)).status).toBe(200);
  });
});

describe('the Python example app', () => {
  it('is started from its command and receives the identity', async () => {
    const example = await startTestPortal({ env: { APPS_DIR: EXAMPLE_APPS } });
    try {
      const agent = new Agent(example.origin);
      await agent.login('ea@example.com', DEMO_PASSWORD);
      const who = await waitFor(async () => {
        const r = await agent.get('/apps/ea/hello-python/api/whoami', { Accept: 'application/json' });
        return r.status === 200 ? r.json() : undefined;
      });
      expect(who).toMatchObject({ email: 'ea@example.com', level: 'ea', groups: ['ea', 'stable'], prefix: '/apps/ea/hello-python', has_assertion: true, path: '/api/whoami' });
      const page = await agent.get('/apps/ea/hello-python/');
      expect(page.text).toContain('Hello, Early Adopter');
    } finally {
      await example.stopAll();
    }
  });
});

/** Sends an upgrade with a raw path (no client-side normalisation) and returns the status line's code. */
function rawUpgrade(path: string, cookie?: string): Promise<number> {
  const url = new URL(portal.origin);
  return new Promise((resolve, reject) => {
    const req = request({
      host: url.hostname,
      port: url.port,
      path,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', ...(cookie ? { Cookie: cookie } : {}) },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 101);
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitFor<T = any>(probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 100));
  }
}
