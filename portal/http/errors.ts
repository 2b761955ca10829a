import type { Duplex } from 'node:stream';
import type { Logger } from '../../lib/log.ts';
import { AtriumError, NotFoundError, ServiceUnavailableError } from '../../lib/errors.ts';
import { EMBEDDED_PREFIX } from '../idp/provider.ts';
import { isLevel, reaches } from '../../lib/levels.ts';
import { isClientDisconnect } from './client-disconnect.ts';
import { prefersHtml, type PortalMiddleware } from './context.ts';
import { HARDENING_HEADERS } from './hardening.ts';
import type { Views } from './views.ts';
import { sideLookup } from './side-lookup.ts';

/** What the 403 page may look up to show "Pending" instead of a second request form. */
export interface ErrorPageLookups {
  /** The levels the user has asked for and an administrator has not decided yet. */
  pendingLevels(userId: number): Promise<readonly string[]>;
}

const HEADINGS: Record<number, string> = {
  400: 'That request cannot be used',
  401: 'Please sign in',
  403: 'You do not have access',
  404: 'Not found',
  413: 'Too large',
  421: 'Wrong address',
  429: 'Slow down',
  502: 'A service did not answer',
  503: 'Not ready yet',
};

/** Retry-After on the embedded provider's own 503 pages (ServiceUnavailableError's default). */
const RETRY_AFTER_SECONDS = new ServiceUnavailableError().retryAfterSeconds;
const fromEmbeddedProvider = (path: string) => path === EMBEDDED_PREFIX || path.startsWith(`${EMBEDDED_PREFIX}/`);

/**
 * The one place errors become responses: AtriumError (and Koa's http errors) keep their status and,
 * when `expose` allows, their message; anything else is a 500 whose details go only to the log.
 * Browsers get a page, API callers JSON `{ error, message, ...details }`.
 */
export function errorHandler(views: Views, log: Logger, portalOrigin = '', lookups?: ErrorPageLookups): PortalMiddleware {
  const render = (ctx: Parameters<PortalMiddleware>[0], caught: unknown): void | Promise<void> => {
    // An aborted upload or a closed tab: nobody to answer, nothing wrong here (metrics count it as 499).
    if (isClientDisconnect(ctx.req, caught)) {
      log.info({ method: ctx.method, url: ctx.originalUrl, code: (caught as { code?: unknown }).code }, 'client disconnected');
      return;
    }
    const err = normalise(caught);
    if (err.status === 500) log.error({ err: caught, method: ctx.method, url: ctx.originalUrl }, 'request failed');
    else if (err.status > 500) log.warn({ err: err.message, code: err.code, method: ctx.method, url: ctx.originalUrl }, 'dependency failed');
    if (ctx.headerSent || !ctx.writable) return;
    const headers = (caught as { headers?: Record<string, string> }).headers;
    // Keep cookies being cleared (e.g. a bad session) and a Referrer-Policy tightened to none (the
    // hand-off pages), but nothing else the failed handler set; then the hardening headers, which
    // every page of the portal carries, errors above all (the 403 page's form must not be framed).
    const setCookie = ctx.response.get('Set-Cookie');
    const noReferrer = ctx.response.get('Referrer-Policy') === 'no-referrer';
    // A stopping portal asks every client to close its connection (graceful-stop.ts), errors included.
    const closing = ctx.response.get('Connection') === 'close';
    ctx.res.getHeaderNames().forEach((name) => ctx.res.removeHeader(name));
    if (setCookie) ctx.set('Set-Cookie', setCookie);
    if (closing) ctx.set('Connection', 'close');
    for (const [name, value] of HARDENING_HEADERS) ctx.set(name, value);
    if (noReferrer) ctx.set('Referrer-Policy', 'no-referrer');
    // A 503 of ours says when to come back (Retry-After); other server errors' headers are not ours to pass on.
    if (headers && (err.status < 500 || caught instanceof ServiceUnavailableError)) for (const [k, v] of Object.entries(headers)) ctx.set(k, v);
    ctx.set('Cache-Control', 'no-store');
    ctx.status = err.status;
    const message = err.expose ? err.message : 'Something went wrong on our side. It has been logged.';
    if (prefersHtml(ctx)) {
      const page = (pending: readonly string[]) => {
        ctx.type = 'html';
        ctx.body = views.render('error.njk', {
          title: HEADINGS[err.status] ?? 'Error',
          heading: HEADINGS[err.status] ?? 'Something went wrong',
          status: err.status,
          message,
          details: err.details,
          user: ctx.state.user,
          // The header's Sign out form (and the 403 page's access request) need it. Never on an app
          // origin: the app's scripts can read its pages, and the token would let them act here.
          csrf: ctx.state.user && !ctx.state.appOrigin ? ctx.state.csrf : undefined,
          // On an app origin the page's links lead back to the portal.
          base: ctx.state.appOrigin ? portalOrigin : '',
          back: ctx.method === 'POST' ? ctx.get('Referer') : undefined,
          // Where the 403 page's access request comes back to: this very page, which then says Pending.
          returnTo: ctx.method === 'GET' ? ctx.originalUrl : undefined,
          pending: pending.some((level) => isLevel(level) && isLevel(err.details.needed) && reaches(level, err.details.needed)),
        });
      };
      // Only a 403 that offers a request asks the database, and never for longer than a side lookup.
      const userId = ctx.state.userId;
      if (err.status === 403 && lookups && userId !== undefined && typeof err.details.needed === 'string' && !ctx.state.appOrigin) {
        return sideLookup(() => lookups.pendingLevels(userId), [] as readonly string[], (e) => log.warn({ err: e, userId }, '403 page: pending requests left out')).then(page);
      }
      page([]);
    } else {
      ctx.body = errorJson(err, message);
    }
  };
  // Promise-chained rather than `async`: this wraps every request, and each extra promise counts.
  return (ctx, next) =>
    next().then(
      () => {
        if (ctx.status === 404 && ctx.body == null && !ctx.headerSent) render(ctx, new NotFoundError());
        // The embedded provider renders its own error pages: its 503 (the database is down) says when
        // to come back too. (Apps' own 503s are theirs: nothing is added to them.)
        else if (ctx.status === 503 && !ctx.headerSent && fromEmbeddedProvider(ctx.path) && !ctx.response.get('Retry-After')) ctx.set('Retry-After', String(RETRY_AFTER_SECONDS));
      },
      (caught: unknown) => render(ctx, caught),
    );
}

/** The JSON an API caller gets for an error: `{ error, message, ...details }`. */
export function errorJson(err: AtriumError, message = err.message): Record<string, unknown> {
  return { error: err.code, message, ...err.details };
}

/**
 * The same answer for a raw upgrade request (websockets, socket.io), which never reaches Koa: a
 * plain HTTP response with the JSON body and the hardening headers, then the socket is closed.
 */
export function refuseRawUpgrade(socket: Duplex, status: number, reason: string, body = ''): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n${RAW_HARDENING}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

const RAW_HARDENING = HARDENING_HEADERS.map(([name, value]) => `${name}: ${value}\r\n`).join('');

function normalise(caught: unknown): AtriumError {
  if (caught instanceof AtriumError) return caught;
  const e = caught as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown; code?: unknown };
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    // Koa/http-errors client errors (e.g. a body parser's 413 or 415) are safe to pass on.
    const code = typeof e.code === 'string' && /^[a-z_]+$/i.test(e.code) ? e.code.toLowerCase() : 'bad_request';
    return new AtriumError(status, code, e.expose === true && typeof e.message === 'string' ? e.message : 'The request could not be processed.', { cause: caught });
  }
  // A body that says it is gzip or deflate and is not: the body parser passes zlib's error on without
  // a status, but it is the client's bytes that are broken, not the portal.
  if (typeof e?.code === 'string' && ZLIB_INPUT_ERRORS.has(e.code)) {
    return new AtriumError(400, 'bad_body', 'The request body could not be decompressed.', { cause: caught });
  }
  return new AtriumError(500, 'internal_error', 'Internal error', { cause: caught, expose: false });
}

/** What zlib says of compressed input it cannot read (corrupt, cut short, wrong format). */
const ZLIB_INPUT_ERRORS = new Set(['Z_DATA_ERROR', 'Z_BUF_ERROR', 'Z_NEED_DICT']);
