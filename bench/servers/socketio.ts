/**
 * Bare socket.io: a server with the namespace the portal's realtime app has (`/apps/stable/rt`),
 * whose 'echo' handler acks what it got — the same handler as the app's (bench/fixtures.ts), with no
 * gate, no session and no guard around it. Same server options as the portal's (path, no client
 * bundle, 1 MB buffer). `GET /healthz` answers 200 for the readiness check.
 * Env: PORT, BENCH_NAMESPACE. Listens on 127.0.0.1 only.
 */
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.env.PORT);
const namespace = process.env.BENCH_NAMESPACE;
if (!Number.isInteger(port) || port <= 0 || !namespace) throw new Error('PORT and BENCH_NAMESPACE are required');

const server = createServer((req, res) => {
  res.writeHead(req.url === '/healthz' ? 200 : 404, { 'Content-Type': 'text/plain' });
  res.end(req.url === '/healthz' ? 'ok\n' : 'not found\n');
});
const io = new Server(server, { path: '/socket.io/', serveClient: false, connectTimeout: 10_000, maxHttpBufferSize: 1e6 });
io.of(namespace).on('connection', (socket) => {
  socket.on('echo', (message: unknown, ack: unknown) => {
    if (typeof ack === 'function') ack(message);
  });
});

server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  io.close();
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
