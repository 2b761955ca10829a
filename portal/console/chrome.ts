import type Router from '@koa/router';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { UnauthenticatedError } from '../../lib/errors.ts';
import type { PortalContext, PortalState } from '../http/context.ts';
import type { Views } from '../http/views.ts';
import { signedInSession } from '../sessions/user.ts';

/**
 * The portal bar's side of the portal (portal/http/assets/atrium-bar.js is the bar itself): what the
 * bar shows, answered at the same path on the portal's origin and on every app origin, and the
 * sign-out confirmation page the bar links to.
 */
export const BAR_INFO_PATH = '/.well-known/atrium/bar.json';
export const SIGN_OUT_PATH = '/sign-out';

const LEVEL_LABELS = { stable: 'Stable', ea: 'Early access', devel: 'In development', admin: 'Administrator' } as const;

/** What the bar shows: no token, no session id, nothing an app does not already know of its user. */
export interface BarInfo {
  name: string;
  email: string | null;
  level: string | null;
  levelLabel: string;
  launcher: string;
  signOut: string;
}

/** `portalBase` is '' on the portal's own origin and the portal's origin on an app origin. */
export function barInfo(user: AtriumUser, portalBase: string): BarInfo {
  return {
    name: user.name || user.email || user.sub,
    email: user.email,
    level: user.level,
    levelLabel: user.level ? LEVEL_LABELS[user.level] : 'No level',
    launcher: `${portalBase}/`,
    signOut: `${portalBase}${SIGN_OUT_PATH}`,
  };
}

/** Answers the bar's question for the signed-in user (401 JSON when there is none). */
export function answerBarInfo(ctx: PortalContext, user: AtriumUser | undefined, portalBase: string): void {
  ctx.set('Cache-Control', 'no-store');
  ctx.set('Vary', 'Cookie');
  if (!user) throw new UnauthenticatedError();
  ctx.type = 'json';
  ctx.body = barInfo(user, portalBase);
}

/** The portal's own routes for the bar: its data on the portal origin, and the sign-out confirmation. */
export function chromeRoutes(router: Router<PortalState>, deps: { views: Views }): void {
  router.get(BAR_INFO_PATH, (ctx) => answerBarInfo(ctx, ctx.state.user, ''));

  // A link may lead here (the bar on any origin); only the form's POST, with the token, signs out.
  router.get(SIGN_OUT_PATH, (ctx) => {
    const session = signedInSession(ctx.session);
    if (!ctx.state.user || !session) return ctx.redirect('/signed-out');
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = deps.views.render('sign-out.njk', { title: 'Sign out', user: ctx.state.user, csrf: session.csrf });
  });
}
