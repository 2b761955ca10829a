import type { IncomingMessage, RequestListener, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AtriumError } from '../../lib/errors.ts';
import { MALFORMED_HOST, namedHost } from '../apps/origin/request-host.ts';
import { errorJson, refuseRawUpgrade } from './errors.ts';
import { absoluteForm, isOriginForm, KnownHosts, malformedHostError, malformedTargetError, MisdirectedRequestError } from './known-hosts.ts';

const SOCKET_IO = '/socket.io/';

type UpgradeListener = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** A refusal written straight to an upgrade's socket: status line and JSON body, worked out once. */
interface RawRefusal {
  status: number;
  reason: string;
  body: string;
}

function rawRefusal(err: AtriumError, reason: string): RawRefusal {
  return { status: err.status, reason, body: JSON.stringify(errorJson(err)) };
}

/**
 * The Host rule (known-hosts.ts) for what never passes Koa's pipeline: websocket upgrades (socket.io's
 * and upstream apps') and socket.io's long-polling requests, which engine.io takes off the server
 * before Koa sees them. Call it once everything is attached: it wraps the server's listeners.
 *
 * An upgrade for an unknown host gets the 421 as a raw answer (a malformed host or target a 400); a
 * socket.io request is handed to `koa` instead, whose guard renders the answer like any other. Give
 * it the listener the server runs for Koa (the graceful-stop wrapper's, portal/graceful-stop.ts), so
 * such an answer drains as every other does. Other requests are Koa's already, and pay nothing here
 * but a prefix test.
 *
 * An absolute-form target (`GET http://host/path HTTP/1.1`) is checked by the same rule and made
 * origin-form (`/path`) before any listener sees it, so neither engine.io nor Koa (whose `ctx.href`
 * would name that host) nor an upstream ever does.
 */
export function guardRawHosts(server: Server, hosts: KnownHosts, trustProxy: boolean, koa: RequestListener): void {
  const misdirected = rawRefusal(new MisdirectedRequestError(hosts.publicOrigin), 'Misdirected Request');
  const badHost = rawRefusal(malformedHostError(), 'Bad Request');
  const badTarget = rawRefusal(malformedTargetError(), 'Bad Request');

  /** Undefined when the request may go on (an absolute-form target then made origin-form), else why not. */
  const refusal = (req: IncomingMessage): RawRefusal | undefined => {
    let absolute: ReturnType<typeof absoluteForm>;
    if (!isOriginForm(req.url)) {
      absolute = absoluteForm(req.url ?? '');
      if (!absolute) return badTarget;
    }
    const answer = hosts.answer(namedHost(req, trustProxy));
    if (answer === MALFORMED_HOST) return badHost;
    if (answer === undefined || (absolute && !hosts.isKnown(absolute.host))) return misdirected;
    if (absolute) req.url = absolute.originForm;
    return undefined;
  };

  const upgrades = server.listeners('upgrade') as UpgradeListener[];
  server.removeAllListeners('upgrade');
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const refused = refusal(req);
    if (!refused) {
      for (const listener of upgrades) listener.call(server, req, socket, head);
      return;
    }
    socket.on('error', () => socket.destroy());
    refuseRawUpgrade(socket, refused.status, refused.reason, refused.body);
  });

  const requests = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req, res) => {
    // Refused ones go to Koa untouched, whose Host guard answers them (and lets probes through).
    if (!isOriginForm(req.url) || req.url?.startsWith(SOCKET_IO)) {
      if (refusal(req)) return void koa(req, res);
    }
    for (const listener of requests) listener.call(server, req, res);
  });
}
