import { randomBytes } from 'node:crypto';
import type Koa from 'koa';
import session from 'koa-session';
import type { SessionStore } from '../../lib/sessions/store.ts';

export const SESSION_COOKIE = 'atrium.sid';

type WithTokens = Record<string, unknown> & { tokens?: { issuedAt?: number }; tokenLevel?: unknown };

/**
 * A request that began before a token refresh saves its older copy of the session when it ends;
 * it must not put back tokens older than those another request already saved (a rotated refresh
 * token is one the provider will treat as stolen).
 */
function newestTokens(mine: Record<string, unknown>, stored: Record<string, unknown> | undefined): Record<string, unknown> {
  const current = stored as WithTokens | undefined;
  const ours = (mine as WithTokens).tokens?.issuedAt ?? 0;
  const theirs = current?.tokens?.issuedAt;
  return theirs !== undefined && theirs > ours ? { ...mine, tokens: current!.tokens, tokenLevel: current!.tokenLevel } : mine;
}
export const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/**
 * koa-session with the session kept server-side in `store`; the cookie carries only a random,
 * signed id. The session is saved only when it changes, so an ordinary request costs one (cached)
 * store read and no write.
 */
export function sessionMiddleware(app: Koa<any, any>, store: SessionStore, options: { maxAgeMs: number; secure: boolean }): Koa.Middleware {
  const middleware = session(
    {
      key: SESSION_COOKIE,
      maxAge: options.maxAgeMs,
      httpOnly: true,
      sameSite: 'lax',
      secure: options.secure,
      signed: true,
      overwrite: true,
      rolling: false,
      renew: false,
      autoCommit: true,
      genid: () => randomBytes(32).toString('base64url'),
      store: {
        async get(key: string) {
          // A well-signed cookie with a malformed id is still not worth a database round trip.
          return SESSION_ID.test(key) ? (await store.get(key))?.data : undefined;
        },
        async set(key: string, sess: Record<string, unknown>, maxAge: number, options?: { changed?: boolean }) {
          const index = { subject: typeof sess.sub === 'string' ? sess.sub : null, idpSid: typeof sess.idpSid === 'string' ? sess.idpSid : null };
          // A sign-in (regenerate) creates the session. Any other save only edits one that still
          // exists, so a request in flight when it ended (logout, revocation) cannot revive it.
          if (!options?.changed) return store.set(key, sess, maxAge, index);
          await store.update(key, newestTokens(sess, (await store.get(key))?.data), maxAge, index);
        },
        async destroy(key: string) {
          await store.destroy(key);
        },
      },
    },
    app,
  );
  // A proxied response is already on its way when koa-session saves; the store write still
  // happens, only re-sending the unchanged id cookie is skipped (it would throw ERR_HTTP_HEADERS_SENT).
  return (ctx, next) => {
    const cookies = ctx.cookies;
    const set = cookies.set.bind(cookies);
    cookies.set = ((...args: Parameters<typeof set>) => (ctx.res.headersSent ? cookies : set(...args))) as typeof cookies.set;
    return middleware(ctx, next);
  };
}
