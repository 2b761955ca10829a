import type Koa from 'koa';
import mount from 'koa-mount';
import type { LoadedApp } from '../../lib/apps/discovery.ts';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { ForbiddenError, NotFoundError, UnauthenticatedError, type AtriumError } from '../../lib/errors.ts';
import { decide, type GateDecision } from '../../lib/gate.ts';
import type { Logger } from '../../lib/log.ts';
import { isBrowserNavigation, type PortalContext, type PortalMiddleware } from '../http/context.ts';
import { mountUnder } from './mount-app.ts';
import { withoutPortalSession } from './portal-session-hidden.ts';
import type { UpstreamForward } from './proxy.ts';
import { ResponseRules } from './response-rules.ts';
import { stepUpLoginUrl } from '../sessions/step-up.ts';

export interface MountedApp extends LoadedApp {
  /** The app's middleware, composed once: the app mounted under its prefix (mount-app.ts), or the upstream proxy. */
  handler: Koa.Middleware;
  /** The same on the app's own origin (APP_ORIGIN), where the app lives at `/` rather than its prefix. */
  originHandler: Koa.Middleware;
  /** An upstream app's forwarder without Koa, which `handler` wraps (the fast lane calls it straight). */
  forward?: UpstreamForward;
}

/**
 * The table of apps, keyed `<tier>/<name>`. Dispatch is one map lookup whatever the number of apps;
 * replacing an entry swaps the app for new requests while requests in flight finish on the old one.
 */
export class AppTable {
  private readonly byKey = new Map<string, MountedApp>();
  /** What an in-process app's response may not do (see response-rules.ts); upstreams are filtered in the proxy. */
  private readonly rules: ResponseRules;

  constructor(log?: Logger) {
    this.rules = new ResponseRules(log);
  }

  set(app: LoadedApp, handler?: Koa.Middleware, forward?: UpstreamForward): MountedApp {
    if (!handler && !app.app) throw new TypeError(`${app.prefix} has neither a Koa app nor a handler`);
    // An upstream's handler serves both forms (the proxy reads ctx.state.appOrigin); a Koa app is mounted twice.
    // Either way, an in-process app's response headers pass the rules, wrapped here once per app.
    const { forward: _earlier, ...loaded } = app as LoadedApp & { forward?: UpstreamForward };
    const mounted: MountedApp = {
      ...loaded,
      handler: handler ?? this.rules.guard(app.prefix, withoutPortalSession(mountUnder(app.prefix, app.app as Koa))),
      originHandler: handler ?? this.rules.guard(app.prefix, withoutPortalSession(mount(app.app as Koa))),
      // Only what is given now: an entry passed back in never keeps an earlier load's forwarder.
      ...(forward ? { forward } : {}),
    };
    this.byKey.set(`${app.tier}/${app.name}`, mounted);
    return mounted;
  }

  delete(tier: string, name: string): boolean {
    return this.byKey.delete(`${tier}/${name}`);
  }

  get(tier: string, name: string): MountedApp | undefined {
    return this.byKey.get(`${tier}/${name}`);
  }

  list(): MountedApp[] {
    return [...this.byKey.values()].sort((a, b) => a.prefix.localeCompare(b.prefix));
  }
}

const APPS_PREFIX = '/apps/';

/**
 * Everything under `/apps/` goes through here: sign-in first (so anonymous visitors learn nothing
 * about which apps exist), then the lookup, then the gate, then the app. The path has already passed
 * assertSafePath, so its segments are exactly what they look like.
 */
export function dispatch(table: AppTable, decorate?: (ctx: PortalContext) => void, appOriginOf?: (app: MountedApp) => string): PortalMiddleware {
  // Not `async`: it is on the hot path, and every extra promise counts.
  return (ctx, next) => {
    const path = ctx.path;
    if (!path.startsWith(APPS_PREFIX)) return next();

    const user = ctx.state.user;
    if (!user) {
      if (isBrowserNavigation(ctx)) {
        ctx.redirect(`/login?returnTo=${encodeURIComponent(ctx.url)}`);
        return Promise.resolve();
      }
      return Promise.reject(new UnauthenticatedError());
    }

    const tierEnd = path.indexOf('/', APPS_PREFIX.length);
    const nameEnd = tierEnd < 0 ? -1 : path.indexOf('/', tierEnd + 1);
    const tier = tierEnd < 0 ? '' : path.slice(APPS_PREFIX.length, tierEnd);
    const name = tierEnd < 0 ? '' : path.slice(tierEnd + 1, nameEnd < 0 ? undefined : nameEnd);
    const app = tier && name ? table.get(tier, name) : undefined;
    if (!app) return Promise.reject(new NotFoundError('There is no app at this address.'));

    const decision = decide(user, app);
    if (!decision.allowed) {
      // A sign-in without a second factor, for an app that needs one: sign in again, asking for it.
      if (decision.status === 403 && decision.reason === 'mfa' && isBrowserNavigation(ctx)) {
        ctx.redirect(stepUpLoginUrl(ctx.url));
        return Promise.resolve();
      }
      return Promise.reject(accessRefusal(user, app, decision));
    }

    if (appOriginOf) {
      // App origins: the portal's origin serves no app content. Saved links keep working: the
      // same path and query, on the app's own origin.
      const rest = nameEnd < 0 ? '/' : path.slice(nameEnd);
      ctx.redirect(`${appOriginOf(app)}${rest}${ctx.querystring ? `?${ctx.querystring}` : ''}`);
      return Promise.resolve();
    }

    if (nameEnd < 0) {
      // `/apps/<tier>/<name>` → `/apps/<tier>/<name>/`, keeping the query.
      ctx.redirect(`${app.prefix}/${ctx.querystring ? `?${ctx.querystring}` : ''}`);
      return Promise.resolve();
    }
    decorate?.(ctx);
    return app.handler(ctx, next);
  };
}

/** The error for a refused gate decision: 401 when the gate wants a sign-in, else a 403 naming what is needed. */
export function accessRefusal(user: AtriumUser, app: MountedApp, decision: Exclude<GateDecision, { allowed: true }>, portalOrigin = ''): AtriumError {
  if (decision.status === 401) return new UnauthenticatedError();
  if (decision.reason === 'mfa') {
    return new ForbiddenError(
      `“${app.title}” needs a sign-in with a second factor (an authenticator app or a passkey).`,
      // The sign-in is the portal's: on an app origin (portalOrigin given), the link says where that is.
      { app: app.prefix, secondFactor: true, signIn: `${portalOrigin}${stepUpLoginUrl(`${app.prefix}/`)}` },
      'second_factor_required',
    );
  }
  return new ForbiddenError(
    decision.reason === 'level'
      ? `“${app.title}” is in the ${app.tier} tier. Your level is ${user.level ?? 'none'}.`
      : `“${app.title}” is open only to members of ${app.groups.join(', ')}.`,
    { needed: app.tier, level: user.level, groups: decision.reason === 'groups' ? app.groups : [], app: app.prefix },
  );
}
