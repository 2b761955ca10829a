import type { AtriumServices, AtriumUser, ProfileApi } from '../../lib/app-kit.ts';
import type { ProfileService } from '../../lib/profile/service.ts';
import type { PortalContext } from '../http/context.ts';

/**
 * What a child app reaches through `ctx.state.atrium` (see lib/app-kit.ts): the signed-in user's
 * profile, read and written through the same validation and audit as the /profile page.
 */
export function childServices(profiles: ProfileService): (ctx: PortalContext) => void {
  // One small object per request; the closures are made only when an app asks for its profile
  // (most requests never do, and under tsx every closure also costs a defineProperty for its name).
  class Services implements AtriumServices {
    #profile: ProfileApi | undefined;
    constructor(
      private readonly ctx: PortalContext,
      private readonly userId: number,
      private readonly user: AtriumUser,
    ) {}
    get profile(): ProfileApi {
      const { ctx, userId, user } = this;
      return (this.#profile ??= {
        get: () => profiles.get(userId),
        update: (changes) => profiles.update(`app:${ctx.mountPath ?? 'unknown'} for ${user.email ?? user.sub}`, userId, changes, { asAdmin: false }),
      });
    }
  }
  return (ctx) => {
    const userId = ctx.state.userId;
    const user = ctx.state.user;
    if (userId === undefined || !user) return;
    ctx.state.atrium = new Services(ctx, userId, user);
  };
}
