/**
 * Context, not a peer: the barest reverse proxy Node can be with the portal's own HTTP client — an
 * `http.createServer` handing every request to one undici Pool with the portal's pool settings
 * (portal/apps/forwarder.ts: 256 kept-alive connections, one request each at a time, 4 s idle) and
 * writing the answer back. No sign-in, no gate, no identity, no header rules, no error pages: what
 * any Node proxy pays before doing anything of its own, so the report can say how much of the gap
 * to nginx is Node's and how much is the portal's. (The benchmark sends GETs only: no request body
 * is forwarded.)
 * Env: PORT, BENCH_UPSTREAM (origin). Listens on 127.0.0.1 only.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

const port = Number(process.env.PORT);
const upstream = process.env.BENCH_UPSTREAM;
if (!Number.isInteger(port) || port <= 0 || !upstream) throw new Error('PORT and BENCH_UPSTREAM are required');

const pool = new Pool(upstream, { connections: 256, pipelining: 1, keepAliveTimeout: 4_000 });
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection']);

class Answer implements Dispatcher.DispatchHandler {
  constructor(private readonly res: ServerResponse) {}
  onRequestStart(): void {}
  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    const kept: IncomingHttpHeaders = {};
    for (const name in headers) if (!HOP_BY_HOP.has(name)) kept[name] = headers[name];
    this.res.writeHead(status, kept as Record<string, string | string[]>);
  }
  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.res.write(chunk);
  }
  onResponseEnd(): void {
    this.res.end();
  }
  onResponseError(): void {
    if (this.res.headersSent) this.res.destroy();
    else this.res.writeHead(502).end();
  }
}

const server = createServer((req, res) => {
  const headers: Record<string, string | string[]> = {};
  for (const name in req.headers) if (!HOP_BY_HOP.has(name) && name !== 'host') headers[name] = req.headers[name] as string | string[];
  pool.dispatch({ method: req.method ?? 'GET', path: req.url ?? '/', headers, body: null }, new Answer(res));
});
server.keepAliveTimeout = 90_000;
server.headersTimeout = 95_000;
server.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
