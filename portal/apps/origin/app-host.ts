import { bodyParser } from '@koa/bodyparser';
import { appOrigin, type AppOriginPattern } from '../../../lib/apps/origins.ts';
import { BadRequestError, NotFoundError, UnauthenticatedError } from '../../../lib/errors.ts';
import { decide } from '../../../lib/gate.ts';
import { safeReturnTo } from '../../../lib/return-to.ts';
import { isBrowserNavigation, type PortalContext, type PortalMiddleware } from '../../http/context.ts';
import type { SessionIdentity } from '../../sessions/reader.ts';
import { accessRefusal, type AppTable } from '../dispatch.ts';
import { answerBarInfo, BAR_INFO_PATH } from '../../console/chrome.ts';
import { assets } from '../../http/assets.ts';
import { carriesTwice } from '../../sessions/cookie-session.ts';
import { stepUpLoginUrl } from '../../sessions/step-up.ts';
import { appCookieName, HANDOFF_STATE, HANDOFF_TTL_MS, handoffCookieName, newId, pendingCookieName, type AppOriginSessions } from './app-sessions.ts';

/** Paths on an app origin that the portal answers itself; an app never sees them. */
export const RESERVED_PREFIX = '/.well-known/atrium/';
const SESSION_PATH = `${RESERVED_PREFIX}session`;
const CONFIRM_PATH = `${RESERVED_PREFIX}confirm`;
const HANDOFF_COOKIE_MS = 10 * 60 * 1000;
const noMore = async () => {};

/**
 * Requests whose Host is an app origin (APP_ORIGIN) are served here and never reach the portal's
 * own routes: the app origin holds only the app, its socket.io and the hand-off endpoint. Without a
 * live app session a browser is sent through the portal origin (`/auth/handoff`) and comes back with
 * a single-use code posted to `/.well-known/atrium/session`; an API call gets 401.
 */
export function appHostServer(deps: {
  pattern: AppOriginPattern;
  table: AppTable;
  sessions: AppOriginSessions;
  portalOrigin: string;
  /** Idle touch and token refresh of the portal session behind the app session. */
  keepCurrent: (identity: SessionIdentity) => Promise<boolean>;
  decorate?: (ctx: PortalContext) => void;
}): PortalMiddleware {
  const { pattern, table, sessions, portalOrigin, keepCurrent, decorate } = deps;
  const secure = pattern.protocol === 'https:';
  const appCookie = appCookieName(secure);
  const handoffCookie = handoffCookieName(secure);
  const pendingCookie = pendingCookieName(secure);
  const cookieOptions = { httpOnly: true, sameSite: 'lax' as const, secure, signed: true, path: '/', overwrite: true };
  const form = bodyParser({ enableTypes: ['form'], formLimit: '2kb' });

  const readCookie = (ctx: PortalContext, name: string): string | undefined => {
    if (carriesTwice(ctx.headers.cookie, name)) return undefined;
    return ctx.cookies.get(name, { signed: true }) || undefined;
  };

  /** Sends a browser to the portal for a code; an API call is told to sign in. */
  const signIn = (ctx: PortalContext, key: string): void => {
    if (!isBrowserNavigation(ctx)) throw new UnauthenticatedError();
    // Several tabs may be on their way at once: they share one state rather than overwrite it.
    const existing = readCookie(ctx, handoffCookie);
    const state = existing && HANDOFF_STATE.test(existing) ? existing : newId();
    if (state !== existing) ctx.cookies.set(handoffCookie, state, { ...cookieOptions, maxAge: HANDOFF_COOKIE_MS });
    ctx.set('Cache-Control', 'no-store');
    const query = new URLSearchParams({ app: key, state, returnTo: safeReturnTo(ctx.url) });
    ctx.redirect(`${portalOrigin}/auth/handoff?${query}`);
  };

  const expired = () => new BadRequestError('This sign-in link has expired or was already used. Open the app again to sign in.', { code: 'handoff_invalid' });

  /** The code, posted from the portal: a pending session, confirmed by the next (same-site) request. */
  const redeem = async (ctx: PortalContext, key: string): Promise<void> => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (ctx.method !== 'POST') throw new NotFoundError();
    await form(ctx, async () => {});
    const body = (ctx.request as { body?: Record<string, unknown> }).body;
    const code = typeof body?.code === 'string' ? body.code : '';
    const pendingId = await sessions.redeem(code, key);
    if (!pendingId) throw expired();
    ctx.cookies.set(pendingCookie, pendingId, { ...cookieOptions, maxAge: HANDOFF_TTL_MS });
    ctx.status = 303;
    ctx.redirect(CONFIRM_PATH);
  };

  /** The browser that asked (its state cookie) turns the pending session into this origin's own cookie. */
  const confirm = async (ctx: PortalContext, key: string): Promise<void> => {
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Referrer-Policy', 'no-referrer');
    if (ctx.method !== 'GET') throw new NotFoundError();
    const confirmed = await sessions.confirm(readCookie(ctx, pendingCookie), key, readCookie(ctx, handoffCookie));
    ctx.cookies.set(pendingCookie, '', { ...cookieOptions, maxAge: 0 });
    if (!confirmed) throw expired();
    ctx.cookies.set(handoffCookie, '', { ...cookieOptions, maxAge: 0 });
    ctx.cookies.set(appCookie, confirmed.appSessionId, cookieOptions);
    ctx.redirect(safeReturnTo(confirmed.returnTo));
  };

  const portalAssets = assets();
  /** The bar's user: the one the gate would let into this app now, else nobody. */
  const barUser = async (ctx: PortalContext, tier: string, name: string, key: string) => {
    const app = table.get(tier, name);
    const identity = app ? await sessions.identify(readCookie(ctx, appCookie), key) : undefined;
    if (!app || !identity || !(await keepCurrent(identity))) return undefined;
    return decide(identity.user, app).allowed ? identity.user : undefined;
  };

  return async (ctx, next) => {
    // The Host guard (known-hosts.ts, above) read the host once and named the app, if any: the
    // same answer here, never a second reading that could disagree with it (as Koa's `ctx.host` did).
    const target = ctx.state.appHost;
    if (!target) return next();
    const key = `${target.tier}/${target.name}`;
    // Also tells the error handler that this page is the app's: no portal token on it.
    ctx.state.appOrigin = appOrigin(pattern, target.tier, target.name);
    if (ctx.path.startsWith(RESERVED_PREFIX)) {
      // The code never reaches a log line: drop the query from what the error handler would log.
      ctx.originalUrl = ctx.request.originalUrl = ctx.path;
      if (ctx.path === SESSION_PATH) return redeem(ctx, key);
      if (ctx.path === CONFIRM_PATH) return confirm(ctx, key);
      // The portal bar (console/chrome.ts): its data from this origin's own session, its script and styles.
      if (ctx.path === BAR_INFO_PATH) return answerBarInfo(ctx, await barUser(ctx, target.tier, target.name, key), portalOrigin);
      return portalAssets(ctx, async () => {
        throw new NotFoundError();
      });
    }
    const app = table.get(target.tier, target.name);
    // Identity first: an anonymous visitor learns nothing about which apps exist.
    const identity = app ? await sessions.identify(readCookie(ctx, appCookie), key) : undefined;
    if (!app || !identity || !(await keepCurrent(identity))) return signIn(ctx, key);
    const decision = decide(identity.user, app);
    if (!decision.allowed) {
      // An app that needs a second factor, and a sign-in without one: a fresh sign-in at the portal
      // asking for it, which comes back here through the portal's own link to this app.
      if (decision.status === 403 && decision.reason === 'mfa' && isBrowserNavigation(ctx)) {
        ctx.redirect(`${portalOrigin}${stepUpLoginUrl(`${app.prefix}${ctx.url}`)}`);
        return;
      }
      throw accessRefusal(identity.user, app, decision, portalOrigin);
    }
    ctx.state.user = identity.user;
    ctx.state.userId = identity.session.uid;
    decorate?.(ctx);
    return app.originHandler(ctx, noMore);
  };
}
