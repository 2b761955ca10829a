import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Config } from '../lib/config.ts';
import type { Logger } from '../lib/log.ts';
import type { Portal } from './app.ts';

/**
 * How the portal stops (SIGTERM, SIGINT, or `stop()` in tests), in the order a balancer needs:
 *
 * 1. At once, `/readyz` answers 503 and every response says `Connection: close`, so balancers and
 *    kept-alive clients move to other instances; for STOP_DRAIN_DELAY seconds new requests are
 *    still served (the balancer may not have noticed yet).
 * 2. The listener closes; idle connections close; socket.io clients lose their transport (they
 *    reconnect elsewhere) and proxied websockets get 1001 "going away", so no upgraded socket
 *    holds the server open.
 * 3. Requests in flight finish, for up to STOP_TIMEOUT seconds; then their connections are cut.
 * 4. Supervised apps stop; the database and Redis close.
 */
export class GracefulStop {
  private draining = false;
  private readonly connections = new Set<Socket>();

  constructor(
    private readonly server: Server,
    private readonly portal: Portal,
    private readonly config: Pick<Config, 'stopDrainDelaySeconds' | 'stopTimeoutSeconds'>,
    private readonly log: Logger,
  ) {
    // Every connection, upgraded ones included (server.closeAllConnections knows only HTTP ones).
    server.on('connection', (socket: Socket) => {
      this.connections.add(socket);
      socket.once('close', () => this.connections.delete(socket));
    });
  }

  /** The server's request listener: the portal's, but draining-aware. */
  listener(handle: RequestListener): RequestListener {
    return (req: IncomingMessage, res: ServerResponse) => {
      if (!this.draining) return handle(req, res);
      res.setHeader('Connection', 'close');
      if (req.url === '/readyz' || req.url?.startsWith('/readyz?')) {
        res.writeHead(503, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', 'Retry-After': '1' });
        res.end(JSON.stringify({ status: 'stopping' }));
        return;
      }
      handle(req, res);
    };
  }

  async stop(): Promise<void> {
    this.draining = true;
    const { stopDrainDelaySeconds, stopTimeoutSeconds } = this.config;
    this.log.info({ drainDelaySeconds: stopDrainDelaySeconds, timeoutSeconds: stopTimeoutSeconds }, 'draining: /readyz answers 503');
    if (stopDrainDelaySeconds > 0) await new Promise((resolve) => setTimeout(resolve, stopDrainDelaySeconds * 1000));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // A kept-alive connection whose request was in flight becomes idle only when it is answered.
    const idleSweep = setInterval(() => this.server.closeIdleConnections(), 100);
    this.portal.realtime.drain();
    const cut = setTimeout(() => {
      this.log.warn({ connections: this.connections.size }, 'stop timeout: cutting the connections still open');
      this.server.closeAllConnections();
      for (const socket of this.connections) socket.destroy();
    }, stopTimeoutSeconds * 1000);
    cut.unref();
    await closed;
    clearInterval(idleSweep);
    clearTimeout(cut);
    await this.portal.close();
    this.log.info('stopped');
  }
}
