import { bodyParser } from '@koa/bodyparser';
import type Router from '@koa/router';
import type { DirectoryAdmin } from '../../lib/directory/admin.ts';
import { MIN_PASSWORD_LENGTH } from '../../lib/directory/passwords.ts';
import { AtriumError } from '../../lib/errors.ts';
import type { PortalContext, PortalState } from '../http/context.ts';
import type { Views } from '../http/views.ts';

/**
 * Password reset links (`/reset/<token>`, issued by an admin: console or `users reset-link`) and the
 * page the sign-in form's "Forgot password?" leads to (`/reset`). The token in the path is the
 * secret that authorises the form, so it needs no session; it is kept out of logs (the request's
 * URL as logged is redacted) and out of referrers.
 */
export function resetRoutes(router: Router<PortalState>, deps: { admin: DirectoryAdmin; views: Views }): void {
  const { admin, views } = deps;
  const form = bodyParser({ enableTypes: ['form'], formLimit: '8kb' });

  const page = (ctx: PortalContext, data: Record<string, unknown>) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Referrer-Policy', 'no-referrer');
    ctx.type = 'html';
    ctx.body = views.render('idp-reset.njk', { title: 'Reset your password', minLength: MIN_PASSWORD_LENGTH, ...data });
  };

  /** Whatever the error handler logs about this request names no token. */
  const redact = async (ctx: PortalContext, next: () => Promise<unknown>) => {
    ctx.originalUrl = '/reset/[token]';
    await next();
  };

  /** A refusal (dead link, weak password) is drawn on the page; anything else goes to the error handler. */
  const refusal = (err: unknown): AtriumError | undefined => (err instanceof AtriumError && err.status < 500 ? err : undefined);

  router.get('/reset', (ctx) => page(ctx, { title: 'Forgot your password?', forgot: true }));

  router.get('/reset/:token', redact, async (ctx) => {
    const token = ctx.params.token ?? '';
    try {
      const { user } = await admin.resetLinkAccount(token);
      page(ctx, { action: `/reset/${token}`, email: user.email });
    } catch (err) {
      const refused = refusal(err);
      if (!refused) throw err;
      ctx.status = refused.status;
      page(ctx, { dead: true, error: refused.message });
    }
  });

  router.post('/reset/:token', redact, form, async (ctx) => {
    const token = ctx.params.token ?? '';
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const text = (name: string) => (typeof body[name] === 'string' ? (body[name] as string) : '');
    try {
      await admin.resetPassword(token, { next: text('password'), confirm: text('confirm') });
      page(ctx, { done: true });
    } catch (err) {
      const refused = refusal(err);
      if (!refused) throw err;
      ctx.status = refused.status;
      if (refused.code === 'reset_link_invalid') return page(ctx, { dead: true, error: refused.message });
      const { user } = await admin.resetLinkAccount(token);
      page(ctx, { action: `/reset/${token}`, email: user.email, error: refused.message });
    }
  });
}
