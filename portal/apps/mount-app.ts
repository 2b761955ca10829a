import type Koa from 'koa';
import mount from 'koa-mount';

/**
 * An in-process app under its prefix, as koa-mount mounts it (the app sees paths without the
 * prefix, `ctx.mountPath` is the prefix, and the app's `next()` continues with the original path),
 * but the URL is swapped on the request itself: koa-mount goes through Koa's `ctx.path` setter,
 * which parses the URL and formats it again, and does so twice per request (in and out) — a
 * twentieth of the in-process hot path (BENCHMARKS.md). The query is kept as it came.
 */
export function mountUnder(prefix: string, app: Koa): Koa.Middleware {
  // koa-mount at `/` is the app's middleware composed, and nothing else.
  const downstream = mount(app) as Koa.Middleware;
  return (ctx, upstream) => {
    const req = ctx.req;
    const url = req.url ?? '/';
    const path = ctx.path;
    // `/apps/x/yz` is not under `/apps/x/y`.
    if (!path.startsWith(prefix) || (path.length > prefix.length && path.charCodeAt(prefix.length) !== SLASH)) return upstream();
    const rest = path.length === prefix.length ? '/' : path.slice(prefix.length);
    const query = url.indexOf('?');
    const inner = query < 0 ? rest : rest + url.slice(query);
    ctx.mountPath = prefix;
    req.url = inner;
    const restore = () => {
      req.url = url;
    };
    const outer = () => {
      restore();
      return upstream().then(
        () => {
          req.url = inner;
        },
        (err: unknown) => {
          req.url = inner;
          throw err;
        },
      );
    };
    return downstream(ctx, outer).then(restore, (err: unknown) => {
      restore();
      throw err;
    });
  };
}

const SLASH = 0x2f;
