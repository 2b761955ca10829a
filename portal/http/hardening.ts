import { assertSafePath } from '../../lib/paths.ts';
import type { PortalMiddleware } from './context.ts';

/**
 * The headers that make browsers careful: no content sniffing, no portal URL leaking to other
 * sites, no framing by another origin (the 403 page's access-request form, the admin console).
 * Every response the portal writes carries them: set here for the pipeline, set again by the
 * error renderer (which starts its answer from a clean slate), and on raw upgrade refusals.
 */
export const HARDENING_HEADERS: readonly (readonly [name: string, value: string])[] = Object.freeze([
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'same-origin'],
  ['X-Frame-Options', 'SAMEORIGIN'],
] as const);

/**
 * First line of every request: hostile paths stop here (see lib/paths.ts), responses get the
 * hardening headers, and when the public URL is https (TLS ends at a proxy in front) cookies are
 * marked Secure even though the hop to us is plain http.
 */
export function hardening(options: { secureCookies: boolean }): PortalMiddleware {
  // Not `async`: a pass-through returning next()'s promise spares a promise per request; a throw
  // here still reaches the error handler, as koa-compose turns it into a rejection.
  return (ctx, next) => {
    // Straight onto the response: nothing has been written yet, so Koa's checks in ctx.set have nothing to catch.
    const res = ctx.res;
    for (const [name, value] of HARDENING_HEADERS) res.setHeader(name, value);
    assertSafePath(ctx.path);
    if (options.secureCookies) ctx.cookies.secure = true;
    return next();
  };
}
