/**
 * Context, not a peer: the barest websocket proxy Node can be — a TCP server that opens one
 * connection to the upstream per client and pipes the two sockets into each other, as the portal
 * (http-proxy-3) does once an upgrade is accepted, with Nagle off on both as there. No HTTP parsing,
 * no handshake, no gate: the client's upgrade request and the upstream's 101 pass through as bytes.
 * What any Node websocket proxy pays per message, so the report can say how much of the gap to
 * nginx's websocket proxy is Node's and how much is the portal's.
 * Env: PORT, BENCH_UPSTREAM (origin). Listens on 127.0.0.1 only.
 */
import { connect, createServer, type Socket } from 'node:net';

const port = Number(process.env.PORT);
const upstream = process.env.BENCH_UPSTREAM ? new URL(process.env.BENCH_UPSTREAM) : undefined;
if (!Number.isInteger(port) || port <= 0 || !upstream) throw new Error('PORT and BENCH_UPSTREAM are required');

const sockets = new Set<Socket>();
const server = createServer({ noDelay: true }, (client) => {
  const app = connect({ host: upstream.hostname, port: Number(upstream.port), noDelay: true });
  for (const s of [client, app]) {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {
      client.destroy();
      app.destroy();
    });
  }
  client.pipe(app).pipe(client);
});

server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  for (const s of sockets) s.destroy();
  server.close(() => process.exit(0));
});
