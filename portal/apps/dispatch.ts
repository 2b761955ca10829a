import type Koa from 'koa';
import mount from 'koa-mount';
import type { LoadedApp } from '../../lib/apps/discovery.ts';
import { ForbiddenError, NotFoundError, UnauthenticatedError } from '../../lib/errors.ts';
import { decide } from '../../lib/gate.ts';
import { isBrowserNavigation, type PortalContext, type PortalMiddleware } from '../http/context.ts';

export interface MountedApp extends LoadedApp {
  /** The app's middleware, composed once: a koa-mount of the app, or the upstream proxy. */
  handler: Koa.Middleware;
}

/**
 * The table of apps, keyed `<tier>/<name>`. Dispatch is one map lookup whatever the number of apps;
 * replacing an entry swaps the app for new requests while requests in flight finish on the old one.
 */
export class AppTable {
  private readonly byKey = new Map<string, MountedApp>();

  set(app: LoadedApp, handler?: Koa.Middleware): MountedApp {
    if (!handler && !app.app) throw new TypeError(`${app.prefix} has neither a Koa app nor a handler`);
    const mounted: MountedApp = { ...app, handler: handler ?? mount(app.prefix, app.app as Koa) };
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
export function dispatch(table: AppTable, decorate?: (ctx: PortalContext) => void): PortalMiddleware {
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
      if (decision.status === 401) return Promise.reject(new UnauthenticatedError());
      return Promise.reject(new ForbiddenError(
        decision.reason === 'level'
          ? `“${app.title}” is in the ${app.tier} tier. Your level is ${user.level ?? 'none'}.`
          : `“${app.title}” is open only to members of ${app.groups.join(', ')}.`,
        { needed: app.tier, level: user.level, groups: decision.reason === 'groups' ? app.groups : [], app: app.prefix },
      ));
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
