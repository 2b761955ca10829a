import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { apiCall, jsonOf, laneHelpers } from './helpers/lane.ts';
import { rawRequest } from './helpers/raw-http.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

/**
 * The fast lane (portal/apps/fast-lane.ts) serves signed-in app requests before Koa's pipeline.
 * Each test here sends a request the lane would serve if one of its checks were missing, and
 * expects what the ordinary pipeline answers instead: which way a request goes may change its
 * cost, never its outcome.
 */
let portal: TestPortal;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let port: number;
let upstreamClosed = false;

beforeAll(async () => {
  upstream = await startEchoUpstream();
  const apps = makeAppsDir({
    'stable/echo/app.json': JSON.stringify({ title: 'Echo', upstream: upstream.url }),
    'stable/hello/index.js': koaAppSource('hello'),
    // A name that is the start of another's: `/apps/stable/hello` must never reach it.
    'stable/hell/index.js': koaAppSource('hell'),
    'ea/notes/index.js': koaAppSource('notes'),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps, SESSION_IDLE_SECONDS: '3600' } });
  port = Number(new URL(portal.origin).port);
});
afterAll(async () => {
  await portal?.stopAll();
  if (!upstreamClosed) await upstream?.close();
});

const { signedIn, stored, editSession, appRequestsCounted } = laneHelpers(() => portal);
const api = apiCall;
const json = jsonOf;

describe('the fast lane answers as the pipeline does', () => {
  it('serves a signed-in request to an upstream app and to an in-process app', async () => {
    const { cookie } = await signedIn();
    const counted = await appRequestsCounted('2xx');
    const proxied = await rawRequest(port, '/apps/stable/echo/some/path.txt?q=1', api(cookie));
    expect(proxied.status).toBe(200);
    expect(json(proxied)).toMatchObject({ path: '/some/path.txt?q=1' });
    expect((json(proxied).headers as Record<string, string>)['x-atrium-email']).toBe('stable@example.com');
    expect(proxied.headers['x-frame-options']).toBe('SAMEORIGIN');
    const inProcess = await rawRequest(port, '/apps/stable/hello/', api(cookie));
    expect(inProcess.status).toBe(200);
    expect(inProcess.headers['x-content-type-options']).toBe('nosniff');
    // Both counted in the metrics, once each.
    expect(await appRequestsCounted('2xx')).toBe(counted + 2);
  });

  it('refuses a Host it does not serve (421), signed in or not', async () => {
    const { cookie } = await signedIn();
    const res = await rawRequest(port, '/apps/stable/echo/', api(cookie, { host: 'evil.example' }));
    expect(res.status).toBe(421);
    expect(json(res)).toMatchObject({ error: 'misdirected_request' });
  });

  it.each([
    ['/apps/stable/echo/a/%2e%2e/b'],
    ['/apps/stable/echo/a/../b'],
    ['/apps/stable/echo/./b'],
    ['/apps/stable/echo/a//b'],
    ['/apps/stable/echo/a%2fb'],
    ['/apps/stable/echo/.%2e/'],
  ])('refuses the hostile path %s with 400, signed in', async (path) => {
    const { cookie } = await signedIn();
    const res = await rawRequest(port, path, api(cookie));
    expect(res.status).toBe(400);
    expect(json(res)).toMatchObject({ error: 'bad_path' });
  });

  it('serves paths with dots inside names, and redirects a missing slash instead of picking the app named by its start', async () => {
    const { cookie } = await signedIn();
    const dotted = await rawRequest(port, '/apps/stable/echo/v1.2/file.tar.gz', api(cookie));
    expect(dotted.status).toBe(200);
    expect(json(dotted)).toMatchObject({ path: '/v1.2/file.tar.gz' });
    const bare = await rawRequest(port, '/apps/stable/hello', api(cookie));
    expect(bare.status).toBe(302);
    expect(bare.headers.location).toBe('/apps/stable/hello/');
  });

  it('signs out a browser whose Cookie header carries the session twice', async () => {
    const { cookie, id } = await signedIn();
    const res = await rawRequest(port, '/apps/stable/echo/', api(`atrium.sid=${id}; ${cookie}`));
    expect(res.status).toBe(401);
    expect(String(res.headers['set-cookie'])).toContain('atrium.sid=;');
  });

  it('refuses a session id with a signature that is not its own, also after the id was seen with its own', async () => {
    const { cookie, id } = await signedIn();
    const other = await signedIn();
    expect((await rawRequest(port, '/apps/stable/echo/', api(cookie))).status).toBe(200);
    const res = await rawRequest(port, '/apps/stable/echo/', api(`atrium.sid=${id}; atrium.sid.sig=${other.signature}`));
    expect(res.status).toBe(401);
    expect(json(res)).toMatchObject({ error: 'unauthenticated' });
  });

  it('refuses a session past its lifetime, and one koa-session holds expired', async () => {
    const past = await signedIn();
    await editSession(past.id, (data) => {
      data.authAt = Date.now() - 400 * 24 * 3600 * 1000;
    });
    expect((await rawRequest(port, '/apps/stable/echo/', api(past.cookie))).status).toBe(401);
    const expired = await signedIn();
    await editSession(expired.id, (data) => {
      data._expire = Date.now() - 1000;
    });
    expect((await rawRequest(port, '/apps/stable/echo/', api(expired.cookie))).status).toBe(401);
  });

  it('lets the pipeline record the use of a session not touched for a while (the idle timeout counts from it)', async () => {
    const { cookie, id } = await signedIn();
    const longAgo = Date.now() - 10 * 60 * 1000;
    await editSession(id, (data) => {
      data.seenAt = longAgo;
    });
    expect((await rawRequest(port, '/apps/stable/echo/', api(cookie))).status).toBe(200);
    const seenAt = (await stored(id))!.seenAt as number;
    expect(seenAt).toBeGreaterThan(longAgo);
  });

  it('lets the pipeline refresh the tokens of a session whose access token is due', async () => {
    const { cookie, id } = await signedIn();
    const before = (await stored(id))!.tokens;
    const due = Date.now() - 1000;
    await editSession(id, (data) => {
      data.tokens.expiresAt = due;
    });
    expect((await rawRequest(port, '/apps/stable/echo/', api(cookie))).status).toBe(200);
    const after = (await stored(id))!.tokens;
    expect(after.access).not.toBe(before.access);
    expect(after.expiresAt).not.toBe(due);
  });

  it('refuses the gate’s refusals: a tier above the level (403), an unknown app (404)', async () => {
    const { cookie } = await signedIn();
    const above = await rawRequest(port, '/apps/ea/notes/', api(cookie));
    expect(above.status).toBe(403);
    expect(json(above)).toMatchObject({ error: 'forbidden', needed: 'ea' });
    expect((await rawRequest(port, '/apps/stable/nothing/', api(cookie))).status).toBe(404);
  });

  it('refuses a session whose user was disabled in the directory before the session was ended here', async () => {
    const { cookie } = await signedIn('ea@example.com');
    expect((await rawRequest(port, '/apps/stable/echo/', api(cookie))).status).toBe(200);
    const [user] = await portal.portal.users.byEmail('ea@example.com');
    await portal.portal.users.setDisabled(user!.id, true);
    try {
      await portal.portal.watcher.refresh();
      expect((await rawRequest(port, '/apps/stable/echo/', api(cookie))).status).toBe(401);
    } finally {
      await portal.portal.users.setDisabled(user!.id, false);
      await portal.portal.watcher.refresh();
    }
  });

  it('answers an invalid bearer token with the 401 the pipeline gives, and an upstream that is down with its 502', async () => {
    const bearer = await rawRequest(port, '/apps/stable/echo/', { headers: { authorization: 'Bearer not.a.token', accept: 'application/json' } });
    expect(bearer.status).toBe(401);
    expect(String(bearer.headers['www-authenticate'] ?? '')).toMatch(/^Bearer/);
    const { cookie } = await signedIn();
    // Last in the file: the upstream stays down.
    await upstream.close();
    upstreamClosed = true;
    const failures = await appRequestsCounted('5xx');
    const down = await rawRequest(port, '/apps/stable/echo/', api(cookie));
    expect(down.status).toBe(502);
    expect(await appRequestsCounted('5xx')).toBe(failures + 1);
    expect(json(down)).toMatchObject({ error: 'upstream_unavailable' });
    expect(down.headers['x-frame-options']).toBe('SAMEORIGIN');
  });
});
