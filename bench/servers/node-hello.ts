/**
 * Bare node: `http.createServer` answering the hello body, nothing else on the request path. It is
 * a target itself (`node`) and the one upstream every proxy forwards to (nginx, CHP, the portal's
 * proxied app), and it echoes websocket messages on any path (`ws`, `nginx-ws`, `portal-ws`).
 *
 * `GET /__bench/stats` tells how many TCP connections it accepted and requests it answered, so the
 * benchmark can show whether a proxy keeps its upstream connections alive.
 * Env: PORT. Listens on 127.0.0.1 only.
 */
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

const port = Number(process.env.PORT);
if (!Number.isInteger(port) || port <= 0) throw new Error('PORT is required');

const BODY = 'hello\n';
const HEADERS = { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(BODY)) };
let connections = 0;
let requests = 0;

const server = createServer((req, res) => {
  if (req.url === '/__bench/stats') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ connections, requests }));
    return;
  }
  requests++;
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
server.on('connection', () => connections++);
// Idle upstream connections kept by the proxies between rounds stay open (Node's default is 5 s),
// as the portal keeps its own clients' (KEEP_ALIVE_TIMEOUT, 90 s).
server.keepAliveTimeout = 90_000;
server.headersTimeout = 95_000;

const wss = new WebSocketServer({ server, perMessageDeflate: false });
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
});

server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
