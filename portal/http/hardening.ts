import { assertSafePath } from '../../lib/paths.ts';
import type { PortalMiddleware } from './context.ts';

/**
 * First line of every request: hostile paths stop here (see lib/paths.ts), responses get the
 * headers that make browsers careful, and when the public URL is https (TLS ends at a proxy in
 * front) cookies are marked Secure even though the hop to us is plain http.
 */
export function hardening(options: { secureCookies: boolean }): PortalMiddleware {
  // Not `async`: a pass-through returning next()'s promise spares a promise per request; a throw
  // here still reaches the error handler, as koa-compose turns it into a rejection.
  return (ctx, next) => {
    ctx.set('X-Content-Type-Options', 'nosniff');
    ctx.set('Referrer-Policy', 'same-origin');
    ctx.set('X-Frame-Options', 'SAMEORIGIN');
    assertSafePath(ctx.path);
    if (options.secureCookies) ctx.cookies.secure = true;
    return next();
  };
}
