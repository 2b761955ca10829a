import type { IncomingMessage } from 'node:http';

/**
 * nginx's "client closed request". Nobody receives it (the client is gone); logs and metrics use it
 * so an aborted upload or a closed tab is counted as the client's doing, never as a 500.
 */
export const CLIENT_CLOSED_REQUEST = 499;

/** What a read or write on a connection the client closed fails with (Node streams, raw-body, proxies). */
const DISCONNECT_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);
const DISCONNECT_TYPES = new Set(['request.aborted', 'stream.not.readable']);

/**
 * Whether the client has gone: its connection is closed. (A request the portal or an app destroyed
 * itself, on a connection still open, is not the client's doing: it still gets its answer.)
 */
export function clientGone(req: IncomingMessage): boolean {
  return req.socket?.destroyed === true;
}

/**
 * Whether a failure is the client going away mid-request rather than a fault of the portal or an
 * app: the connection is gone *and* the error is the kind a closed connection causes (also when it
 * is wrapped, as an upstream error's cause). A real bug that happens to meet a closed connection
 * still counts as one.
 */
export function isClientDisconnect(req: IncomingMessage, err: unknown): boolean {
  if (!clientGone(req)) return false;
  for (let e = err as { code?: unknown; type?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 3; e = e.cause as typeof e, depth++) {
    if ((typeof e.code === 'string' && DISCONNECT_CODES.has(e.code)) || (typeof e.type === 'string' && DISCONNECT_TYPES.has(e.type))) return true;
  }
  return false;
}
