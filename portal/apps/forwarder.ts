import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';
import { listsName } from './client-headers.ts';

/**
 * How the portal talks HTTP to upstream apps: one undici Pool per upstream origin, its connections
 * kept alive between requests. A new TCP connection per request cost the old proxy (http-proxy-3
 * with no agent) more than half its throughput, and the upstream as much again (BENCHMARKS.md).
 *
 * - The pool is bounded (`connections` per upstream): a burst queues in the portal rather than
 *   opening thousands of sockets to a small app server.
 * - An idle connection is closed after 4 s unless the upstream's `Keep-Alive: timeout=N` says
 *   otherwise (then N − 2 s): below Node's and gunicorn's 5 s and uvicorn's 5 s, so the portal closes
 *   first and never sends a request on a connection the app is closing.
 * - `headersTimeout` is UPSTREAM_TIMEOUT counted from the end of the request body (undici starts it
 *   once the request is sent), so a slow upload is not an app that hangs; `bodyTimeout` is the
 *   silence allowed between chunks of an answer (long polls, event streams).
 */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly options: { answerWithinMs: number; streamIdleMs: number; connections: number }) {}

  /** The pool for an upstream (its origin: scheme, host and port), made on first use. */
  poolFor(upstream: URL): Pool {
    const origin = upstream.origin;
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        connections: this.options.connections,
        pipelining: 1,
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 60_000,
        headersTimeout: this.options.answerWithinMs,
        bodyTimeout: this.options.streamIdleMs,
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy().catch(() => undefined)));
  }
}

/** How a forwarded request ended, when it did not fail before its answer began. */
export type Forwarded = 'answered' | 'client left' | 'cut off';

/** What the caller does to the upstream's headers before they are written (the response rules). */
export type HeaderFilter = (headers: IncomingHttpHeaders, res: ServerResponse) => void;

/** Response headers that belong to the upstream's connection, not the client's (RFC 9110 §7.6.1). */
const RESPONSE_HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer']);

/**
 * Streams one request to the upstream and its answer to `res`, both ways with back-pressure.
 * Resolves once the answer is written in full (`answered`), the client went away (`client left`,
 * and the upstream request is aborted), or the upstream broke off an answer already begun (`cut
 * off`, and the client's connection is destroyed: a truncated body must not look complete). Rejects
 * only while nothing has been written, so the caller can still answer with an error page.
 */
export function forward(pool: Pool, request: ForwardedRequest, res: ServerResponse, filter: HeaderFilter): Promise<Forwarded> {
  // Not `async`: the retry hangs off the one promise rather than wrapping it in another.
  return forwardOnce(pool, request, res, filter).catch((err: unknown) => {
    // A kept-alive connection the app closed just as the request went out on it (its keep-alive
    // timer fired): nothing came back, and an idempotent request without a body is sent once more,
    // on another connection, as nginx's proxy_next_upstream does. Anything else is the app's answer.
    if (res.headersSent || res.destroyed || !mayRetry(request, err)) throw err;
    return forwardOnce(pool, request, res, filter);
  });
}

/** What forward() sends: the upstream's path, the headers already prepared, the client's body stream or none. */
export interface ForwardedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: IncomingMessage | null;
}

/** Methods a client may have sent twice without harm (RFC 9110 §9.2.2), so a lost one may be. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS']);
/** How a reused connection fails when the app had closed it: before any byte of an answer. */
const CLOSED_UNDER_US = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

function mayRetry(request: ForwardedRequest, err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return request.body === null && IDEMPOTENT.has(request.method) && typeof code === 'string' && CLOSED_UNDER_US.has(code);
}

function forwardOnce(pool: Pool, request: ForwardedRequest, res: ServerResponse, filter: HeaderFilter): Promise<Forwarded> {
  return new Promise<Forwarded>((resolve, reject) => {
    const handler = new ForwardHandler(res, filter, request.method === 'HEAD', resolve, reject);
    try {
      pool.dispatch({ method: request.method, path: request.path, headers: request.headers, body: request.body }, handler);
    } catch (err) {
      // undici refuses some requests synchronously (a header value it will not send).
      handler.fail(err as Error);
    }
  });
}

/**
 * One forwarded request's undici handler. A class rather than closures: the hot path makes one
 * object per request, not a dozen functions.
 */
class ForwardHandler implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined;
  private settled = false;
  private readonly clientClosed = () => {
    if (this.res.writableFinished) return;
    this.controller?.abort(CLIENT_LEFT);
    this.settle('client left');
  };
  private readonly resumeOnDrain = () => this.controller?.resume();

  constructor(
    private readonly res: ServerResponse,
    private readonly filter: HeaderFilter,
    /** A HEAD request: its answer has no body, whatever its Content-Length says. */
    private readonly head: boolean,
    private readonly resolve: (outcome: Forwarded) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    res.on('close', this.clientClosed);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.settled) controller.abort(CLIENT_LEFT);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    // 1xx (Early Hints) are not passed on: Node answers the client's Expect itself, and the final
    // status follows. (A 100 Continue nobody asked for is refused by undici: the client gets a 502.)
    if (status < 200 || this.settled) return;
    const answer = endUpstreamHop(headers);
    this.filter(answer, this.res);
    this.res.writeHead(status, statusMessage || undefined, answer as Record<string, string | string[]>);
    // No body can follow (RFC 9110 §6.4.1): the answer is complete now. A 304's Content-Length is
    // the full representation's, which undici takes for a body that never comes; whatever it does
    // with the rest of this response is the upstream connection's business, not the client's.
    if (this.head || status === 204 || status === 304) {
      this.res.end();
      this.settle('answered');
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.settled) return;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.resumeOnDrain);
    }
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.res.end();
    this.settle('answered');
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.fail(err);
  }

  /** The upstream failed: an error to answer with if nothing is written yet, else a cut-off answer. */
  fail(err: Error): void {
    if (this.settled) return;
    if (!this.res.headersSent) {
      this.settled = true;
      this.res.off('close', this.clientClosed);
      this.reject(err);
      return;
    }
    this.res.destroy();
    this.settle('cut off');
  }

  private settle(outcome: Forwarded): void {
    if (this.settled) return;
    this.settled = true;
    this.res.off('close', this.clientClosed);
    this.resolve(outcome);
  }
}

/**
 * The upstream's answer headers without what belongs to its connection to the portal: the
 * hop-by-hop ones and those its Connection header names; Set-Cookie always a list, as the response
 * rules expect it. A new object (deleting keys from undici's would slow every use of it after).
 */
function endUpstreamHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = headers.connection === undefined ? undefined : String(headers.connection).toLowerCase();
  const answer: IncomingHttpHeaders = Object.create(null);
  for (const name in headers) {
    if (RESPONSE_HOP_BY_HOP.has(name) || (named !== undefined && listsName(named, name))) continue;
    const value = headers[name];
    answer[name] = name === 'set-cookie' && typeof value === 'string' ? [value] : value;
  }
  return answer;
}

/** The reason an upstream request is aborted with when its client has gone. */
const CLIENT_LEFT = Object.assign(new Error('the client closed the connection'), { code: 'ECONNRESET' });
