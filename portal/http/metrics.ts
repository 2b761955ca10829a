import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ForbiddenError } from '../../lib/errors.ts';
import { CLIENT_CLOSED_REQUEST, clientGone } from './client-disconnect.ts';
import type { PortalContext, PortalMiddleware } from './context.ts';

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

/** The areas requests are counted by, and the status classes (1xx…5xx): a counter each, not a key per request. */
const AREAS = ['apps', 'idp', 'admin', 'auth', 'portal'] as const;
const [APPS, IDP, ADMIN, AUTH, PORTAL] = [0, 1, 2, 3, 4];
const STATUS_CLASSES = 5;

/** Which area a path is in (an index into AREAS). */
function area(path: string): number {
  if (path.startsWith('/apps/')) return APPS;
  if (path.startsWith('/idp/')) return IDP;
  if (path.startsWith('/admin')) return ADMIN;
  if (path.startsWith('/auth/') || path === '/login' || path === '/logout') return AUTH;
  return PORTAL;
}

/**
 * The status a request ended with: a proxied one's is on the raw response (Koa did not write it),
 * and a client that left before any answer closed the request itself (499), whatever the error.
 */
function statusOf(ctx: PortalContext): number {
  if (ctx.respond === false) return rawStatusOf(ctx.req, ctx.res);
  return !ctx.res.headersSent && clientGone(ctx.req) ? CLIENT_CLOSED_REQUEST : ctx.status;
}

/** The same for a request answered without Koa (the fast lane, the proxy): the raw response's status. */
function rawStatusOf(req: IncomingMessage, res: ServerResponse): number {
  return !res.headersSent && clientGone(req) ? CLIENT_CLOSED_REQUEST : res.statusCode;
}

/** One in this many app requests is timed: the latency distribution without a cost on every request. */
const APP_LATENCY_SAMPLE = 16;

/**
 * Prometheus metrics (prom-client): process defaults, requests and their latency by area of the
 * portal (not by path, so a thousand apps do not make a thousand series), and a few gauges read at
 * scrape time. `/metrics` answers the local host and admins only: app names and load are not public.
 *
 * The request path only bumps plain numbers; prom-client's label hashing happens at scrape time
 * (the counter's collect). App requests, the bulk of the traffic, are timed one in sixteen; the
 * rest of the portal's areas every time.
 */
export class Metrics {
  readonly registry = new Registry();
  /** Requests counted since the last scrape, by area × status class (see AREAS); added to the counter at collect. */
  private readonly pending = new Float64Array(AREAS.length * STATUS_CLASSES);
  private readonly latency = new Histogram({
    name: 'atrium_http_request_duration_seconds',
    help: `HTTP request latency by area (app requests sampled 1 in ${APP_LATENCY_SAMPLE})`,
    labelNames: ['area'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor(gauges: Record<string, { help: string; read: () => number }>) {
    collectDefaultMetrics({ register: this.registry, prefix: 'atrium_' });
    const pending = this.pending;
    new Counter({
      name: 'atrium_http_requests_total',
      help: 'HTTP requests by area and status class',
      labelNames: ['area', 'status'] as const,
      registers: [this.registry],
      collect() {
        for (let i = 0; i < pending.length; i++) {
          const count = pending[i] as number;
          if (count === 0) continue;
          this.inc({ area: AREAS[Math.floor(i / STATUS_CLASSES)] as string, status: `${(i % STATUS_CLASSES) + 1}xx` }, count);
          pending[i] = 0;
        }
      },
    });
    for (const [name, gauge] of Object.entries(gauges)) {
      new Gauge({ name, help: gauge.help, registers: [this.registry], collect() { this.set(gauge.read()); } });
    }
  }

  /** App requests seen, for the one-in-APP_LATENCY_SAMPLE timing. */
  private appRequests = 0;

  private record(status: number, where: number, started: number): void {
    const statusClass = Math.min(STATUS_CLASSES, Math.max(1, Math.floor(status / 100)));
    this.pending[where * STATUS_CLASSES + statusClass - 1]! += 1;
    if (started >= 0) this.latency.observe({ area: AREAS[where] as string }, (performance.now() - started) / 1000);
  }

  /** When a request in an area starts: the time to record it with, or -1 for an app request that is not timed. */
  private started(where: number): number {
    return where !== APPS || (this.appRequests++ & (APP_LATENCY_SAMPLE - 1)) === 0 ? performance.now() : -1;
  }

  /** Counts and times requests; first in the pipeline so errors are counted too. */
  middleware(): PortalMiddleware {
    // Not `async` (one promise fewer per request); the error handler below turns failures into statuses.
    return (ctx, next) => {
      // The area is read before the request goes on: the proxy rewrites the path it forwards.
      const where = area(ctx.path);
      const started = this.started(where);
      return next().then(
        () => this.record(statusOf(ctx), where, started),
        (err: unknown) => {
          this.record(statusOf(ctx), where, started);
          throw err;
        },
      );
    };
  }

  /** For an app request answered without Koa (the fast lane): call at its start, and pass what it gives to appAnswered. */
  appStarted(): number {
    return this.started(APPS);
  }

  /** Counts (and, when it was picked, times) an app request answered without Koa, once it has ended. */
  appAnswered(req: IncomingMessage, res: ServerResponse, started: number): void {
    this.record(rawStatusOf(req, res), APPS, started);
  }

  route(): PortalMiddleware {
    return async (ctx, next) => {
      if (ctx.path !== '/metrics') return next();
      // Local means the connection itself is local and no proxy forwarded it on someone's behalf. The
      // Host was checked above (known-hosts.ts): the portal's or a loopback name, never a rebinding
      // page's; and a forwarded host (which such a page could add) makes it not local either.
      const local =
        LOOPBACK.has(ctx.req.socket.remoteAddress ?? '') && !ctx.get('X-Forwarded-For') && !ctx.get('Forwarded') && !ctx.get('X-Forwarded-Host');
      if (!local && ctx.state.user?.level !== 'admin') throw new ForbiddenError('Metrics are for the local host and administrators.', {}, 'metrics_forbidden');
      ctx.set('Cache-Control', 'no-store');
      ctx.type = this.registry.contentType;
      ctx.body = await this.registry.metrics();
    };
  }
}
