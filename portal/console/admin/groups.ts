import type Router from '@koa/router';
import { isLevel } from '../../../lib/levels.ts';
import type { PortalState } from '../../http/context.ts';
import { actor, done, field, render, type AdminDeps } from './kit.ts';

interface TreeNode {
  name: string;
  level: string | null;
  children: TreeNode[];
  repeated: boolean;
}

/** Groups: the nesting tree, one group's page, and the nesting editor. */
export function groupPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { admin, groups, views } = deps;

  router.get('/groups', async (ctx) => {
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
    render(ctx, views, 'groups.njk', { title: 'Groups', groups: all, tree });
  });

  router.get('/groups/:name', async (ctx) => {
    const group = await groups.byName(ctx.params.name ?? '');
    const [members, edges, all] = await Promise.all([groups.members(group.name), groups.edges(), groups.list()]);
    render(ctx, views, 'group.njk', {
      title: `Group ${group.name}`,
      group,
      members,
      parents: edges.filter((e) => e.child === group.name).map((e) => e.parent),
      children: edges.filter((e) => e.parent === group.name).map((e) => e.child),
      candidates: all.filter((g) => g.name !== group.name).map((g) => g.name),
    });
  });

  const levelField = (value: string) => (value === '' ? null : isLevel(value) ? value : (value as never));

  router.post('/groups', async (ctx) => {
    const group = await admin.createGroup(actor(ctx), { name: field(ctx, 'name'), level: levelField(field(ctx, 'level')), description: field(ctx, 'description') });
    done(ctx, `/admin/groups/${group.name}`, `Created group ${group.name}.`);
  });

  router.post('/groups/:name', async (ctx) => {
    const name = ctx.params.name ?? '';
    const body = (ctx.request as { body?: Record<string, unknown> }).body ?? {};
    const changes: { name?: string; description?: string; level?: ReturnType<typeof levelField> } = {};
    if (typeof body.newName === 'string' && body.newName !== '' && body.newName !== name) changes.name = body.newName;
    if (typeof body.description === 'string') changes.description = body.description;
    if (typeof body.level === 'string' && !(await groups.byName(name)).builtin) changes.level = levelField(body.level);
    const group = await admin.updateGroup(actor(ctx), name, changes);
    done(ctx, `/admin/groups/${group.name}`, 'Group saved.');
  });

  router.post('/groups/:name/delete', async (ctx) => {
    await admin.deleteGroup(actor(ctx), ctx.params.name ?? '');
    done(ctx, '/admin/groups', `Deleted group ${ctx.params.name}.`);
  });

  router.post('/groups/:name/nest', async (ctx) => {
    const parent = field(ctx, 'parent');
    await admin.nest(actor(ctx), ctx.params.name ?? '', parent);
    done(ctx, `/admin/groups/${ctx.params.name}`, `Members of ${ctx.params.name} now inherit ${parent}.`);
  });

  router.post('/groups/:name/unnest', async (ctx) => {
    const parent = field(ctx, 'parent');
    await admin.unnest(actor(ctx), ctx.params.name ?? '', parent);
    done(ctx, `/admin/groups/${ctx.params.name}`, `${ctx.params.name} no longer inherits ${parent}.`);
  });

  router.post('/groups/:name/members', async (ctx) => {
    const user = await admin.addMember(actor(ctx), ctx.params.name ?? '', field(ctx, 'user'));
    done(ctx, `/admin/groups/${ctx.params.name}`, `Added ${user.email ?? user.sub}.`);
  });

  router.post('/groups/:name/members/remove', async (ctx) => {
    const user = await admin.removeMember(actor(ctx), ctx.params.name ?? '', field(ctx, 'user'));
    done(ctx, `/admin/groups/${ctx.params.name}`, `Removed ${user.email ?? user.sub}.`);
  });
}
