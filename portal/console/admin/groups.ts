import type Router from '@koa/router';
import { BadRequestError } from '../../../lib/errors.ts';
import type { NestingEdge } from '../../../lib/directory/groups.ts';
import { isLevel } from '../../../lib/levels.ts';
import type { PortalContext, PortalState } from '../../http/context.ts';
import { confirmationPage, type Confirmation } from './confirm.ts';
import { applyForm } from './forms.ts';
import { actor, done, field, pageNumber, paged, queryText, render, withQuery, type AdminDeps } from './kit.ts';

/** Members per page on a group's page. */
const MEMBERS_PAGE = 50;

interface TreeNode {
  name: string;
  level: string | null;
  children: TreeNode[];
  repeated: boolean;
}

/**
 * Groups that inherit from `name`, however deep: nesting `name` inside any of them would make a
 * cycle, so the nesting editor does not offer them.
 */
export function inheritorsOf(name: string, edges: NestingEdge[]): Set<string> {
  const children = new Map<string, string[]>();
  for (const e of edges) {
    const list = children.get(e.parent);
    if (list) list.push(e.child);
    else children.set(e.parent, [e.child]);
  }
  const found = new Set<string>();
  const stack = [name];
  while (stack.length > 0) {
    for (const child of children.get(stack.pop() as string) ?? []) {
      if (found.has(child)) continue;
      found.add(child);
      stack.push(child);
    }
  }
  return found;
}

/** Groups: the nesting tree, one group's page, the nesting editor and membership. */
export function groupPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { admin, groups, views } = deps;
  const groupPath = (name: string) => `/admin/groups/${encodeURIComponent(name)}`;
  const groupCrumbs = (name: string) => [{ label: 'Groups', href: '/admin/groups' }, { label: name, href: groupPath(name) }];

  async function groupsPage() {
    const [all, edges] = await Promise.all([groups.list(), groups.edges()]);
    // Show the DAG as a tree from its roots (groups with no parent); a group with two parents
    // appears under each.
    const children = new Map<string, string[]>();
    for (const e of edges) children.set(e.parent, [...(children.get(e.parent) ?? []), e.child]);
    const byName = new Map(all.map((g) => [g.name, g]));
    // Each group is expanded once; where it appears again (diamonds) it is a leaf marked "shown above",
    // so the page stays linear in the size of the graph.
    const expanded = new Set<string>();
    const build = (name: string): TreeNode => {
      const first = !expanded.has(name);
      expanded.add(name);
      return { name, level: byName.get(name)?.level ?? null, children: first ? (children.get(name) ?? []).map(build) : [], repeated: !first };
    };
    const hasParent = new Set(edges.map((e) => e.child));
    const tree = all.filter((g) => !hasParent.has(g.name)).map((g) => build(g.name));
    return { template: 'groups.njk', data: { title: 'Groups', crumbs: [{ label: 'Groups' }], groups: all, tree } };
  }

  async function groupPage(ctx: PortalContext, name: string) {
    const group = await groups.byName(name);
    const [members, edges, all] = await Promise.all([groups.members(group.name), groups.edges(), groups.list()]);
    const parents = edges.filter((e) => e.child === group.name).map((e) => e.parent);
    // Not offered as parents: the group itself, what it already inherits directly (a no-op), and
    // every group that inherits from it (a cycle).
    const refused = new Set([group.name, ...parents, ...inheritorsOf(group.name, edges)]);
    const memberPage = paged(members, pageNumber(ctx.query.page), MEMBERS_PAGE);
    const here = groupPath(group.name);
    return {
      template: 'group.njk',
      data: {
        title: `Group ${group.name}`,
        crumbs: [{ label: 'Groups', href: '/admin/groups' }, { label: group.name }],
        group,
        members: memberPage.items,
        memberPage,
        newer: memberPage.page > 1 ? withQuery(here, { page: memberPage.page - 1 }) : undefined,
        older: memberPage.page < memberPage.pages ? withQuery(here, { page: memberPage.page + 1 }) : undefined,
        parents,
        children: edges.filter((e) => e.parent === group.name).map((e) => e.child),
        candidates: all.filter((g) => !refused.has(g.name)).map((g) => g.name),
        secondFactorRequired: (await deps.factors.requiringGroups()).includes(group.name),
      },
    };
  }

  const groupPageAgain = (ctx: PortalContext) => () => groupPage(ctx, ctx.params.name ?? '');

  router.get('/groups', async (ctx) => {
    const page = await groupsPage();
    render(ctx, views, page.template, page.data);
  });

  router.get('/groups/:name', async (ctx) => {
    const page = await groupPage(ctx, ctx.params.name ?? '');
    render(ctx, views, page.template, page.data);
  });

  const levelField = (value: string) => (value === '' ? null : isLevel(value) ? value : (value as never));

  router.post('/groups', async (ctx) => {
    await applyForm(ctx, views, 'create-group', groupsPage, async () => {
      const group = await admin.createGroup(actor(ctx), { name: field(ctx, 'name'), level: levelField(field(ctx, 'level')), description: field(ctx, 'description') });
      done(ctx, groupPath(group.name), `Created group ${group.name}.`);
    });
  });

  router.post('/groups/:name', async (ctx) => {
    const name = ctx.params.name ?? '';
    const body = (ctx.request as { body?: Record<string, unknown> }).body ?? {};
    await applyForm(ctx, views, 'edit', groupPageAgain(ctx), async () => {
      const changes: { name?: string; description?: string; level?: ReturnType<typeof levelField> } = {};
      if (typeof body.newName === 'string' && body.newName !== '' && body.newName !== name) changes.name = body.newName;
      if (typeof body.description === 'string') changes.description = body.description;
      if (typeof body.level === 'string' && !(await groups.byName(name)).builtin) changes.level = levelField(body.level);
      const group = await admin.updateGroup(actor(ctx), name, changes);
      done(ctx, groupPath(group.name), 'Group saved.');
    });
  });

  const deleteGroup = async (name: string): Promise<Confirmation> => {
    const group = await groups.byName(name);
    const members = (await groups.members(group.name)).length;
    return {
      question: `Delete the group ${group.name}?`,
      consequence: `Its ${members} member${members === 1 ? '' : 's'} and the groups nested in it lose what it grants at their next request. The audit log keeps who was in it.`,
      action: `${groupPath(group.name)}/delete`,
      fields: {},
      confirm: 'Delete group',
      cancel: groupPath(group.name),
      crumbs: [...groupCrumbs(group.name), { label: 'Delete' }],
    };
  };

  router.get('/groups/:name/delete', async (ctx) => {
    const page = confirmationPage(await deleteGroup(ctx.params.name ?? ''));
    render(ctx, views, page.template, page.data);
  });

  router.post('/groups/:name/delete', async (ctx) => {
    const name = ctx.params.name ?? '';
    await applyForm(ctx, views, 'confirm', async () => confirmationPage(await deleteGroup(name)), async () => {
      await admin.deleteGroup(actor(ctx), name);
      done(ctx, '/admin/groups', `Deleted group ${name}.`);
    });
  });

  router.post('/groups/:name/nest', async (ctx) => {
    const name = ctx.params.name ?? '';
    const parent = field(ctx, 'parent');
    await applyForm(ctx, views, 'nest', groupPageAgain(ctx), async () => {
      if (!parent) throw new BadRequestError('Choose the group to nest it inside.');
      await admin.nest(actor(ctx), name, parent);
      done(ctx, groupPath(name), `Members of ${name} now inherit ${parent}.`);
    });
  });

  const unnest = async (name: string, parent: string): Promise<Confirmation> => {
    const group = await groups.byName(name);
    return {
      question: `Stop nesting ${group.name} inside ${parent}?`,
      consequence: `Members of ${group.name} no longer inherit what ${parent} grants (unless another path still leads there).`,
      action: `${groupPath(group.name)}/unnest`,
      fields: { parent },
      confirm: 'Un-nest',
      cancel: groupPath(group.name),
      crumbs: [...groupCrumbs(group.name), { label: `Un-nest from ${parent}` }],
    };
  };

  router.get('/groups/:name/unnest', async (ctx) => {
    const page = confirmationPage(await unnest(ctx.params.name ?? '', queryText(ctx, 'parent')));
    render(ctx, views, page.template, page.data);
  });

  router.post('/groups/:name/unnest', async (ctx) => {
    const name = ctx.params.name ?? '';
    const parent = field(ctx, 'parent');
    await applyForm(ctx, views, 'confirm', async () => confirmationPage(await unnest(name, parent)), async () => {
      await admin.unnest(actor(ctx), name, parent);
      done(ctx, groupPath(name), `${name} no longer inherits ${parent}.`);
    });
  });

  router.post('/groups/:name/members', async (ctx) => {
    await applyForm(ctx, views, 'add-member', groupPageAgain(ctx), async () => {
      const reference = field(ctx, 'user').trim();
      if (!reference) throw new BadRequestError('Name the user to add: an email, subject or id.');
      const user = await admin.addMember(actor(ctx), ctx.params.name ?? '', reference);
      done(ctx, groupPath(ctx.params.name ?? ''), `Added ${user.email ?? user.sub}.`);
    });
  });

  const removeMember = async (name: string, reference: string): Promise<Confirmation> => {
    const group = await groups.byName(name);
    const user = await admin.resolveUser(reference);
    return {
      question: `Remove ${user.email ?? user.sub} from ${group.name}?`,
      consequence: `They lose what ${group.name} grants, and what it inherits, at their next request (unless another group grants it too).`,
      action: `${groupPath(group.name)}/members/remove`,
      fields: { user: String(user.id) },
      confirm: 'Remove',
      cancel: groupPath(group.name),
      crumbs: [...groupCrumbs(group.name), { label: `Remove ${user.email ?? user.sub}` }],
    };
  };

  router.get('/groups/:name/members/remove', async (ctx) => {
    const page = confirmationPage(await removeMember(ctx.params.name ?? '', queryText(ctx, 'user', 320)));
    render(ctx, views, page.template, page.data);
  });

  router.post('/groups/:name/members/remove', async (ctx) => {
    const name = ctx.params.name ?? '';
    const reference = field(ctx, 'user');
    await applyForm(ctx, views, 'confirm', async () => confirmationPage(await removeMember(name, reference)), async () => {
      const user = await admin.removeMember(actor(ctx), name, reference);
      done(ctx, groupPath(name), `Removed ${user.email ?? user.sub}.`);
    });
  });
}
