import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Pool, type Dispatcher } from 'undici';

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
export function forward(
  pool: Pool,
  request: { method: string; path: string; headers: Record<string, string | string[]>; body: IncomingMessage | null },
  res: ServerResponse,
  filter: HeaderFilter,
): Promise<Forwarded> {
  return new Promise<Forwarded>((resolve, reject) => {
    let controller: Dispatcher.DispatchController | undefined;
    let settled = false;
    const settle = (outcome: Forwarded) => {
      if (settled) return;
      settled = true;
      res.off('close', clientClosed);
      resolve(outcome);
    };
    const clientClosed = () => {
      if (res.writableFinished) return;
      controller?.abort(CLIENT_LEFT);
      settle('client left');
    };
    res.on('close', clientClosed);
    const resumeOnDrain = () => controller?.resume();

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(started) {
        controller = started;
        if (settled) started.abort(CLIENT_LEFT);
      },
      onResponseStart(_controller, status, headers, statusMessage) {
        // 1xx (Early Hints, a 100 Continue the upstream volunteers) are not passed on: Node answers
        // the client's Expect itself, and the final status follows.
        if (status < 200 || settled) return;
        for (const name of connectionNamed(headers.connection)) delete headers[name];
        for (const name of RESPONSE_HOP_BY_HOP) delete headers[name];
        const cookies = headers['set-cookie'];
        if (typeof cookies === 'string') headers['set-cookie'] = [cookies];
        filter(headers, res);
        res.writeHead(status, statusMessage || undefined, headers as Record<string, string | string[]>);
      },
      onResponseData(paused, chunk) {
        if (settled) return;
        if (!res.write(chunk)) {
          paused.pause();
          res.once('drain', resumeOnDrain);
        }
      },
      onResponseEnd() {
        if (settled) return;
        res.end();
        settle('answered');
      },
      onResponseError(_controller, err) {
        if (settled) return;
        if (!res.headersSent) {
          settled = true;
          res.off('close', clientClosed);
          reject(err);
          return;
        }
        res.destroy();
        settle('cut off');
      },
    };
    try {
      pool.dispatch({ method: request.method, path: request.path, headers: request.headers, body: request.body }, handler);
    } catch (err) {
      // undici refuses some requests synchronously (a header value it will not send).
      handler.onResponseError?.(controller as Dispatcher.DispatchController, err as Error);
    }
  });
}

/** The reason an upstream request is aborted with when its client has gone. */
const CLIENT_LEFT = Object.assign(new Error('the client closed the connection'), { code: 'ECONNRESET' });

/** The header names a `Connection` header lists (besides keep-alive/close, which are dropped anyway). */
function connectionNamed(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  const names: string[] = [];
  for (const token of String(value).split(',')) {
    const name = token.trim().toLowerCase();
    if (name) names.push(name);
  }
  return names;
}
