import type Koa from 'koa';
import type { AssertionSigner } from './assertions.ts';

export const ASSERTION_JWKS_PATH = '/.well-known/atrium/jwks.json';

/** The public key upstream apps verify `X-Atrium-Assertion` with. */
export function jwksRoute(assertions: AssertionSigner): Koa.Middleware {
  const body = JSON.stringify(assertions.jwks);
  return async (ctx, next) => {
    if (ctx.path !== ASSERTION_JWKS_PATH || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.set('Cache-Control', 'public, max-age=300');
    ctx.type = 'application/jwk-set+json';
    ctx.body = body;
  };
}
