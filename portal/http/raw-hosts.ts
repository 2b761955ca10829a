import type { IncomingMessage, RequestListener, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { requestHost } from '../apps/origin/request-host.ts';
import { errorJson, refuseRawUpgrade } from './errors.ts';
import { KnownHosts, MisdirectedRequestError } from './known-hosts.ts';

const SOCKET_IO = '/socket.io/';

type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/**
 * The Host rule (known-hosts.ts) for what never passes Koa's pipeline: websocket upgrades (socket.io's
 * and upstream apps') and socket.io's long-polling requests, which engine.io takes off the server
 * before Koa sees them. Call it once everything is attached: it wraps the server's listeners.
 *
 * An upgrade for an unknown host gets the 421 as a raw answer; a socket.io request is handed to
 * Koa instead, whose guard renders the 421 like any other. Other requests are Koa's already, and
 * pay nothing here but a prefix test.
 */
export function guardRawHosts(server: Server, hosts: KnownHosts, trustProxy: boolean, koa: RequestListener): void {
  const known = (req: IncomingMessage) => hosts.isKnown(requestHost(req, trustProxy));
  const refusal = JSON.stringify(errorJson(new MisdirectedRequestError(hosts.publicOrigin)));

  const upgrades = server.listeners('upgrade') as UpgradeListener[];
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (known(req)) {
      for (const listener of upgrades) listener.call(server, req, socket, head);
      return;
    }
    socket.on('error', () => socket.destroy());
    refuseRawUpgrade(socket, 421, 'Misdirected Request', refusal);
  });

  const requests = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req, res) => {
    if (req.url?.startsWith(SOCKET_IO) && !known(req)) return void koa(req, res);
    for (const listener of requests) listener.call(server, req, res);
  });
}
