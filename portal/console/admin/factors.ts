import type Router from '@koa/router';
import type { PortalState } from '../../http/context.ts';
import { actor, done, field, type AdminDeps } from './kit.ts';

/**
 * Second factors in the console: reset a user's factors (a lost phone: they sign in with the
 * password and, where a group requires one, set up a new factor at once), and require a second
 * factor of a group's members. Both audited (factor.reset, group.second_factor); a reset also ends
 * the user's sessions (session.revoke_all).
 */
export function factorPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { admin, factors } = deps;

  router.post('/users/:id/factors/reset', async (ctx) => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    const removed = await factors.resetAll(actor(ctx), user);
    // The lost device's sessions end with its factors (here and at the provider): what it opened
    // with a second factor must not outlive it, nor sign it straight back in as such.
    const ended = await admin.revokeSessions(actor(ctx), user.id);
    const what = removed === 0 ? 'This user had no second factor.' : `${removed} second factor${removed === 1 ? '' : 's'} and the recovery codes removed.`;
    done(ctx, `/admin/users/${user.id}`, `${what} ${ended} session${ended === 1 ? '' : 's'} ended.`);
  });

  router.post('/groups/:name/second-factor', async (ctx) => {
    const name = ctx.params.name ?? '';
    const required = field(ctx, 'required') === '1';
    await factors.setGroupRequirement(actor(ctx), name, required);
    done(ctx, `/admin/groups/${encodeURIComponent(name)}`, required ? `Members of ${name} must now sign in with a second factor.` : `Members of ${name} no longer need a second factor.`);
  });
}
