import Router from '@koa/router';
import type { AccessRequests } from '../../lib/access-requests.ts';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { UnauthenticatedError } from '../../lib/errors.ts';
import { decide } from '../../lib/gate.ts';
import { TIERS } from '../../lib/levels.ts';
import type { PortalState } from '../http/context.ts';
import type { AppTable, MountedApp } from '../apps/dispatch.ts';
import { signedInSession } from '../sessions/user.ts';
import type { Views } from '../http/views.ts';

const TIER_LABELS = { stable: 'Stable', ea: 'Early access', devel: 'In development' } as const;

/** The launcher (`/`) and the signed-in user as JSON (`/me`). */
export function pageRoutes(deps: {
  apps: AppTable;
  views: Views;
  requests: AccessRequests;
  /** With APP_ORIGIN, where each app lives; otherwise its path here. */
  hrefOf?: (app: MountedApp) => string;
}): Router<PortalState> {
  const { apps, views, requests } = deps;
  const hrefOf = deps.hrefOf ?? ((app: MountedApp) => `${app.prefix}/`);
  const router = new Router<PortalState>();

  router.get('/', async (ctx) => {
    const user = ctx.state.user;
    const recent = ctx.state.userId === undefined ? [] : await requests.forUser(ctx.state.userId, 3);
    const fortnight = Date.now() - 14 * 24 * 60 * 60 * 1000;
    const all = apps.list();
    const tiers = [...TIERS].reverse().map((tier) => ({
      name: tier,
      label: TIER_LABELS[tier],
      apps: all
        .filter((app) => app.tier === tier)
        .map((app) => ({ prefix: app.prefix, href: hrefOf(app), title: app.title, description: app.description, open: decide(user, app).allowed, needs: app.tier })),
    }));
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = views.render('launcher.njk', {
      title: 'Apps',
      user,
      tiers,
      csrf: signedInSession(ctx.session)?.csrf,
      requested: ctx.query.requested === '1',
      requests: recent.filter((r) => r.status === 'pending' || (r.decidedAt ?? 0) > fortnight),
    });
  });

  router.get('/me', (ctx) => {
    const user: AtriumUser | undefined = ctx.state.user;
    if (!user) throw new UnauthenticatedError();
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      sub: user.sub,
      email: user.email,
      name: user.name,
      picture: user.picture,
      level: user.level,
      groups: user.groups,
      profile: user.profile,
      csrf: signedInSession(ctx.session)?.csrf,
    };
  });

  return router;
}
