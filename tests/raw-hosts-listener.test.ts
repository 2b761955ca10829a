import type { RequestListener } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GracefulStop } from '../portal/graceful-stop.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { rawRequest, rawUpgrade } from './helpers/raw-http.ts';

/**
 * What the raw-host guard (portal/http/raw-hosts.ts) hands to Koa (a socket.io request, an
 * absolute-form target, for a host the portal does not serve) goes through the server's own request
 * listener, the graceful-stop wrapper (portal/graceful-stop.ts), like every other request: never a
 * second `app.callback()` of its own, which would answer as if the portal were not stopping.
 *
 * Seen from outside, that wrapper adds `Connection: close` while draining, which the error renderer
 * then clears from every error page (421s included), so the only sure sign is the wrapper being
 * called: it is watched here.
 */

const ELSEWHERE = 'evil.example';
/** Requests that went through the graceful-stop listener, as "<Host> <url>". */
const throughGraceful: string[] = [];
let portal: TestPortal;
let port: number;

beforeAll(async () => {
  const listener = GracefulStop.prototype.listener;
  vi.spyOn(GracefulStop.prototype, 'listener').mockImplementation(function (this: GracefulStop, handle: RequestListener): RequestListener {
    const wrapped = listener.call(this, handle);
    return (req, res) => {
      throughGraceful.push(`${req.headers.host} ${req.url}`);
      return wrapped(req, res);
    };
  });
  portal = await startTestPortal();
  port = Number(new URL(portal.origin).port);
});
afterAll(async () => {
  vi.restoreAllMocks();
  await portal?.stopAll();
});

describe('what the raw-host guard refuses', () => {
  it('is answered through the graceful-stop listener: socket.io polling under another host', async () => {
    const path = '/socket.io/?EIO=4&transport=polling&probe=misdirected';
    const r = await rawRequest(port, path, { headers: { Host: ELSEWHERE, Accept: 'application/json' } });
    expect(r.status).toBe(421);
    expect(r.json()).toMatchObject({ error: 'misdirected_request' });
    expect(throughGraceful).toContain(`${ELSEWHERE} ${path}`);
  });

  it('is answered through it too for an absolute-form target naming another host, or a malformed Host', async () => {
    const absolute = `http://${ELSEWHERE}/socket.io/?EIO=4&transport=polling&probe=absolute`;
    const own = `127.0.0.1:${port}`;
    expect((await rawRequest(port, absolute, { headers: { Host: own, Accept: 'application/json' } })).status).toBe(421);
    expect(throughGraceful).toContain(`${own} ${absolute}`);
    const path = '/socket.io/?EIO=4&transport=polling&probe=comma';
    expect((await rawRequest(port, path, { headers: { Host: `${own},${ELSEWHERE}`, Accept: 'application/json' } })).status).toBe(400);
    expect(throughGraceful).toContain(`${own},${ELSEWHERE} ${path}`);
  });

  it('leaves what it lets through to the listeners it found (engine.io first), once each', async () => {
    const path = '/socket.io/?EIO=4&transport=polling&probe=own';
    expect((await rawRequest(port, path, { headers: { Host: `127.0.0.1:${port}` } })).status).toBe(200);
    // engine.io answers its own requests: they never reach the Koa listener.
    expect(throughGraceful.filter((line) => line.endsWith(path))).toEqual([]);
    const healthz = '/healthz?probe=own';
    expect((await rawRequest(port, healthz, { headers: { Host: `127.0.0.1:${port}` } })).status).toBe(200);
    expect(throughGraceful.filter((line) => line.endsWith(healthz))).toHaveLength(1);
    // Upgrades are refused on the socket itself, as before.
    expect((await rawUpgrade(port, '/socket.io/?EIO=4&transport=websocket', { Host: ELSEWHERE })).status).toBe(421);
  });
});
