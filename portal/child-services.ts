import type { AtriumServices } from '../lib/app-kit.ts';
import type { ProfileService } from '../lib/profile/service.ts';
import type { PortalContext } from './context.ts';

/**
 * What a child app reaches through `ctx.state.atrium` (see lib/app-kit.ts): the signed-in user's
 * profile, read and written through the same validation and audit as the /profile page.
 */
export function childServices(profiles: ProfileService): (ctx: PortalContext) => void {
  return (ctx) => {
    const userId = ctx.state.userId;
    const user = ctx.state.user;
    if (userId === undefined || !user) return;
    const services: AtriumServices = {
      profile: {
        get: () => profiles.get(userId),
        update: (changes) => profiles.update(`app:${ctx.mountPath ?? 'unknown'} for ${user.email ?? user.sub}`, userId, changes, { asAdmin: false }),
      },
    };
    ctx.state.atrium = services;
  };
}
