import type Router from '@koa/router';
import { BadRequestError } from '../../../lib/errors.ts';
import { highest } from '../../../lib/levels.ts';
import { idpSidOf } from '../../../lib/sessions/provider-sessions.ts';
import type { PortalState } from '../../http/context.ts';
import { actor, done, field, pageNumber, render, type AdminDeps } from './kit.ts';

const PAGE_SIZE = 25;

/** Users: search and paging, one user's page, and every change an admin makes to a user. */
export function userPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { admin, users, groups, access, profiles, sessions, views } = deps;

  router.get('/users', async (ctx) => {
    const page = pageNumber(ctx.query.page);
    const query = typeof ctx.query.q === 'string' ? ctx.query.q.slice(0, 200) : '';
    const result = await users.search({ query, page, pageSize: PAGE_SIZE });
    const rows = result.users.map((u) => ({ ...u, level: access.grantFor(u.id).level }));
    render(ctx, views, 'users.njk', { title: 'Users', rows, query, page, pages: Math.max(1, Math.ceil(result.total / PAGE_SIZE)), total: result.total });
  });

  router.get('/users/:id', async (ctx) => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    const [direct, fields, allGroups, sessionIds] = await Promise.all([
      groups.directGroupsOf(user.id),
      profiles.fields.list(),
      groups.list(),
      sessions.idsBySubject(user.sub),
    ]);
    const active = (
      await Promise.all(
        sessionIds.map(async (id) => {
          const stored = await sessions.get(id);
          const data = stored?.data as { authAt?: number } | undefined;
          return stored ? { id, short: `${id.slice(0, 8)}…`, authAt: data?.authAt ?? null, expiresAt: stored.expiresAt } : undefined;
        }),
      )
    ).filter(Boolean);
    const grant = access.grantFor(user.id);
    render(ctx, views, 'user.njk', {
      title: user.email ?? user.sub,
      subject: user,
      direct,
      inherited: access.explain(user.id),
      level: highest(grant.level),
      fields,
      groups: allGroups.filter((g) => !direct.includes(g.name)),
      sessions: active,
    });
  });

  const userPath = (id: number) => `/admin/users/${id}`;

  router.post('/users/:id/groups', async (ctx) => {
    const group = field(ctx, 'group');
    const user = await admin.addMember(actor(ctx), group, ctx.params.id ?? '');
    done(ctx, userPath(user.id), `Added to ${group}.`);
  });

  router.post('/users/:id/groups/remove', async (ctx) => {
    const group = field(ctx, 'group');
    const user = await admin.removeMember(actor(ctx), group, ctx.params.id ?? '');
    done(ctx, userPath(user.id), `Removed from ${group}.`);
  });

  router.post('/users/:id/disable', async (ctx) => {
    const disable = field(ctx, 'disabled') !== 'false';
    const user = await admin.setDisabled(actor(ctx), ctx.params.id ?? '', disable);
    done(ctx, userPath(user.id), disable ? 'Account disabled; its sessions have ended.' : 'Account enabled.');
  });

  router.post('/users/:id/sessions/revoke', async (ctx) => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    const session = field(ctx, 'session');
    if (session) {
      // Read before it ends: the provider session it began with goes too (that browser signs in
      // again with a password), the user's other browsers keep theirs.
      const idpSid = idpSidOf((await sessions.get(session))?.data);
      await admin.revokeSession(actor(ctx), user.id, session);
      await sessions.endProviderSession(user.sub, idpSid);
      done(ctx, userPath(user.id), 'Session revoked.');
    } else {
      // Every session of the user, the embedded provider's included (see CachedSessionStore.destroyBySubject).
      const ended = await admin.revokeSessions(actor(ctx), user.id);
      done(ctx, userPath(user.id), `${ended} session(s) revoked.`);
    }
  });

  router.post('/users/:id/profile', async (ctx) => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    const body = { ...((ctx.request as { body?: Record<string, unknown> }).body ?? {}) };
    delete body._csrf;
    await profiles.update(actor(ctx), user.id, body, { asAdmin: true });
    done(ctx, userPath(user.id), 'Profile saved.');
  });

  router.post('/users', async (ctx) => {
    const email = field(ctx, 'email');
    const password = field(ctx, 'password');
    if (!email) throw new BadRequestError('Give the new user an email address.');
    const user = await admin.addLocalUser(actor(ctx), { email, name: field(ctx, 'name') || undefined, password: password || undefined });
    done(ctx, userPath(user.id), `Created ${user.email}.`);
  });
}
