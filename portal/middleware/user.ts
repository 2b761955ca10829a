import type { AtriumUser } from '../../lib/app-kit.ts';
import type { AccessIndex } from '../../lib/directory/access.ts';
import type { ProfileCache } from '../../lib/profile/cache.ts';
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
 * applies to the very next request. A disabled account's session ends here. No database access.
 */
export function userMiddleware(deps: { access: AccessIndex; profiles: ProfileCache; loadProfile: (userId: number) => Promise<unknown> }): PortalMiddleware {
  const { access, profiles, loadProfile } = deps;
  return async (ctx, next) => {
    let session = signedInSession(ctx.session);
    if (session && access.isDisabled(session.uid)) {
      ctx.session = null;
      session = undefined;
    }
    if (session) {
      const grant = access.grantFor(session.uid);
      const user: AtriumUser = {
        sub: session.sub,
        email: session.email,
        name: session.name,
        picture: session.picture,
        level: highest(session.tokenLevel, grant.level),
        groups: grant.groups,
        profile: profiles.peek(session.uid, session.profile, loadProfile),
      };
      ctx.state.user = user;
      ctx.state.userId = session.uid;
    }
    await next();
  };
}
