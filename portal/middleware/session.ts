import { randomBytes } from 'node:crypto';
import type Koa from 'koa';
import session from 'koa-session';
import type { SessionStore } from '../../lib/sessions/store.ts';

export const SESSION_COOKIE = 'atrium.sid';
export const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/**
 * koa-session with the session kept server-side in `store`; the cookie carries only a random,
 * signed id. The session is saved only when it changes, so an ordinary request costs one (cached)
 * store read and no write.
 */
export function sessionMiddleware(app: Koa<any, any>, store: SessionStore, options: { maxAgeMs: number; secure: boolean }) {
  return session(
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
        async set(key: string, sess: Record<string, unknown>, maxAge: number) {
          await store.set(key, sess, maxAge, {
            subject: typeof sess.sub === 'string' ? sess.sub : null,
            idpSid: typeof sess.idpSid === 'string' ? sess.idpSid : null,
          });
        },
        async destroy(key: string) {
          await store.destroy(key);
        },
      },
    },
    app,
  );
}
