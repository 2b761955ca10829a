import als from 'oidc-provider/lib/helpers/als.js';
import type Koa from 'koa';

/**
 * On Node 20, oidc-provider's AsyncLocalStorage switches V8's promise hooks on for the whole process
 * the first time it runs — and they stay on, taxing every promise of every request to every app
 * (measured: about 5 µs of a ~40 µs request; see BENCHMARKS.md). The store is only read by a
 * feature the portal does not enable (client ID metadata documents), so once no provider request is
 * in flight the portal disables it again; the provider's next request re-enables it. Node 22.?+/24
 * (AsyncContextFrame) make this unnecessary.
 */
export function withQuietAsyncHooks(prefix: string, middleware: Koa.Middleware): Koa.Middleware {
  let inFlight = 0;
  return async (ctx, next) => {
    if (!ctx.path.startsWith(prefix)) return next();
    inFlight += 1;
    try {
      return await middleware(ctx, next);
    } finally {
      inFlight -= 1;
      if (inFlight === 0) als.disable();
    }
  };
}
