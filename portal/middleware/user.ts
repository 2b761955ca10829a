import type { AtriumUser } from '../../lib/app-kit.ts';
import type { AccessIndex } from '../../lib/directory/access.ts';
import { highest } from '../../lib/levels.ts';
import type { PortalMiddleware, PortalSession } from '../context.ts';

/** Reads the signed-in session, if any, as a typed record. */
export function signedInSession(session: unknown): PortalSession | undefined {
  const s = session as Partial<PortalSession> | null | undefined;
  return s && typeof s.sub === 'string' && typeof s.uid === 'number' ? (s as PortalSession) : undefined;
}

/**
 * Builds `ctx.state.user` from the session and the in-memory directory: the level is the highest of
 * what the token granted and what the directory's groups grant right now, so a directory change
 * applies to the very next request. No database access here.
 */
export function userMiddleware(access: AccessIndex): PortalMiddleware {
  return async (ctx, next) => {
    const session = signedInSession(ctx.session);
    if (session) {
      const grant = access.grantFor(session.uid);
      const user: AtriumUser = {
        sub: session.sub,
        email: session.email,
        name: session.name,
        picture: session.picture,
        level: highest(session.tokenLevel, grant.level),
        groups: grant.groups,
        profile: session.profile,
      };
      ctx.state.user = user;
      ctx.state.userId = session.uid;
    }
    await next();
  };
}
