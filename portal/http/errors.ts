import type { Logger } from '../../lib/log.ts';
import { AtriumError, NotFoundError } from '../../lib/errors.ts';
import { prefersHtml, type PortalMiddleware } from './context.ts';
import type { Views } from './views.ts';

const HEADINGS: Record<number, string> = {
  400: 'That request cannot be used',
  401: 'Please sign in',
  403: 'You do not have access',
  404: 'Not found',
  413: 'Too large',
  429: 'Slow down',
  502: 'A service did not answer',
  503: 'Not ready yet',
};

/**
 * The one place errors become responses: AtriumError (and Koa's http errors) keep their status and,
 * when `expose` allows, their message; anything else is a 500 whose details go only to the log.
 * Browsers get a page, API callers JSON `{ error, message, ...details }`.
 */
export function errorHandler(views: Views, log: Logger, portalOrigin = ''): PortalMiddleware {
  const render = (ctx: Parameters<PortalMiddleware>[0], caught: unknown): void => {
    const err = normalise(caught);
    if (err.status === 500) log.error({ err: caught, method: ctx.method, url: ctx.originalUrl }, 'request failed');
    else if (err.status > 500) log.warn({ err: err.message, code: err.code, method: ctx.method, url: ctx.originalUrl }, 'dependency failed');
    if (ctx.headerSent || !ctx.writable) return;
    const headers = (caught as { headers?: Record<string, string> }).headers;
    // Keep cookies being cleared (e.g. a bad session) but nothing else the failed handler set.
    const setCookie = ctx.response.get('Set-Cookie');
    ctx.res.getHeaderNames().forEach((name) => ctx.res.removeHeader(name));
    if (setCookie) ctx.set('Set-Cookie', setCookie);
    if (headers && err.status < 500) for (const [k, v] of Object.entries(headers)) ctx.set(k, v);
    ctx.set('Cache-Control', 'no-store');
    ctx.status = err.status;
    const message = err.expose ? err.message : 'Something went wrong on our side. It has been logged.';
    if (prefersHtml(ctx)) {
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
      });
    } else {
      ctx.body = { error: err.code, message, ...err.details };
    }
  };
  // Promise-chained rather than `async`: this wraps every request, and each extra promise counts.
  return (ctx, next) =>
    next().then(
      () => {
        if (ctx.status === 404 && ctx.body == null && !ctx.headerSent) render(ctx, new NotFoundError());
      },
      (caught: unknown) => render(ctx, caught),
    );
}

function normalise(caught: unknown): AtriumError {
  if (caught instanceof AtriumError) return caught;
  const e = caught as { status?: unknown; statusCode?: unknown; expose?: unknown; message?: unknown; code?: unknown };
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    // Koa/http-errors client errors (e.g. a body parser's 413 or 415) are safe to pass on.
    const code = typeof e.code === 'string' && /^[a-z_]+$/i.test(e.code) ? e.code.toLowerCase() : 'bad_request';
    return new AtriumError(status, code, e.expose === true && typeof e.message === 'string' ? e.message : 'The request could not be processed.', { cause: caught });
  }
  return new AtriumError(500, 'internal_error', 'Internal error', { cause: caught, expose: false });
}
