import { request } from 'node:http';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { EXAMPLE_APPS, startTestPortal, type TestPortal } from './helpers/portal.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

let portal: TestPortal;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let ea: Agent;
let devel: Agent;

/** A supervised upstream: a Node one-liner that serves its pid on PORT. */
const SUPERVISED = `require('http').createServer((q, s) => s.end(JSON.stringify({ pid: process.pid, port: process.env.PORT }))).listen(process.env.PORT, '127.0.0.1')`;

beforeAll(async () => {
  upstream = await startEchoUpstream();
  const apps = makeAppsDir({
    'ea/echo/app.json': JSON.stringify({ title: 'Echo', upstream: upstream.url }),
    'devel/secret/app.json': JSON.stringify({ title: 'Secret', upstream: upstream.url }),
    'stable/down/app.json': JSON.stringify({ title: 'Down', upstream: 'http://127.0.0.1:9' }),
    'stable/supervised/app.json': JSON.stringify({ upstream: 'http://127.0.0.1:0', command: `node -e "${SUPERVISED.replace(/"/g, '\\"')}"` }),
    'stable/inproc/index.js': koaAppSource('inproc'),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  ea = new Agent(portal.origin);
  await ea.login('ea@example.com', DEMO_PASSWORD);
  devel = new Agent(portal.origin);
  await devel.login('devel@example.com', DEMO_PASSWORD);
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

describe('HTTP to an upstream app', () => {
  it('strips the prefix, forwards identity, and drops every spoofed header and the session cookie', async () => {
    ea.cookies.set('app_cookie', { name: 'app_cookie', value: 'kept', path: '/', httpOnly: false, secure: false, sameSite: undefined, raw: '' });
    const r = await ea.get('/apps/ea/echo/some/path?q=1', { Accept: 'application/json', ...SPOOFED });
    ea.cookies.delete('app_cookie');
    expect(r.status).toBe(200);
    const { path, headers } = r.json();
    expect(path).toBe('/some/path?q=1');
    expect(headers['x-forwarded-prefix']).toBe('/apps/ea/echo');
    expect(headers['x-forwarded-host']).toBe(new URL(portal.origin).host);
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-atrium-email']).toBe('ea%40example.com');
    expect(headers['x-atrium-level']).toBe('ea');
    expect(headers['x-atrium-groups']).toBe('ea,stable');
    expect(headers['x-atrium-user']).not.toBe('admin-sub');
    expect(headers['x-atrium-anything']).toBeUndefined();
    expect(headers.x_atrium_groups).toBeUndefined();
    expect(headers['x-real-ip']).toBeUndefined();
    expect(headers['x-forwarded-port']).toBeUndefined();
    expect(JSON.parse(Buffer.from(headers['x-atrium-profile'], 'base64url').toString())).toEqual({});
    expect(headers.cookie).toBe('app_cookie=kept');
    expect(JSON.stringify(headers)).not.toContain('atrium.sid');
  });

  it('signs an assertion the upstream can verify with the published keys', async () => {
    const r = await ea.get('/apps/ea/echo/', { Accept: 'application/json' });
    const assertion = r.json().headers['x-atrium-assertion'] as string;
    const jwks = (await (await fetch(`${portal.origin}/.well-known/atrium/jwks.json`)).json()) as JSONWebKeySet;
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const keys = createLocalJWKSet(jwks);
    const { payload, protectedHeader } = await jwtVerify(assertion, keys, { issuer: portal.origin, audience: `${portal.origin}/apps/ea/echo`, algorithms: ['ES256'] });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ email: 'ea@example.com', level: 'ea', groups: ['ea', 'stable'] });
    expect(payload.exp! - payload.iat!).toBe(60);
    // It is bound to the app: another app's audience check fails, and so does any tampering.
    await expect(jwtVerify(assertion, keys, { issuer: portal.origin, audience: `${portal.origin}/apps/devel/secret` })).rejects.toThrow();
    const [h, p, sig] = assertion.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...decodeJwt(assertion), level: 'admin' })).toString('base64url')}.${sig}`;
    void p;
    await expect(jwtVerify(forged, keys, { issuer: portal.origin, audience: `${portal.origin}/apps/ea/echo` })).rejects.toThrow();
  });

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

  it('gates upstream apps like any other', async () => {
    expect((await ea.get('/apps/devel/secret/')).status).toBe(403);
    expect((await devel.get('/apps/devel/secret/', { Accept: 'application/json' })).status).toBe(200);
    expect((await new Agent(portal.origin).get('/apps/ea/echo/', { Accept: 'application/json' })).status).toBe(401);
  });

  it('answers 502 when the upstream is down, and keeps serving everything else', async () => {
    const page = await ea.get('/apps/stable/down/');
    expect(page.status).toBe(502);
    expect(page.text).toContain('not answering');
    const api = await ea.get('/apps/stable/down/', { Accept: 'application/json' });
    expect(api.json()).toMatchObject({ error: 'upstream_unavailable' });
    expect((await ea.get('/apps/ea/echo/', { Accept: 'application/json' })).status).toBe(200);
  });

  it('passes request bodies and methods through', async () => {
    const r = await ea.request('POST', '/apps/ea/echo/submit', { json: { a: 1 }, headers: { Accept: 'application/json' } });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ method: 'POST', path: '/submit' });
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

describe('websocket upgrades', () => {
  const wsUrl = (path: string) => portal.origin.replace('http', 'ws') + path;
  const open = (path: string, cookie?: string, headers: Record<string, string> = {}) =>
    new Promise<{ opened: boolean; status?: number; first?: string; ws: WebSocket }>((resolve) => {
      const ws = new WebSocket(wsUrl(path), { headers: { ...headers, ...(cookie ? { Cookie: cookie } : {}) } });
      ws.once('message', (data) => resolve({ opened: true, first: data.toString(), ws }));
      ws.once('unexpected-response', (_req, res) => {
        resolve({ opened: false, status: res.statusCode, ws });
        ws.terminate();
      });
      ws.once('error', () => resolve({ opened: false, ws }));
    });

  it('proxies an allowed upgrade with the identity, after the gate', async () => {
    const result = await open('/apps/ea/echo/socket', cookieHeader(ea));
    expect(result.opened).toBe(true);
    expect(JSON.parse(result.first!)).toEqual({ hello: 'ea%40example.com', path: '/socket', level: 'ea' });
    const reply = new Promise<string>((resolve) => result.ws.once('message', (d) => resolve(d.toString())));
    result.ws.send('ping');
    expect(await reply).toBe('echo:ping');
    result.ws.close();
  });

  it('refuses an upgrade from another origin', async () => {
    const result = await open('/apps/ea/echo/socket', cookieHeader(ea), { Origin: 'https://evil.example' });
    expect(result).toMatchObject({ opened: false, status: 403 });
  });

  it('closes a proxied websocket within about a second of logout', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const result = await open('/apps/ea/echo/socket', cookieHeader(agent));
    expect(result.opened).toBe(true);
    const closed = new Promise<number>((resolve) => {
      const started = Date.now();
      result.ws.once('close', () => resolve(Date.now() - started));
    });
    const csrf = await agent.csrfToken();
    expect((await agent.request('POST', '/logout', { form: { _csrf: csrf } })).status).toBe(303);
    expect(await closed).toBeLessThan(1_500);
  });

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
