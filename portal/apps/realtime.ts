import type { Server as HttpServer } from 'node:http';
import { Server, type Namespace, type ServerOptions, type Socket } from 'socket.io';
import type { LoadedApp } from '../../lib/apps/discovery.ts';
import type { Duplex } from 'node:stream';
import { decide, type GatedApp } from '../../lib/gate.ts';
import type { Logger } from '../../lib/log.ts';
import type { SessionIdentity, SessionReader } from '../sessions/reader.ts';
import { appOfRequest, type AppOrigins } from './origin/request-host.ts';
import { SessionSockets, type AdmittedSocketData, type TokenKeeper } from './socket-sessions.ts';

/**
 * socket.io on the portal's server. Each app with a `realtime` hook gets the namespace
 * `/apps/<tier>/<name>`, gated exactly like its pages: the handshake's session cookie is read and
 * the tier and per-app groups checked in the namespace middleware, before the connection is
 * accepted, so the app's hook only ever sees allowed, identified sockets (`socket.data.user`).
 * Refusals arrive as `connect_error` with message `unauthenticated` or `forbidden`.
 *
 * Access is re-evaluated by events, never by polling (socket-sessions.ts): a session ended or
 * changed (here or on another instance), a directory change, a session reaching its idle or
 * lifetime limit. A logout, revocation or demotion disconnects at once; one made by the CLI within
 * the directory watcher's second.
 */
export class Realtime {
  readonly io: Server;
  private readonly namespaces = new Map<string, { app: LoadedApp; nsp: Namespace }>();
  /** Open sockets and proxied websockets by session, re-checked when their session or the directory changes. */
  private readonly connections: SessionSockets;

  constructor(
    private readonly reader: SessionReader,
    private readonly log: Logger,
    private readonly publicOrigin: string,
    adapter?: ServerOptions['adapter'],
    /** With APP_ORIGIN: a namespace answers only on its app's own origin, signed in by its app session. */
    private readonly origins?: AppOrigins,
  ) {
    this.io = new Server({
      ...(adapter ? { adapter } : {}),
      path: '/socket.io/',
      serveClient: false,
      // Other upgrade requests (upstream apps' websockets) are the portal's to route.
      destroyUpgrade: false,
      connectTimeout: 10_000,
      maxHttpBufferSize: 1e6,
    });
    // The root namespace is not an app: nobody may use it.
    this.io.of('/').use((_socket, next) => next(new Error('forbidden')));
    this.connections = new SessionSockets(reader, log);
  }

  attach(server: HttpServer): void {
    this.io.attach(server);
  }

  mount(app: LoadedApp): void {
    this.unmount(app.tier, app.name);
    if (!app.realtime) return;
    const nsp = this.io.of(app.prefix);
    nsp.use((socket, next) => {
      this.admit(socket, app).then(
        (error) => next(error ? new Error(error) : undefined),
        (err: unknown) => {
          this.log.warn({ err, app: app.prefix }, 'socket handshake failed');
          next(new Error('unauthenticated'));
        },
      );
    });
    // An app's socket handlers run in socket.io's own ticks: one throwing would take the whole
    // process down. Each admitted socket's listeners are guarded: a failing handler is logged and
    // closes that socket only.
    nsp.use((socket, next) => {
      guardListeners(socket, app.prefix, this.log);
      next();
    });
    try {
      app.realtime(nsp);
    } catch (err) {
      this.log.error({ err, app: app.prefix }, 'the app’s realtime hook failed; its namespace refuses connections');
      nsp.use((_socket, next) => next(new Error('unavailable')));
    }
    for (const listener of nsp.listeners('connection') as ((socket: Socket) => unknown)[]) {
      nsp.off('connection', listener);
      nsp.on('connection', (socket: Socket) => guarded(() => listener(socket), socket, app.prefix, 'connection', this.log));
    }
    // First, before the app's listeners: a socket they disconnect at once is still forgotten.
    nsp.prependListener('connection', (socket: Socket) => this.connections.addSocket(socket, app));
    this.namespaces.set(app.prefix, { app, nsp });
  }

  /** Closes an app's namespace and its proxied websockets (app removed or replaced): its sockets are disconnected. */
  unmount(tier: string, name: string): void {
    const prefix = `/apps/${tier}/${name}`;
    // Its proxied websockets too (an upstream app has no namespace, but may have tunnels).
    this.connections.endApp(prefix);
    const entry = this.namespaces.get(prefix);
    if (!entry) return;
    this.namespaces.delete(prefix);
    entry.nsp.local.disconnectSockets(true);
    entry.nsp.removeAllListeners();
    this.io._nsps.delete(prefix);
  }

  private async admit(socket: Socket, app: LoadedApp): Promise<string | undefined> {
    const identity = await this.identify(socket, app);
    if (identity === 'forbidden') return 'forbidden';
    if (!identity) return 'unauthenticated';
    const decision = decide(identity.user, app);
    if (!decision.allowed) return decision.status === 401 ? 'unauthenticated' : 'forbidden';
    const data = socket.data as AdmittedSocketData;
    data.sessionId = identity.sessionId;
    data.session = identity.session;
    data.user = identity.user;
    return undefined;
  }

  /**
   * Who opens a socket: on the portal's origin, its session; on an app origin (APP_ORIGIN), that
   * app's session there — and only for the app's own namespace. Cookies are SameSite=Lax, which a
   * sibling subdomain's page still gets: the page must be from the origin the socket is for.
   */
  private async identify(socket: Socket, app: LoadedApp): Promise<SessionIdentity | undefined | 'forbidden'> {
    const req = socket.request;
    const origin = socket.handshake.headers.origin;
    if (!this.origins) {
      if (origin !== undefined && origin !== this.publicOrigin) return 'forbidden';
      return this.reader.read(req);
    }
    const target = appOfRequest(this.origins, req);
    // The portal's origin serves no app content, sockets included.
    if (!target || target.tier !== app.tier || target.name !== app.name) return 'forbidden';
    if (origin !== undefined && origin !== target.origin) return 'forbidden';
    return this.origins.sessions.identifyRequest(req, target.key);
  }

  /** How sessions that only hold sockets get their tokens refreshed when due (socket-sessions.ts). */
  keepTokensWith(keeper: TokenKeeper): void {
    this.connections.keepTokensWith(keeper);
  }

  /** Holds a proxied upstream websocket to the same rules; it is closed when its session or access ends. */
  trackTunnel(socket: Duplex, sessionId: string, app: GatedApp & { prefix: string }): void {
    this.connections.addTunnel(socket, sessionId, app);
  }

  /** Disconnects every socket of these sessions (logout, revocation, here or on another instance). */
  endSessions(ids: string[]): void {
    this.connections.end(ids);
  }

  /** Reads these sessions again and re-checks their sockets (a refresh changed the level, a touch moved the idle limit). */
  sessionsChanged(ids: string[]): Promise<void> {
    return this.connections.changed(ids);
  }

  /**
   * Re-applies the gate to every open socket with the current directory; with `readSessions`, also
   * confirms each session still exists and has not expired (one cached store read per session).
   */
  recheckAll(readSessions = false): Promise<void> {
    return this.connections.recheckAll(readSessions);
  }

  /**
   * The first step of a graceful stop, so that nothing holds the server's close: socket.io clients
   * lose their transport ("transport close", which socket.io clients answer by reconnecting, to
   * another instance behind a balancer), and proxied websockets get a close frame 1001 "going
   * away" before their connection ends.
   */
  drain(): void {
    this.connections.stop();
    for (const socket of this.connections.tunnels()) goingAway(socket);
    this.io.engine?.close();
  }

  /**
   * Like io.close() but leaves the HTTP server to its owner. The Redis adapter's subscriptions end
   * with its connections (Cluster.close); unsubscribing first would race the disconnect.
   */
  async close(): Promise<void> {
    this.connections.stop();
    // Local only: with the Redis adapter a plain disconnectSockets would reach every instance.
    for (const nsp of this.io._nsps.values()) nsp.local.disconnectSockets(true);
    for (const socket of this.connections.tunnels()) socket.destroy();
    this.io.engine?.close();
  }
}

/** Runs an app's handler; an exception or rejection is logged and closes the socket, nothing more. */
function guarded(run: () => unknown, socket: Socket, prefix: string, event: string, log: Logger): void {
  const fail = (err: unknown) => {
    log.error({ err, app: prefix, event }, 'a socket handler failed; that socket is closed');
    socket.disconnect(true);
  };
  try {
    const result = run();
    if (result instanceof Promise) result.catch(fail);
  } catch (err) {
    fail(err);
  }
}

function guardListeners(socket: Socket, prefix: string, log: Logger): void {
  const on = socket.on.bind(socket);
  socket.on = ((event: string, listener: (...args: unknown[]) => unknown) =>
    on(event, (...args: unknown[]) => guarded(() => listener(...args), socket, prefix, event, log))) as Socket['on'];
}

/** A server's websocket close frame, code 1001 ("going away"): unmasked, as a server sends it. */
const GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);

/**
 * Ends a proxied websocket with 1001. The upstream's side is cut at the same moment; a frame of
 * its that was half sent would be garbled, which a client ending anyway does not mind.
 */
function goingAway(socket: Duplex): void {
  if (socket.destroyed) return;
  socket.unpipe?.();
  socket.end(GOING_AWAY);
  setTimeout(() => socket.destroy(), 1_000).unref();
}
