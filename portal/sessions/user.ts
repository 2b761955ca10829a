import type { AtriumUser } from '../../lib/app-kit.ts';
import type { AccessIndex } from '../../lib/directory/access.ts';
import { highest } from '../../lib/levels.ts';
import type { ProfileCache } from '../../lib/profile/cache.ts';
import type { PortalMiddleware, PortalSession } from '../http/context.ts';

/** Reads the signed-in session, if any, as a typed record. */
export function signedInSession(session: unknown): PortalSession | undefined {
  const s = session as Partial<PortalSession> | null | undefined;
  return s && typeof s.sub === 'string' && typeof s.uid === 'number' ? (s as PortalSession) : undefined;
}

export interface UserResolver {
  access: AccessIndex;
  profiles: ProfileCache;
  loadProfile: (userId: number) => Promise<unknown>;
}

/**
 * The user a session stands for right now: the level is the highest of what the token granted and
 * what the directory's groups grant at this moment, so a directory change applies at once. Undefined
 * for a disabled account. Used for HTTP requests, websocket handshakes and socket re-checks alike.
 */
export function userFromSession(session: PortalSession, resolver: UserResolver): AtriumUser | undefined {
  const { access, profiles, loadProfile } = resolver;
  if (access.isDisabled(session.uid)) return undefined;
  const grant = access.grantFor(session.uid);
  return {
    sub: session.sub,
    email: session.email,
    name: session.name,
    picture: session.picture,
    level: highest(session.tokenLevel, grant.level),
    groups: grant.groups,
    profile: profiles.peek(session.uid, session.profile, loadProfile),
    mfa: session.mfa === true,
  };
}

export type BearerAuthenticator = (authorization: string) => Promise<{ user: AtriumUser; userId: number | undefined }>;

/**
 * Builds `ctx.state.user` for every request after the session middleware: from a bearer token when
 * the request carries `Authorization` (an invalid one is a 401, never a fallback to the cookie),
 * else from the session. No database access.
 */
export function userMiddleware(resolver: UserResolver, bearer?: BearerAuthenticator): PortalMiddleware {
  return async (ctx, next) => {
    const authorization = ctx.get('Authorization');
    if (authorization && bearer) {
      const { user, userId } = await bearer(authorization);
      ctx.state.user = user;
      ctx.state.userId = userId;
      return next();
    }
    const session = signedInSession(ctx.session);
    if (session) {
      const user = userFromSession(session, resolver);
      if (user) {
        ctx.state.user = user;
        ctx.state.userId = session.uid;
        ctx.state.csrf = session.csrf;
      } else {
        // A disabled account: its session ends here, whatever the store still holds.
        ctx.session = null;
      }
    }
    await next();
  };
}
