import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import session from 'koa-session';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { withoutPortalSession } from '../../portal/apps/portal-session-hidden.ts';
import { hideSessionFromApps } from '../../portal/sessions/hidden-from-apps.ts';

/**
 * The switch between the portal's view of ctx.session and an app's (portal/sessions/hidden-from-apps.ts,
 * portal/apps/portal-session-hidden.ts), with real koa-session: the portal sees its session before
 * the app, after it (also when the app fails, either way it can) and while the app has handed on;
 * the app sees none, before or after handing on, and cannot replace it.
 */
let seen: Record<string, unknown> = {};
let server: Server;
let origin = '';

/** An app's middleware, by path: what it sees, and the ways it can fail. */
const app: Koa.Middleware = async (ctx, next) => {
  seen.appBefore = ctx.session;
  if (ctx.path === '/throw-now') throw new Error('app failed at once');
  if (ctx.path === '/reject') return Promise.reject(new Error('app failed later'));
  if (ctx.path === '/replace') {
    try {
      ctx.session = null;
      seen.replaced = 'allowed';
    } catch (err) {
      seen.replaced = (err as Error).message;
    }
  }
  if (ctx.path === '/onward') {
    await next();
    seen.appAfterNext = ctx.session;
  }
  if (ctx.path === '/onward-fails') {
    try {
      await next();
    } catch {
      seen.appAfterFailedNext = ctx.session;
    }
  }
  ctx.body = 'from the app';
};
/** Not async: a synchronous throw reaches the wrapper as a throw, not as a rejected promise. */
const syncApp: Koa.Middleware = (ctx) => {
  seen.appBefore = ctx.session;
  throw new Error('app failed synchronously');
};

beforeAll(async () => {
  const portal = new Koa();
  portal.keys = ['test-key'];
  portal.use(session({ signed: true }, portal));
  hideSessionFromApps(portal.context);
  portal.use(async (ctx, next) => {
    ctx.session!.who = 'portal';
    try {
      await next();
    } catch {
      ctx.status = 500;
      ctx.body = 'failed';
    }
    seen.portalAfter = ctx.session?.who;
  });
  const wrapped = withoutPortalSession(app);
  const wrappedSync = withoutPortalSession(syncApp);
  portal.use((ctx, next) => (ctx.path === '/sync' ? wrappedSync(ctx, next) : wrapped(ctx, next)));
  portal.use((ctx) => {
    seen.downstream = ctx.session?.who;
    if (ctx.path === '/onward-fails') throw new Error('what followed the app failed');
  });
  server = createServer(portal.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));
beforeEach(() => {
  seen = {};
});

describe('the portal session, hidden from an in-process app', () => {
  it('shows the app none, and the portal its own after the app', async () => {
    const res = await fetch(`${origin}/plain`);
    expect(await res.text()).toBe('from the app');
    expect(seen).toEqual({ appBefore: undefined, portalAfter: 'portal' });
  });

  it('refuses a replacement, and the portal keeps its session', async () => {
    await fetch(`${origin}/replace`);
    expect(seen.replaced).toMatch(/portal's own session/);
    expect(seen.portalAfter).toBe('portal');
  });

  it('shows what follows the app (next) the portal session, and the app none again once that returns', async () => {
    await fetch(`${origin}/onward`);
    expect(seen).toEqual({ appBefore: undefined, downstream: 'portal', appAfterNext: undefined, portalAfter: 'portal' });
  });

  it('shows the app none again when what follows it fails', async () => {
    const res = await fetch(`${origin}/onward-fails`);
    expect(res.status).toBe(200);
    expect(seen).toEqual({ appBefore: undefined, downstream: 'portal', appAfterFailedNext: undefined, portalAfter: 'portal' });
  });

  it.each([['/throw-now'], ['/reject'], ['/sync']])('gives the portal its session back when the app fails (%s)', async (path) => {
    const res = await fetch(`${origin}${path}`);
    expect(res.status).toBe(500);
    expect(seen).toEqual({ appBefore: undefined, portalAfter: 'portal' });
  });

  it('refuses to install where koa-session is not', () => {
    expect(() => hideSessionFromApps(new Koa().context)).toThrow(/koa-session is not installed/);
  });
});
