/**
 * The portal's cookie session (koa-session's `ctx.session`: the user's id, their provider tokens)
 * is the portal's, not an in-process app's. While an app's middleware runs (apps/portal-session-hidden.ts
 * says when), `ctx.session` reads as undefined and assigning to it throws; before and after, it is
 * koa-session's as ever.
 *
 * The switch is a flag on the context read by one accessor on the Koa app's context prototype,
 * installed once: defining and deleting an own `session` property on every request instead turned
 * each context into a slow dictionary-mode object for the rest of its request (the delete was not
 * of the last property added), about a tenth of an in-process request (6 µs of 55, BENCHMARKS.md).
 */
const APP_RUNNING = Symbol('atrium.app-running');
type Flagged = { [APP_RUNNING]?: boolean };

const REFUSED = "ctx.session is the portal's own session: an app keeps its state in its own store (who the visitor is: ctx.state.user)";

/** Wraps koa-session's `session` accessor on a Koa app's context (call it right after koa-session is installed there). */
export function hideSessionFromApps(context: object): void {
  const own = Object.getOwnPropertyDescriptor(context, 'session');
  if (!own?.get || !own.set) throw new TypeError('hideSessionFromApps: koa-session is not installed on this context');
  const { get, set } = own;
  Object.defineProperty(context, 'session', {
    configurable: true,
    get(this: Flagged) {
      return this[APP_RUNNING] === true ? undefined : get.call(this);
    },
    set(this: Flagged, value: unknown) {
      if (this[APP_RUNNING] === true) throw new TypeError(REFUSED);
      set.call(this, value);
    },
  });
}

/** Says whether an app's middleware is what runs now on this context. */
export function setAppRunning(ctx: object, running: boolean): void {
  (ctx as Flagged)[APP_RUNNING] = running;
}
