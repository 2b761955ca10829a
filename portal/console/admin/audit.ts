import type Router from '@koa/router';
import type { PortalContext, PortalState } from '../../http/context.ts';
import { describeChange } from './audit-changes.ts';
import { exportStream, type ExportFormat } from './audit-export.ts';
import { auditQuery } from './audit-filter.ts';
import { actor, pageNumber, render, withQuery, type AdminDeps } from './kit.ts';

const AUDIT_PAGE = 50;
const EXPORT_TYPES: Record<ExportFormat, string> = { csv: 'text/csv; charset=utf-8', jsonl: 'application/x-ndjson; charset=utf-8' };

/** The audit log: filtered (a GET form), paged, readable changes, and an export of the same filter. */
export function auditPages(router: Router<PortalState>, deps: AdminDeps): void {
  const { audit, views } = deps;

  router.get('/audit', async (ctx) => {
    const { filter, form } = auditQuery(ctx);
    const requested = pageNumber(ctx.query.page);
    const [{ entries, total }, actions] = await Promise.all([audit.page({ page: requested, pageSize: AUDIT_PAGE, filter }), audit.actions()]);
    const pages = Math.max(1, Math.ceil(total / AUDIT_PAGE));
    const filtered = Object.keys(filter).length > 0;
    render(ctx, views, 'audit.njk', {
      title: 'Audit log',
      crumbs: [{ label: 'Audit log' }],
      form,
      filtered,
      actions,
      total,
      entries: entries.map((e) => ({ ...e, when: new Date(e.at).toISOString(), change: describeChange(e.before, e.after) })),
      page: requested,
      pages,
      newer: requested > 1 ? withQuery('/admin/audit', { ...form, page: requested - 1 }) : undefined,
      older: requested < pages ? withQuery('/admin/audit', { ...form, page: requested + 1 }) : undefined,
      exportCsv: withQuery('/admin/audit/export.csv', form),
      exportJsonl: withQuery('/admin/audit/export.jsonl', form),
      filterBy: (name: string, value: string) => withQuery('/admin/audit', { ...form, [name]: value }),
    });
  });

  const exportRoute = (format: ExportFormat) => async (ctx: PortalContext) => {
    const { filter } = auditQuery(ctx);
    // Who took a copy of the log, and of what, is itself worth a line in it.
    await audit.record({ actor: actor(ctx), action: 'audit.export', target: 'audit_log', after: { format, ...filter } });
    const stamp = new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
    ctx.set('Cache-Control', 'no-store');
    ctx.set('Content-Disposition', `attachment; filename="atrium-audit-${stamp}.${format}"`);
    ctx.type = EXPORT_TYPES[format];
    ctx.body = exportStream(audit.stream(filter), format);
  };
  router.get('/audit/export.csv', exportRoute('csv'));
  router.get('/audit/export.jsonl', exportRoute('jsonl'));
}
