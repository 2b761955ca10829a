/**
 * The benchmark's servers and targets: starting each server in its own child process pinned to the
 * server core (only those the chosen targets need, one at a time so start-ups do not compete), and
 * for each target how it is loaded and how one answer is checked by hand before any load.
 *
 *   upstream        bench/servers/node-hello.ts: the `node` and `ws` targets, and what every proxy forwards to
 *   koa             bench/servers/app.ts: the portal's hello app module on bare Koa
 *   nginx           nginx -> upstream (HTTP and /ws)
 *   chp             configurable-http-proxy -> upstream
 *   undici          bench/servers/undici-proxy.ts: the barest Node proxy, undici as the portal uses it (context)
 *   tunnel          bench/servers/tcp-tunnel.ts: the barest Node websocket proxy, two sockets piped (context)
 *   sio             bench/servers/socketio.ts
 *   portal-*        one portal process per portal target (so CPU, memory and profiles are per path),
 *                   all with the same 10-app APPS_DIR: stable/hello (in-process), stable/rt (realtime),
 *                   stable/upstream (app.json "upstream" = the upstream), 7 fillers
 */
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { freePort } from '../lib/free-port.ts';
import { ECHO_PAYLOAD, HELLO_BODY, HELLO_PATH, REALTIME_NAMESPACE, UPSTREAM_APP_PATH, WS_PATH, type AppsFixture } from './fixtures.ts';
import { runSocketLoad, runWrk, type GeneratorResult, type Window } from './generators.ts';
import { startChp, startNginx } from './peers.ts';
import { machineToken, portalInstance, registerMachineClient, signIn, startPortal } from './portal.ts';
import { childEnv, spawnNode, waitReady, type Child } from './processes.ts';
import { HOST, settings, TARGETS, UNIT, type Run, type ServerId, type TargetId, type TargetSpec } from './settings.ts';

export interface Server {
  id: ServerId;
  child: Child;
  origin: string;
  startupMs: number;
  /** Portals: how to reach the hello app as a client (Cookie or Authorization). */
  headers: Record<string, string>;
}

export interface Target {
  id: TargetId;
  spec: TargetSpec;
  unit: string;
  server: Server;
  /** The shared upstream when the server proxies to it (its CPU counts too: same core). */
  upstream: Server | undefined;
  /** Where the load goes, for the report. */
  url: string;
  load(seconds: number, window: Window): Promise<GeneratorResult>;
  verify(): Promise<void>;
  rssIdleMB: number | null;
  rssAfterLoadMB: number | null;
  runs: Run[];
}

/** The servers a set of targets needs, the upstream first (the proxies and the apps dir name its port). */
export function serversFor(targets: TargetId[]): ServerId[] {
  const needed = new Set<ServerId>();
  for (const id of targets) {
    const spec: TargetSpec = TARGETS[id];
    needed.add(spec.server);
    if (spec.proxiesToUpstream) needed.add('upstream');
  }
  const order: ServerId[] = ['upstream', 'koa', 'nginx', 'chp', 'undici', 'tunnel', 'sio', 'portal-proxied', 'portal-inproc', 'portal-bearer', 'portal-sio', 'portal-ws'];
  return order.filter((s) => needed.has(s));
}

export async function startUpstream(): Promise<Server> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const started = Date.now();
  const child = spawnNode('upstream', settings.serverCore, ['bench/servers/node-hello.ts'], childEnv({ PORT: String(port), NODE_ENV: 'test' }));
  const startupMs = await waitReady(`${origin}/`, child, started);
  return { id: 'upstream', child, origin, startupMs, headers: {} };
}

export async function startServer(id: ServerId, ctx: { temp: string; fixture: AppsFixture; upstream: Server | undefined; builtEntry: string | undefined }): Promise<Server> {
  const upstream = () => {
    if (!ctx.upstream) throw new Error(`${id} needs the upstream`);
    return ctx.upstream;
  };
  switch (id) {
    case 'upstream':
      return startUpstream();
    case 'koa': {
      const port = await freePort(HOST);
      const origin = `http://${HOST}:${port}`;
      const started = Date.now();
      const child = spawnNode('koa', settings.serverCore, ['bench/servers/app.ts'], childEnv({ PORT: String(port), BENCH_APP_MODULE: ctx.fixture.helloModule, NODE_ENV: 'test' }));
      return { id, child, origin, startupMs: await waitReady(`${origin}/`, child, started), headers: {} };
    }
    case 'undici':
    case 'tunnel': {
      // The bare Node proxies (context): HTTP through undici, and websockets through two piped sockets.
      const [name, script] = id === 'undici' ? ['undici proxy', 'bench/servers/undici-proxy.ts'] : ['node tunnel', 'bench/servers/tcp-tunnel.ts'];
      const port = await freePort(HOST);
      const origin = `http://${HOST}:${port}`;
      const started = Date.now();
      const child = spawnNode(name, settings.serverCore, [script], childEnv({ PORT: String(port), BENCH_UPSTREAM: upstream().origin, NODE_ENV: 'test' }));
      return { id, child, origin, startupMs: await waitReady(`${origin}/`, child, started), headers: {} };
    }
    case 'sio': {
      const port = await freePort(HOST);
      const origin = `http://${HOST}:${port}`;
      const started = Date.now();
      const child = spawnNode('socket.io', settings.serverCore, ['bench/servers/socketio.ts'], childEnv({ PORT: String(port), BENCH_NAMESPACE: REALTIME_NAMESPACE, NODE_ENV: 'test' }));
      return { id, child, origin, startupMs: await waitReady(`${origin}/healthz`, child, started), headers: {} };
    }
    case 'nginx': {
      const { server, origin, startupMs } = await startNginx(ctx.temp, Number(new URL(upstream().origin).port));
      return { id, child: server, origin, startupMs, headers: {} };
    }
    case 'chp': {
      const { server, origin, startupMs } = await startChp(upstream().origin);
      return { id, child: server, origin, startupMs, headers: {} };
    }
    case 'portal-proxied':
    case 'portal-inproc':
    case 'portal-sio':
    case 'portal-ws': {
      const instance = await portalInstance(id, ctx.fixture.dir, ctx.temp);
      const { server, startupMs } = await startPortal(instance, ctx.builtEntry);
      return { id, child: server, origin: instance.origin, startupMs, headers: { Cookie: await signIn(instance) } };
    }
    case 'portal-bearer': {
      const instance = await portalInstance(id, ctx.fixture.dir, ctx.temp);
      const client = await registerMachineClient(instance);
      const { server, startupMs } = await startPortal(instance, ctx.builtEntry);
      return { id, child: server, origin: instance.origin, startupMs, headers: { Authorization: `Bearer ${await machineToken(instance, client)}` } };
    }
  }
}

/**
 * The Cookie header every HTTP target gets: the portal's session cookie, so that baselines and
 * proxies parse the same bytes the portal does (they ignore it; nginx and CHP pass it on).
 */
export function makeTarget(id: TargetId, servers: Map<ServerId, Server>, sessionCookie: string): Target {
  const spec: TargetSpec = TARGETS[id];
  const server = servers.get(spec.server);
  if (!server) throw new Error(`${id}: server ${spec.server} not started`);
  const upstream = spec.proxiesToUpstream ? servers.get('upstream') : undefined;
  const base = { id, spec, unit: UNIT[spec.generator], server, upstream, rssIdleMB: null, rssAfterLoadMB: null, runs: [] as Run[] };
  const http = (path: string, headers: Record<string, string>): Target => {
    const url = `${server.origin}${path}`;
    const all = { Accept: '*/*', ...headers };
    return { ...base, url, load: (seconds, window) => runWrk(url, all, HELLO_BODY, seconds, window), verify: () => verifyHttp(id, url, all) };
  };
  const ws = (path: string): Target => {
    const url = `${server.origin.replace(/^http/, 'ws')}${path}`;
    return {
      ...base,
      url,
      load: (seconds, window) => runSocketLoad({ kind: 'ws', url, headers: server.headers, payload: ECHO_PAYLOAD }, seconds, window),
      verify: () => verifyWs(id, url, server.headers),
    };
  };
  const sio = (): Target => ({
    ...base,
    url: `${server.origin}/socket.io/ namespace ${REALTIME_NAMESPACE}`,
    load: (seconds, window) => runSocketLoad({ kind: 'sio', url: server.origin, namespace: REALTIME_NAMESPACE, headers: server.headers, payload: ECHO_PAYLOAD }, seconds, window),
    verify: () => verifySio(id, server.origin, server.headers),
  });
  const cookie = { Cookie: sessionCookie };
  switch (id) {
    case 'node':
    case 'koa':
    case 'nginx':
    case 'chp':
    case 'undici':
      return http('/', cookie);
    case 'proxied':
      return http(UPSTREAM_APP_PATH, server.headers);
    case 'inproc':
    case 'bearer':
      return http(HELLO_PATH, server.headers);
    case 'sio':
    case 'portal-sio':
      return sio();
    case 'ws':
    case 'nginx-ws':
    case 'tunnel-ws':
      return ws(`/${WS_PATH}`);
    case 'portal-ws':
      return ws(`${UPSTREAM_APP_PATH}${WS_PATH}`);
  }
}

/** One request by hand: the answer must be the hello body; a cookie written on every request is worth a note. */
async function verifyHttp(id: TargetId, url: string, headers: Record<string, string>): Promise<void> {
  const response = await fetch(url, { headers, redirect: 'manual' });
  const body = await response.text();
  if (response.status !== 200 || body !== HELLO_BODY) {
    throw new Error(`${id}: expected 200 "${HELLO_BODY.trim()}" from ${url}, got ${response.status}: ${body.slice(0, 300)}`);
  }
  const setCookie = response.headers.getSetCookie();
  if (setCookie.length > 0) console.warn(`note: ${id} writes a cookie on every request: ${setCookie.join(' | ')}`);
}

async function verifyWs(id: TargetId, url: string, headers: Record<string, string>): Promise<void> {
  const socket = new WebSocket(url, { headers, perMessageDeflate: false });
  try {
    const reply = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
      socket.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
      socket.once('error', reject);
      socket.once('open', () => socket.send(ECHO_PAYLOAD));
      socket.once('message', (data) => {
        clearTimeout(timer);
        resolve(String(data));
      });
    });
    if (reply !== ECHO_PAYLOAD) throw new Error(`echo carried ${JSON.stringify(reply)}`);
  } catch (err) {
    throw new Error(`${id}: websocket ${url}: ${(err as Error).message}`);
  } finally {
    socket.terminate();
  }
}

async function verifySio(id: TargetId, origin: string, headers: Record<string, string>): Promise<void> {
  const socket = io(`${origin}${REALTIME_NAMESPACE}`, { path: '/socket.io/', transports: ['websocket'], reconnection: false, forceNew: true, timeout: 10_000, extraHeaders: headers });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (err) => reject(new Error(`connect_error: ${err.message}`)));
    });
    const reply: unknown = await socket.timeout(10_000).emitWithAck('echo', ECHO_PAYLOAD);
    if (reply !== ECHO_PAYLOAD) throw new Error(`ack carried ${JSON.stringify(reply)}`);
  } catch (err) {
    throw new Error(`${id}: socket.io ${origin}${REALTIME_NAMESPACE}: ${(err as Error).message}`);
  } finally {
    socket.close();
  }
}
