import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AtriumUser } from '../../lib/app-kit.ts';
import type { Logger } from '../../lib/log.ts';
import type { AssertionSigner } from '../../portal/apps/assertions.ts';
import { UpstreamProxy } from '../../portal/apps/proxy.ts';

/**
 * The proxy's cookie rules, through a real UpstreamProxy between two loopback servers: the portal's
 * cookies never reach the upstream, and the portal's own Set-Cookie survives the upstream's.
 */
const user: AtriumUser = { sub: 'user-1', email: 'u@corp.example', name: 'U', picture: null, level: 'ea', groups: ['ea', 'stable'], profile: {} };
const signer = { sign: async () => 'test-assertion', reusable: () => undefined } as unknown as AssertionSigner;
const log = { warn: () => {}, info: () => {}, error: () => {}, debug: () => {} } as unknown as Logger;

let upstream: Server;
let portal: Server;
let proxy: UpstreamProxy;
let portalPort: number;

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  upstream = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const setCookie = url.searchParams.getAll('set');
    if (setCookie.length > 0) res.setHeader('set-cookie', setCookie);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ headers: req.headers }));
  });
  const upstreamPort = await listen(upstream);
  proxy = new UpstreamProxy(signer, new URL('http://portal.test'), log);
  const app = new Koa();
  app.use(async (ctx, next) => {
    ctx.state.user = user;
    // The portal re-signed its session cookie on the way in (as koa-session does under a newer key).
    const portalCookies = ctx.get('x-test-portal-set-cookie');
    if (portalCookies) {
      const lines = portalCookies.split('|');
      ctx.res.setHeader('set-cookie', lines.length === 1 ? lines[0]! : lines);
    }
    await next();
  });
  app.use(proxy.handler({ prefix: '/apps/ea/echo', upstream: new URL(`http://127.0.0.1:${upstreamPort}`), groups: [] }));
  portal = createServer(app.callback());
  portalPort = await listen(portal);
});
afterAll(async () => {
  await proxy?.close();
  portal?.closeAllConnections();
  portal?.close();
  upstream?.closeAllConnections();
  upstream?.close();
});

function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; seen: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: portalPort, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, seen: (JSON.parse(body) as { headers: IncomingHttpHeaders }).headers });
        } catch {
          reject(new Error(`the portal answered ${res.statusCode} with ${JSON.stringify(body.slice(0, 200))}, not the upstream's echo`));
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

describe('UpstreamProxy cookies on the way in', () => {
  it('strips the portal’s cookies and passes the app’s own on', async () => {
    const { seen } = await get('/apps/ea/echo/', { cookie: 'atrium.sid=secret; app=1; __Host-atrium.tx=t;  theme=dark ; ATRIUM.SID.SIG=s' });
    expect(seen.cookie).toBe('app=1; theme=dark');
  });

  it('sends no Cookie header at all when only portal cookies came', async () => {
    const { seen } = await get('/apps/ea/echo/', { cookie: 'atrium.sid=secret; __Secure-atrium.x=1' });
    expect(seen).not.toHaveProperty('cookie');
  });

  it('drops empty pieces, and judges a piece without "=" by its whole text', async () => {
    const { seen } = await get('/apps/ea/echo/', { cookie: 'atrium.sid; ; flag; =x; atrium=1; atrium; __Host-atrium; ATRIUM.x' });
    expect(seen.cookie).toBe('flag; =x');
  });

  it('reads an app cookie whose value contains "atrium" as the app’s', async () => {
    const { seen } = await get('/apps/ea/echo/', { cookie: 'app=atrium.sid; x=y=atrium' });
    expect(seen.cookie).toBe('app=atrium.sid; x=y=atrium');
  });

  it('sends no Cookie header when none came', async () => {
    const { seen } = await get('/apps/ea/echo/');
    expect(seen).not.toHaveProperty('cookie');
    expect(seen['x-atrium-user']).toBe('user-1');
  });
});

describe('UpstreamProxy cookies on the way out', () => {
  it('keeps the portal’s Set-Cookie ahead of the app’s', async () => {
    const { headers } = await get('/apps/ea/echo/?set=app%3D1&set=app2%3D2', { 'x-test-portal-set-cookie': 'atrium.sid=new; Path=/|atrium.sid.sig=s; Path=/' });
    expect(headers['set-cookie']).toEqual(['atrium.sid=new; Path=/', 'atrium.sid.sig=s; Path=/', 'app=1', 'app2=2']);
  });

  it('keeps a single portal Set-Cookie line ahead of the app’s', async () => {
    const { headers } = await get('/apps/ea/echo/?set=app%3D1', { 'x-test-portal-set-cookie': 'atrium.sid=new; Path=/' });
    expect(headers['set-cookie']).toEqual(['atrium.sid=new; Path=/', 'app=1']);
  });

  it('keeps the portal’s Set-Cookie when the app sets none', async () => {
    const { headers } = await get('/apps/ea/echo/', { 'x-test-portal-set-cookie': 'atrium.sid=new; Path=/' });
    expect(headers['set-cookie']).toEqual(['atrium.sid=new; Path=/']);
  });

  it('passes the app’s own cookies when the portal set none, and drops its portal ones', async () => {
    const { headers } = await get('/apps/ea/echo/?set=app%3D1&set=atrium.sid%3Devil');
    expect(headers['set-cookie']).toEqual(['app=1']);
    const none = await get('/apps/ea/echo/');
    expect(none.headers).not.toHaveProperty('set-cookie');
  });

  it('never lets the app replace the portal’s own cookie', async () => {
    const { headers } = await get('/apps/ea/echo/?set=atrium.sid%3Devil', { 'x-test-portal-set-cookie': 'atrium.sid=portal' });
    expect(headers['set-cookie']).toEqual(['atrium.sid=portal']);
  });
});
