import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mountUnder } from '../portal/apps/mount-app.ts';

/** What the app and the portal around it saw, per request. */
let seen: Record<string, unknown>[] = [];
let server: Server;
let origin = '';

beforeAll(async () => {
  const app = new Koa();
  app.use(async (ctx, next) => {
    seen.push({ where: 'app', path: ctx.path, url: ctx.url, querystring: ctx.querystring, originalUrl: ctx.originalUrl, mountPath: ctx.mountPath });
    if (ctx.path === '/boom') throw new Error('app failed');
    if (ctx.path === '/pass') {
      await next();
      seen.push({ where: 'app after next', path: ctx.path });
      return;
    }
    ctx.body = 'from the app';
  });
  const portal = new Koa();
  portal.use(async (ctx, next) => {
    try {
      await next();
    } catch {
      seen.push({ where: 'error handler', path: ctx.path, url: ctx.url });
      ctx.status = 500;
      ctx.body = 'failed';
    }
  });
  portal.use(mountUnder('/apps/stable/a', app));
  portal.use((ctx) => {
    seen.push({ where: 'after the app', path: ctx.path, url: ctx.url });
    ctx.status = 404;
    ctx.body = 'not here';
  });
  server = createServer(portal.callback());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function get(path: string): Promise<{ status: number; text: string }> {
  seen = [];
  const response = await fetch(`${origin}${path}`);
  return { status: response.status, text: await response.text() };
}

describe('an in-process app under its prefix', () => {
  it('sees its path without the prefix, the query as sent, the original URL and its mount path', async () => {
    expect(await get('/apps/stable/a/x/y%20z?q=1&r=%2F')).toEqual({ status: 200, text: 'from the app' });
    expect(seen).toEqual([{ where: 'app', path: '/x/y%20z', url: '/x/y%20z?q=1&r=%2F', querystring: 'q=1&r=%2F', originalUrl: '/apps/stable/a/x/y%20z?q=1&r=%2F', mountPath: '/apps/stable/a' }]);
  });

  it('sees `/` at the prefix itself, with or without the slash', async () => {
    await get('/apps/stable/a/');
    expect(seen[0]).toMatchObject({ path: '/', url: '/' });
    await get('/apps/stable/a?x=1');
    expect(seen[0]).toMatchObject({ path: '/', url: '/?x=1' });
  });

  it('does not take a path that only begins with the same letters', async () => {
    expect((await get('/apps/stable/ab/')).status).toBe(404);
    expect(seen).toEqual([{ where: 'after the app', path: '/apps/stable/ab/', url: '/apps/stable/ab/' }]);
  });

  it('hands the original path to what comes after when the app calls next(), and gets its own back', async () => {
    expect((await get('/apps/stable/a/pass?k=v')).status).toBe(404);
    expect(seen.slice(1)).toEqual([
      { where: 'after the app', path: '/apps/stable/a/pass', url: '/apps/stable/a/pass?k=v' },
      { where: 'app after next', path: '/pass' },
    ]);
  });

  it('restores the original path when the app throws', async () => {
    expect(await get('/apps/stable/a/boom')).toEqual({ status: 500, text: 'failed' });
    expect(seen.at(-1)).toEqual({ where: 'error handler', path: '/apps/stable/a/boom', url: '/apps/stable/a/boom' });
  });
});
