import { randomBytes } from 'node:crypto';
import type Koa from 'koa';
import session from 'koa-session';
import type { SessionStore } from '../../lib/sessions/store.ts';
import { hideSessionFromApps } from './hidden-from-apps.ts';

/**
 * The session cookie's name. Over https it carries the `__Host-` prefix: a browser then keeps it
 * only if it is Secure, has Path=/ and no Domain, so neither a sibling on another port or subdomain
 * nor a page script can plant a copy with a narrower Path or a wider Domain that shadows ours (its
 * signature cookie is `<name>.sig`, prefixed alike). Over plain http the prefix is refused by
 * browsers, and the duplicate check below is what stops a planted copy.
 */
export function sessionCookieName(secure: boolean): string {
  return hostOnlyCookieName('atrium.sid', secure);
}

/** A portal cookie's name on a host: `__Host-` prefixed over https (Secure, Path=/, no Domain), plain over http. */
export function hostOnlyCookieName(base: string, secure: boolean): string {
  return secure ? `__Host-${base}` : base;
}

/** The name each Koa app's session middleware was installed with, for readers outside the pipeline. */
const installedNames = new WeakMap<Koa<any, any>, string>();

export function sessionCookieOf(app: Koa<any, any>): string {
  const name = installedNames.get(app);
  if (name === undefined) throw new Error('sessionMiddleware() has not been installed on this Koa app');
  return name;
}

/**
 * Whether a Cookie header carries `name` more than once. A browser sends every cookie whose Path
 * matches, longest Path first, so a copy planted with a narrower Path (by a page on another port
 * of the same host, or a script) comes before ours and is the one a plain read returns: the
 * visitor would be in the planter's account. With two, the request is treated as signed out.
 * Boundaries as the cookies module matches them: start of header, or `;` then spaces. On the
 * usual header this is two indexOf calls and no split.
 */
export function carriesTwice(header: string | undefined, name: string): boolean {
  if (!header) return false;
  const needle = `${name}=`;
  let seen = 0;
  for (let at = header.indexOf(needle); at >= 0; at = header.indexOf(needle, at + needle.length)) {
    let i = at - 1;
    while (i >= 0 && header.charCodeAt(i) === 0x20) i--;
    if ((i < 0 || header.charCodeAt(i) === 0x3b) && ++seen === 2) return true;
  }
  return false;
}

/** Bounds the expiring Set-Cookie lines for a planted copy (see expirePlanted). */
const MAX_PLANTED_PATHS = 16;

/**
 * Every Path narrower than `/` that a cookie sent with a request for `path` can have: each prefix
 * ending before a `/`, with and without that `/`, and the path itself (RFC 6265 §5.1.4).
 */
function narrowerPaths(path: string): string[] {
  const paths = new Set<string>();
  for (let i = path.indexOf('/', 1); i > 0 && paths.size < MAX_PLANTED_PATHS; i = path.indexOf('/', i + 1)) {
    paths.add(path.slice(0, i));
    paths.add(path.slice(0, i + 1));
  }
  if (path.length > 1 && paths.size < MAX_PLANTED_PATHS) paths.add(path);
  return [...paths];
}

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
  const name = sessionCookieName(options.secure);
  installedNames.set(app, name);
  const cookie = { maxAge: options.maxAgeMs, httpOnly: true, sameSite: 'lax' as const, secure: options.secure, signed: true, overwrite: true };
  /**
   * A planted copy comes back on every request under its Path (a navigation there would go to
   * /login and back for ever): the answer expires it at each Path it can have. Never at `/`, which
   * is ours. A `__Host-` cookie cannot have another Path, so there is nothing to expire then.
   */
  const expirePlanted = (ctx: Koa.Context): void => {
    if (name.startsWith('__Host-')) return;
    const { maxAge: _, ...expired } = { ...cookie, overwrite: false };
    for (const path of narrowerPaths(ctx.path)) ctx.cookies.set(name, '', { ...expired, path });
  };
  const middleware = session(
    {
      key: name,
      ...cookie,
      // koa-session reads and writes the id cookie through these, as it would itself, except that a
      // request carrying the cookie twice has no session.
      externalKey: {
        get(ctx) {
          if (!carriesTwice(ctx.headers.cookie, name)) return ctx.cookies.get(name, { signed: true });
          expirePlanted(ctx);
          return undefined;
        },
        set(ctx, id: string) {
          ctx.cookies.set(name, id, cookie);
        },
      },
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
  // In-process apps never see it (apps/portal-session-hidden.ts says when one runs).
  hideSessionFromApps(app.context);
  // A proxied response is already on its way when koa-session saves; the store write still
  // happens, only re-sending the unchanged id cookie is skipped (it would throw ERR_HTTP_HEADERS_SENT).
  return (ctx, next) => {
    const cookies = ctx.cookies;
    const set = cookies.set.bind(cookies);
    cookies.set = ((...args: Parameters<typeof set>) => (ctx.res.headersSent ? cookies : set(...args))) as typeof cookies.set;
    return middleware(ctx, next);
  };
}
