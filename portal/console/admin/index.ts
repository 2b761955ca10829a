import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { ForbiddenError, UnauthenticatedError } from '../../../lib/errors.ts';
import { isBrowserNavigation, type PortalState } from '../../http/context.ts';
import { assertCsrf } from '../../http/csrf.ts';
import { appPages } from './apps.ts';
import { auditPages } from './audit.ts';
import { groupPages } from './groups.ts';
import type { AdminDeps } from './kit.ts';
import { otherPages } from './misc.ts';
import { userPages } from './users.ts';
import { factorPages } from './factors.ts';

export type { AdminDeps } from './kit.ts';

/**
 * The admin console under /admin: level admin only, every form CSRF-protected, every change made
 * through DirectoryAdmin (and so audited).
 */
export function adminRoutes(deps: AdminDeps): Router<PortalState> {
  const router = new Router<PortalState>({ prefix: '/admin' });
  const form = bodyParser({ enableTypes: ['form', 'json'], formLimit: '32kb', jsonLimit: '32kb' });

  router.use(async (ctx, next) => {
    const user = ctx.state.user;
    if (!user) {
      if (isBrowserNavigation(ctx)) return ctx.redirect(`/login?returnTo=${encodeURIComponent(ctx.url)}`);
      throw new UnauthenticatedError();
    }
    if (user.level !== 'admin') throw new ForbiddenError('The admin console is for administrators.', { needed: 'admin', level: user.level });
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') {
      await form(ctx, async () => undefined);
      assertCsrf(ctx, deps.publicOrigin);
    }
    return next();
  });

  router.get('/', (ctx) => ctx.redirect('/admin/users'));
  userPages(router, deps);
  groupPages(router, deps);
  appPages(router, deps);
  auditPages(router, deps);
  otherPages(router, deps);
  factorPages(router, deps);
  return router;
}
