import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ForbiddenError } from '../lib/errors.ts';
import type { PortalMiddleware } from './context.ts';

const LOOPBACK = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

function area(path: string): string {
  if (path.startsWith('/apps/')) return 'apps';
  if (path.startsWith('/idp/')) return 'idp';
  if (path.startsWith('/admin')) return 'admin';
  if (path.startsWith('/auth/') || path === '/login' || path === '/logout') return 'auth';
  return 'portal';
}

/**
 * Prometheus metrics (prom-client): process defaults, requests and their latency by area of the
 * portal (not by path, so a thousand apps do not make a thousand series), and a few gauges read at
 * scrape time. `/metrics` answers the local host and admins only: app names and load are not public.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: 'atrium_http_requests_total', help: 'HTTP requests by area and status class', labelNames: ['area', 'status'] as const, registers: [this.registry] });
  private readonly latency = new Histogram({
    name: 'atrium_http_request_duration_seconds',
    help: 'HTTP request latency by area',
    labelNames: ['area'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor(gauges: Record<string, { help: string; read: () => number }>) {
    collectDefaultMetrics({ register: this.registry, prefix: 'atrium_' });
    for (const [name, gauge] of Object.entries(gauges)) {
      new Gauge({ name, help: gauge.help, registers: [this.registry], collect() { this.set(gauge.read()); } });
    }
  }

  /** Counts and times every request; first in the pipeline so errors are counted too. */
  middleware(): PortalMiddleware {
    // Label lookups hash their labels on every call: resolve each series once and keep it.
    const counters = new Map<string, { inc(): void }>();
    const timers = new Map<string, { observe(value: number): void }>();
    return async (ctx, next) => {
      const started = performance.now();
      try {
        await next();
      } finally {
        const where = area(ctx.path);
        const key = `${where} ${Math.floor(ctx.status / 100)}`;
        let counter = counters.get(key);
        if (!counter) counters.set(key, (counter = this.requests.labels(where, `${Math.floor(ctx.status / 100)}xx`)));
        counter.inc();
        let timer = timers.get(where);
        if (!timer) timers.set(where, (timer = this.latency.labels(where)));
        timer.observe((performance.now() - started) / 1000);
      }
    };
  }

  route(): PortalMiddleware {
    return async (ctx, next) => {
      if (ctx.path !== '/metrics') return next();
      // Local means the connection itself is local and no proxy forwarded it on someone's behalf.
      const local = LOOPBACK.has(ctx.req.socket.remoteAddress ?? '') && !ctx.get('X-Forwarded-For') && !ctx.get('Forwarded');
      if (!local && ctx.state.user?.level !== 'admin') throw new ForbiddenError('Metrics are for the local host and administrators.', {}, 'metrics_forbidden');
      ctx.set('Cache-Control', 'no-store');
      ctx.type = this.registry.contentType;
      ctx.body = await this.registry.metrics();
    };
  }
}
