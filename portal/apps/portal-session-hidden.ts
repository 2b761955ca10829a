import type Koa from 'koa';
import { setAppRunning } from '../sessions/hidden-from-apps.ts';

/**
 * The portal's cookie session is the portal's, not an in-process app's: while the app's middleware
 * runs, `ctx.session` reads as undefined and assigning to it throws (sessions/hidden-from-apps.ts,
 * installed with koa-session). Without this an app could read the visitor's tokens, or write into
 * the portal's session (and what it saw would differ by the way the request came: the fast lane,
 * which never loads koa-session, would show it an empty one). Apps keep their own state in their
 * own store, and learn who the visitor is from `ctx.state.user`.
 */
export function withoutPortalSession(handler: Koa.Middleware): Koa.Middleware {
  return (ctx, next) => {
    // When the app hands on (`next()`), what follows is the portal's again, and the app's once it returns.
    const onward = () => {
      setAppRunning(ctx, false);
      return once(next(), ctx, true);
    };
    setAppRunning(ctx, true);
    let running: unknown;
    try {
      running = handler(ctx, onward);
    } catch (err) {
      setAppRunning(ctx, false);
      throw err;
    }
    return once(Promise.resolve(running), ctx, false);
  };
}

/** `settled`, after which the app is (or is not) what runs on `ctx`, whether it fulfilled or rejected. */
function once<T>(settled: Promise<T>, ctx: object, appRunning: boolean): Promise<T> {
  return settled.then(
    (value) => {
      setAppRunning(ctx, appRunning);
      return value;
    },
    (err: unknown) => {
      setAppRunning(ctx, appRunning);
      throw err;
    },
  );
}
