import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

/**
 * A stand-in for an app in another process: echoes, as JSON, the path, the headers it received
 * and the cookies, and echoes websocket messages with the identity it was given.
 */
export async function startEchoUpstream(): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/slow')) return; // never answers
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ path: req.url, method: req.method, headers: req.headers }));
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket, req) => {
    socket.send(JSON.stringify({ hello: req.headers['x-atrium-email'], path: req.url, level: req.headers['x-atrium-level'] }));
    socket.on('message', (data) => socket.send(`echo:${data.toString()}`));
  });
  return listenOnLoopback(server, wss);
}

/** Listens on a free loopback port; close() ends open websockets and connections first. */
export async function listenOnLoopback(server: Server, wss: WebSocketServer): Promise<{ url: string; server: Server; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
