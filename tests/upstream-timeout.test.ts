import { createServer, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { makeAppsDir } from './helpers/apps.ts';
import { withinDeadline } from './helpers/load.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

/**
 * An upstream app that hangs (accepts the request, never answers) holds a visitor for
 * UPSTREAM_TIMEOUT (2 s here), not for minutes: the 502 page, and the connection to the app closed.
 * The deadlines are generous: a failure to answer, not a slow answer, is what they catch.
 */
const DEADLINE_MS = 20_000;

let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let portal: TestPortal;
let agent: Agent;
/** A server that accepts websocket handshakes and never answers them. */
const wedged = createServer();
const wedgedSockets: Socket[] = [];

beforeAll(async () => {
  upstream = await startEchoUpstream();
  wedged.on('upgrade', (_req: IncomingMessage, socket: Socket) => wedgedSockets.push(socket));
  await new Promise<void>((resolve) => wedged.listen(0, '127.0.0.1', resolve));
  const wedgedUrl = `http://127.0.0.1:${(wedged.address() as { port: number }).port}`;
  const apps = makeAppsDir({
    'ea/echo/app.json': JSON.stringify({ upstream: upstream.url }),
    'ea/wedged/app.json': JSON.stringify({ upstream: wedgedUrl }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps, UPSTREAM_TIMEOUT: '2' } });
  agent = new Agent(portal.origin);
  await agent.login('ea@example.com', DEMO_PASSWORD);
});
afterAll(async () => {
  await portal?.stopAll();
  await upstream?.close();
  for (const socket of wedgedSockets) socket.destroy();
  wedged.closeAllConnections();
  await new Promise<void>((resolve) => wedged.close(() => resolve()));
});

/** Resolves when the upstream receives its next request for `path`, with that request's socket. */
function nextUpstreamRequest(path: string): Promise<Socket> {
  return new Promise((resolve) => {
    const listener = (req: IncomingMessage) => {
      if (req.url !== path) return;
      upstream.server.off('request', listener);
      resolve(req.socket);
    };
    upstream.server.on('request', listener);
  });
}

describe('a hung upstream app', () => {
  it('gets the 502 page after UPSTREAM_TIMEOUT, and the connection to it is closed', async () => {
    const arrived = nextUpstreamRequest('/slow');
    const answer = await withinDeadline(agent.get('/apps/ea/echo/slow', { Accept: 'application/json' }), DEADLINE_MS, 'a hung upstream');
    expect(answer.status).toBe(502);
    expect(answer.json()).toMatchObject({ error: 'upstream_timeout' });
    const socket = await arrived;
    if (!socket.destroyed) await withinDeadline(new Promise((resolve) => socket.once('close', resolve)), DEADLINE_MS, 'the upstream connection closing');
    expect(socket.destroyed).toBe(true);
  });

  it('a browser gets the 502 page; the app answers as before once it does', async () => {
    const page = await withinDeadline(agent.get('/apps/ea/echo/slow'), DEADLINE_MS, 'a hung upstream');
    expect(page.status).toBe(502);
    expect(page.text).toContain('A service did not answer');
    expect((await agent.get('/apps/ea/echo/fine', { Accept: 'application/json' })).status).toBe(200);
  });

  it('a websocket handshake the app never answers is refused with 502', async () => {
    const ws = new WebSocket(`${portal.origin.replace('http', 'ws')}/apps/ea/wedged/socket`, { headers: { Cookie: cookieHeader(agent) } });
    const status = await withinDeadline(
      new Promise<number>((resolve) => {
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('open', () => resolve(101));
        ws.once('error', () => resolve(0));
      }),
      DEADLINE_MS,
      'a hung websocket upstream',
    );
    ws.terminate();
    expect(status).toBe(502);
  });
});
