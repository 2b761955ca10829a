import type Koa from 'koa';

/**
 * The portal's cookie session (koa-session's `ctx.session`: the user's id, their provider tokens)
 * is the portal's, not an in-process app's: while the app's middleware runs, `ctx.session` reads
 * as undefined and assigning to it throws. Without this an app could read the visitor's tokens,
 * or write into the portal's session (and what it saw would differ by the way the request came:
 * the fast lane, which never loads koa-session, would show it an empty one). Apps keep their own
 * state in their own store, and learn who the visitor is from `ctx.state.user`.
 */
const HIDDEN: PropertyDescriptor = {
  configurable: true,
  get: () => undefined,
  set: () => {
    throw new TypeError("ctx.session is the portal's own session: an app keeps its state in its own store (who the visitor is: ctx.state.user)");
  },
};

export function withoutPortalSession(handler: Koa.Middleware): Koa.Middleware {
  return (ctx, next) => {
    const hide = () => Object.defineProperty(ctx, 'session', HIDDEN);
    // Deleting the own property shows the portal's again (koa-session's, on the context's prototype).
    const show = () => delete (ctx as { session?: unknown }).session;
    hide();
    // When the app hands on (`next()`), what follows is the portal's again, and hidden once it returns.
    const onward = () => {
      show();
      return next().finally(hide);
    };
    return Promise.resolve(handler(ctx, onward)).finally(show);
  };
}
