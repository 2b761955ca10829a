import type Router from '@koa/router';
import { BadRequestError } from '../../../lib/errors.ts';
import type { PortalState } from '../../http/context.ts';
import { actor, done, field, pageNumber, render, type AdminDeps } from './kit.ts';

const AUDIT_PAGE = 50;

/** Apps and their load errors, the audit log, access requests and the profile field schema. */
export function otherPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { registry, audit, requests, profiles, views } = deps;

  router.get('/apps', (ctx) => {
    render(ctx, views, 'apps.njk', {
      title: 'Apps',
      apps: registry.table.list().map((a) => ({ prefix: a.prefix, tier: a.tier, title: a.title, description: a.description, groups: a.groups, manifest: JSON.stringify(a.manifest, null, 2), dir: a.dir })),
      failures: registry.failures(),
    });
  });

  router.get('/audit', async (ctx) => {
    const page = pageNumber(ctx.query.page);
    const { entries, total } = await audit.page({ page, pageSize: AUDIT_PAGE });
    render(ctx, views, 'audit.njk', {
      title: 'Audit log',
      entries: entries.map((e) => ({ ...e, when: new Date(e.at).toISOString(), before: e.before === undefined ? '' : JSON.stringify(e.before), after: e.after === undefined ? '' : JSON.stringify(e.after) })),
      page,
      pages: Math.max(1, Math.ceil(total / AUDIT_PAGE)),
    });
  });

  router.get('/requests', async (ctx) => {
    render(ctx, views, 'requests.njk', { title: 'Access requests', pending: await requests.pending() });
  });

  router.post('/requests/:id', async (ctx) => {
    const id = Number(ctx.params.id);
    if (!Number.isInteger(id) || id < 1) throw new BadRequestError('Unknown request.');
    const decision = field(ctx, 'decision');
    if (decision !== 'approved' && decision !== 'denied') throw new BadRequestError('Decide "approved" or "denied".');
    const request = await requests.decide(actor(ctx), id, decision, field(ctx, 'note'));
    done(ctx, '/admin/requests', `${request.email ?? 'The user'}'s request for ${request.level} was ${decision}.`);
  });

  router.get('/fields', async (ctx) => {
    render(ctx, views, 'fields.njk', { title: 'Profile fields', fields: await profiles.fields.list() });
  });

  router.post('/fields', async (ctx) => {
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

  router.post('/fields/:name/delete', async (ctx) => {
    await profiles.fields.remove(ctx.params.name ?? '');
    await deps.audit.record({ actor: actor(ctx), action: 'profile_field.delete', target: `field:${ctx.params.name}` });
    done(ctx, '/admin/fields', 'Field removed; values users typed are kept.');
  });
}
