import type Router from '@koa/router';
import { GRANT_DAYS, type AccessRequest } from '../../../lib/access-requests.ts';
import { BadRequestError } from '../../../lib/errors.ts';
import { reaches } from '../../../lib/levels.ts';
import type { PortalState } from '../../http/context.ts';
import { applyForm } from './forms.ts';
import { actor, done, field, render, type AdminDeps } from './kit.ts';

/** Access requests and the profile field schema. */
export function otherPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { requests, profiles, views } = deps;

  /** What approving a request grants: its group, the groups that group inherits, the apps they open. */
  const grants = async (pending: AccessRequest[]) => {
    const edges = await deps.groups.edges();
    const apps = deps.registry.table.list();
    return pending.map((r) => {
      const reached = new Set([r.level]);
      for (let grew = true; grew; ) {
        grew = false;
        for (const e of edges) if (reached.has(e.child as never) && !reached.has(e.parent as never)) (reached.add(e.parent as never), (grew = true));
      }
      const opens = apps
        .filter((a) => r.level === 'admin' || (reaches(r.level, a.tier) && (a.groups.length === 0 || a.groups.some((g) => reached.has(g as never)))))
        .map((a) => ({ title: a.title, prefix: a.prefix }));
      return { ...r, group: r.level, inherits: [...reached].filter((g) => g !== r.level), opens };
    });
  };
  const requestsPage = async () => ({
    template: 'requests.njk',
    data: { title: 'Access requests', crumbs: [{ label: 'Access requests' }], pending: await grants(await requests.pending()), history: await requests.history(50), grantDays: GRANT_DAYS },
  });
  const fieldsPage = async () => ({ template: 'fields.njk', data: { title: 'Profile fields', crumbs: [{ label: 'Profile fields' }], fields: await profiles.fields.list() } });

  router.get('/requests', async (ctx) => {
    const page = await requestsPage();
    render(ctx, views, page.template, page.data);
  });

  router.post('/requests/:id', async (ctx) => {
    const id = Number(ctx.params.id);
    // An id that names no request cannot be answered next to its form: there is none.
    if (!Number.isInteger(id) || id < 1) throw new BadRequestError('Unknown request.');
    await applyForm(ctx, views, `request-${id}`, requestsPage, async () => {
      const decision = field(ctx, 'decision');
      if (decision !== 'approved' && decision !== 'denied') throw new BadRequestError('Decide "approved" or "denied".');
      const daysField = field(ctx, 'days');
      const days = decision === 'approved' && daysField ? Number(daysField) : undefined;
      const request = await requests.decide(actor(ctx), id, decision, field(ctx, 'note'), { days });
      const until = request.expiresAt === null ? '' : ` until ${new Date(request.expiresAt).toISOString().slice(0, 10)}`;
      done(ctx, '/admin/requests', `${request.email ?? 'The user'}'s request for ${request.level} was ${decision}${until}.`);
    });
  });

  router.get('/fields', async (ctx) => {
    const page = await fieldsPage();
    render(ctx, views, page.template, page.data);
  });

  router.post('/fields', async (ctx) => {
    await applyForm(ctx, views, 'add-field', fieldsPage, async () => {
      const maxLength = field(ctx, 'maxLength');
      const created = await profiles.fields.add({
        name: field(ctx, 'name'),
        label: field(ctx, 'label'),
        type: field(ctx, 'type'),
        required: field(ctx, 'required') === 'on',
        userEditable: field(ctx, 'adminOnly') !== 'on',
        maxLength: maxLength ? Number(maxLength) : undefined,
        options: field(ctx, 'options').split(',').map((o) => o.trim()).filter(Boolean),
      });
      await deps.audit.record({ actor: actor(ctx), action: 'profile_field.create', target: `field:${created.name}`, after: created });
      done(ctx, '/admin/fields', `Added the field ${created.label}.`);
    });
  });

  router.post('/fields/:name/delete', async (ctx) => {
    await applyForm(ctx, views, `delete-field`, fieldsPage, async () => {
      await profiles.fields.remove(ctx.params.name ?? '');
      await deps.audit.record({ actor: actor(ctx), action: 'profile_field.delete', target: `field:${ctx.params.name}` });
      done(ctx, '/admin/fields', 'Field removed; values users typed are kept.');
    });
  });
}
