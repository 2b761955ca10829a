import type Router from '@koa/router';
import { BadRequestError, NotFoundError } from '../../../lib/errors.ts';
import { highest } from '../../../lib/levels.ts';
import { idpSidOf } from '../../../lib/sessions/provider-sessions.ts';
import type { UserRecord } from '../../../lib/directory/users.ts';
import type { PortalContext, PortalState } from '../../http/context.ts';
import { confirmationPage, type Confirmation } from './confirm.ts';
import { applyForm } from './forms.ts';
import { inheritanceOf, pathTo, shortPath } from './inheritance.ts';
import { actor, done, field, pageNumber, paged, queryText, render, withQuery, type AdminDeps } from './kit.ts';
import { sessionByRef, sessionRef } from './session-refs.ts';

const PAGE_SIZE = 25;
/** Groups per page on a user's page: someone in 1,000 groups gets a page, not a megabyte. */
const GROUPS_PAGE = 50;
/** Sessions listed on a user's page; "revoke all" ends the rest too. */
const SESSIONS_SHOWN = 50;
/** Beyond this many groups to choose from, "Add to group" takes a typed name instead of a long select. */
const SELECT_MAX = 500;

const nameOf = (user: UserRecord) => user.email ?? user.sub;

/** Users: search and paging, one user's page, and every change an admin makes to a user. */
export function userPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { admin, users, groups, access, profiles, sessions, views } = deps;
  const userPath = (id: number) => `/admin/users/${id}`;
  const userCrumbs = (user: UserRecord) => [{ label: 'Users', href: '/admin/users' }, { label: nameOf(user), href: userPath(user.id) }];

  async function usersPage(ctx: PortalContext) {
    const page = pageNumber(ctx.query.page);
    const query = queryText(ctx, 'q');
    const result = await users.search({ query, page, pageSize: PAGE_SIZE });
    const rows = result.users.map((u) => ({ ...u, level: access.grantFor(u.id).level }));
    const pages = Math.max(1, Math.ceil(result.total / PAGE_SIZE));
    return {
      template: 'users.njk',
      data: {
        title: 'Users',
        crumbs: [{ label: 'Users' }],
        rows,
        query,
        page,
        pages,
        total: result.total,
        newer: page > 1 ? withQuery('/admin/users', { q: query, page: page - 1 }) : undefined,
        older: page < pages ? withQuery('/admin/users', { q: query, page: page + 1 }) : undefined,
      },
    };
  }

  async function userPage(ctx: PortalContext, ref: string) {
    const user = await admin.resolveUser(ref);
    const [direct, edges, allGroups, fields, sessionIds] = await Promise.all([
      groups.directGroupsOf(user.id),
      groups.edges(),
      groups.list(),
      profiles.fields.list(),
      sessions.idsBySubject(user.sub),
    ]);
    // One shortest way to each group, as back-links: linear however deep the nesting goes.
    const tree = inheritanceOf(direct, edges);
    const levelOf = new Map(allGroups.map((g) => [g.name, g.level]));
    const memberships = paged([...tree.values()].sort((a, b) => a.group.localeCompare(b.group)), pageNumber(ctx.query.page), GROUPS_PAGE);
    // Memberships a provider manages (and no admin made) are shown as such, with nothing to remove.
    const [managed, byAdmin] = await Promise.all([groups.managedGroupsOf(user.id), groups.adminGroupsOf(user.id)]);
    const managedBy = (group: string) => (byAdmin.includes(group) ? undefined : managed.get(group)?.join(', '));
    const rows = memberships.items.map((m) => ({ group: m.group, level: levelOf.get(m.group) ?? null, direct: m.depth === 0, via: shortPath(tree, m.group), managedBy: m.depth === 0 ? managedBy(m.group) : undefined }));
    const directSet = new Set(direct);
    const choices = allGroups.filter((g) => !directSet.has(g.name));
    const shown = sessionIds.slice(0, SESSIONS_SHOWN);
    const active = (
      await Promise.all(
        shown.map(async (id) => {
          const stored = await sessions.get(id);
          const data = stored?.data as { authAt?: number } | undefined;
          return stored ? { ref: sessionRef(id), short: `${sessionRef(id).slice(0, 8)}…`, authAt: data?.authAt ?? null, expiresAt: stored.expiresAt } : undefined;
        }),
      )
    ).filter(Boolean);
    const here = userPath(user.id);
    return {
      template: 'user.njk',
      data: {
        title: nameOf(user),
        crumbs: [{ label: 'Users', href: '/admin/users' }, { label: nameOf(user) }],
        subject: user,
        rows,
        memberships,
        newer: memberships.page > 1 ? withQuery(here, { page: memberships.page - 1 }) : undefined,
        older: memberships.page < memberships.pages ? withQuery(here, { page: memberships.page + 1 }) : undefined,
        level: highest(access.grantFor(user.id).level),
        fields,
        choices: choices.length <= SELECT_MAX ? choices : undefined,
        sessions: active,
        moreSessions: sessionIds.length - shown.length,
        factors: await deps.factors.list(user.id),
      },
    };
  }

  /** The user page drawn again with a form's refusal next to that form. */
  const userPageAgain = (ctx: PortalContext) => () => userPage(ctx, ctx.params.id ?? '');

  router.get('/users', async (ctx) => {
    const page = await usersPage(ctx);
    render(ctx, views, page.template, page.data);
  });

  router.get('/users/:id', async (ctx) => {
    const page = await userPage(ctx, ctx.params.id ?? '');
    render(ctx, views, page.template, page.data);
  });

  // The whole shortest path to one group, for the rows whose path the user page shortens.
  router.get('/users/:id/path', async (ctx) => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    const group = queryText(ctx, 'group');
    const [direct, edges] = await Promise.all([groups.directGroupsOf(user.id), groups.edges()]);
    const path = pathTo(inheritanceOf(direct, edges), group);
    if (path.length === 0) throw new NotFoundError(`${nameOf(user)} is not in "${group}".`);
    render(ctx, views, 'path.njk', { title: `How ${nameOf(user)} is in ${group}`, crumbs: [...userCrumbs(user), { label: `Path to ${group}` }], subject: user, group, steps: path });
  });

  router.post('/users/:id/groups', async (ctx) => {
    const group = field(ctx, 'group');
    await applyForm(ctx, views, 'add-group', userPageAgain(ctx), async () => {
      if (!group) throw new BadRequestError('Choose a group to add the user to.');
      const user = await admin.addMember(actor(ctx), group, ctx.params.id ?? '');
      done(ctx, userPath(user.id), `Added to ${group}.`);
    });
  });

  const removeFromGroup = async (ctx: PortalContext, group: string): Promise<Confirmation> => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    return {
      question: `Remove ${nameOf(user)} from ${group}?`,
      consequence: `They lose what ${group} grants, and what it inherits, at their next request (unless another group grants it too).`,
      action: `${userPath(user.id)}/groups/remove`,
      fields: { group },
      confirm: 'Remove',
      cancel: userPath(user.id),
      crumbs: [...userCrumbs(user), { label: `Remove from ${group}` }],
    };
  };

  router.get('/users/:id/groups/remove', async (ctx) => {
    const page = confirmationPage(await removeFromGroup(ctx, queryText(ctx, 'group')));
    render(ctx, views, page.template, page.data);
  });

  router.post('/users/:id/groups/remove', async (ctx) => {
    const group = field(ctx, 'group');
    await applyForm(ctx, views, 'confirm', async () => confirmationPage(await removeFromGroup(ctx, group)), async () => {
      const user = await admin.removeMember(actor(ctx), group, ctx.params.id ?? '');
      done(ctx, userPath(user.id), `Removed from ${group}.`);
    });
  });

  const disableAccount = async (ctx: PortalContext): Promise<Confirmation> => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    return {
      question: `Disable ${nameOf(user)}?`,
      consequence: 'Every session of the account ends now, and it cannot sign in until an admin enables it again.',
      action: `${userPath(user.id)}/disable`,
      fields: { disabled: 'true' },
      confirm: 'Disable account',
      cancel: userPath(user.id),
      crumbs: [...userCrumbs(user), { label: 'Disable' }],
    };
  };

  router.get('/users/:id/disable', async (ctx) => {
    const page = confirmationPage(await disableAccount(ctx));
    render(ctx, views, page.template, page.data);
  });

  router.post('/users/:id/disable', async (ctx) => {
    const disable = field(ctx, 'disabled') !== 'false';
    await applyForm(ctx, views, disable ? 'confirm' : 'enable', async () => (disable ? confirmationPage(await disableAccount(ctx)) : userPage(ctx, ctx.params.id ?? '')), async () => {
      const user = await admin.setDisabled(actor(ctx), ctx.params.id ?? '', disable);
      done(ctx, userPath(user.id), disable ? 'Account disabled; its sessions have ended.' : 'Account enabled.');
    });
  });

  /** One session (named by its reference) or, without one, all of them. */
  const revokeSessions = async (ctx: PortalContext, ref: string): Promise<Confirmation> => {
    const user = await admin.resolveUser(ctx.params.id ?? '');
    const count = (await sessions.idsBySubject(user.sub)).length;
    const one = ref !== '';
    return {
      question: one ? `Revoke session ${ref.slice(0, 8)}… of ${nameOf(user)}?` : `Revoke ${count === 1 ? 'the one session' : count > 1 ? `all ${count} sessions` : 'all sessions'} of ${nameOf(user)}?`,
      consequence: one
        ? 'That browser is signed out at its next request and signs in again with a password; their other browsers stay signed in.'
        : 'Every browser of theirs is signed out at its next request, the sign-in service’s sessions included.',
      action: `${userPath(user.id)}/sessions/revoke`,
      fields: one ? { session: ref } : {},
      confirm: one ? 'Revoke session' : 'Revoke all sessions',
      cancel: userPath(user.id),
      crumbs: [...userCrumbs(user), { label: one ? 'Revoke a session' : 'Revoke all sessions' }],
    };
  };

  router.get('/users/:id/sessions/revoke', async (ctx) => {
    const page = confirmationPage(await revokeSessions(ctx, queryText(ctx, 'session', 64)));
    render(ctx, views, page.template, page.data);
  });

  router.post('/users/:id/sessions/revoke', async (ctx) => {
    const ref = field(ctx, 'session');
    await applyForm(ctx, views, 'confirm', async () => confirmationPage(await revokeSessions(ctx, ref)), async () => {
      const user = await admin.resolveUser(ctx.params.id ?? '');
      if (ref) {
        const session = sessionByRef(await sessions.idsBySubject(user.sub), ref);
        if (!session) throw new NotFoundError('That session does not exist or has already ended.');
        // Read before it ends: the provider session it began with goes too (that browser signs in
        // again with a password), the user's other browsers keep theirs.
        const idpSid = idpSidOf((await sessions.get(session))?.data);
        await admin.revokeSession(actor(ctx), user.id, session);
        const everyBrowser = await sessions.endProviderSession(user.sub, idpSid);
        done(ctx, userPath(user.id), everyBrowser ? 'Session revoked. It predates provider-session tracking, so every browser of this user must sign in again.' : 'Session revoked.');
      } else {
        // Every session of the user, the embedded provider's included (see CachedSessionStore.destroyBySubject).
        const ended = await admin.revokeSessions(actor(ctx), user.id);
        done(ctx, userPath(user.id), `${ended} session${ended === 1 ? '' : 's'} revoked.`);
      }
    });
  });

  // A one-time password reset link, shown in this answer only: never in a flash message, which the session store would keep.
  router.post('/users/:id/reset-link', async (ctx) => {
    await applyForm(ctx, views, 'reset-link', userPageAgain(ctx), async () => {
      const { user, token, expiresAt } = await admin.issueResetLink(actor(ctx), ctx.params.id ?? '');
      const page = await userPage(ctx, String(user.id));
      render(ctx, views, page.template, { ...page.data, resetLink: { url: `${deps.publicOrigin}/reset/${token}`, expiresAt } });
    });
  });

  router.post('/users/:id/profile', async (ctx) => {
    const body = { ...((ctx.request as { body?: Record<string, unknown> }).body ?? {}) };
    delete body._csrf;
    await applyForm(ctx, views, 'profile', userPageAgain(ctx), async () => {
      const user = await admin.resolveUser(ctx.params.id ?? '');
      await profiles.update(actor(ctx), user.id, body, { asAdmin: true });
      done(ctx, userPath(user.id), 'Profile saved.');
    });
  });

  router.post('/users', async (ctx) => {
    const email = field(ctx, 'email');
    const password = field(ctx, 'password');
    await applyForm(ctx, views, 'create-user', () => usersPage(ctx), async () => {
      if (!email) throw new BadRequestError('Give the new user an email address.');
      const user = await admin.addLocalUser(actor(ctx), { email, name: field(ctx, 'name') || undefined, password: password || undefined });
      done(ctx, userPath(user.id), `Created ${user.email}.`);
    });
  });
}
