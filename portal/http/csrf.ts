import { randomBytes, timingSafeEqual } from 'node:crypto';
import { ForbiddenError } from '../../lib/errors.ts';
import type { PortalContext } from './context.ts';
import { signedInSession } from '../sessions/user.ts';

export function newCsrfToken(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * Refuses a state-changing form unless it carries the session's CSRF token (field `_csrf` or header
 * `X-CSRF-Token`) and, when the browser says where it came from, that origin is ours.
 */
export function assertCsrf(ctx: PortalContext, publicOrigin: string): void {
  const origin = ctx.get('Origin');
  if (origin && origin !== publicOrigin) throw new ForbiddenError('This form was sent from another site.', {}, 'csrf_origin');
  const expected = signedInSession(ctx.session)?.csrf;
  const body = (ctx.request as { body?: unknown }).body as Record<string, unknown> | undefined;
  const given = typeof body?._csrf === 'string' ? body._csrf : ctx.get('X-CSRF-Token');
  if (!expected || !given || !safeEqual(expected, given)) {
    throw new ForbiddenError('This form has expired. Reload the page and try again.', {}, 'csrf_failed');
  }
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
