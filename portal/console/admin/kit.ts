import type { AccessRequests } from '../../../lib/access-requests.ts';
import type { AccessIndex } from '../../../lib/directory/access.ts';
import type { DirectoryAdmin } from '../../../lib/directory/admin.ts';
import type { AuditLog } from '../../../lib/directory/audit.ts';
import type { GroupDirectory } from '../../../lib/directory/groups.ts';
import type { UserDirectory } from '../../../lib/directory/users.ts';
import type { ProfileService } from '../../../lib/profile/service.ts';
import type { CachedSessionStore } from '../../../lib/sessions/cached-store.ts';
import type { PortalContext } from '../../http/context.ts';
import type { AppRegistry } from '../../apps/app-registry.ts';
import type { Supervisor } from '../../apps/supervisor.ts';
import { signedInSession } from '../../sessions/user.ts';
import type { Views } from '../../http/views.ts';
import type { FactorDirectory } from '../../../lib/factors/factor-directory.ts';

export interface AdminDeps {
  admin: DirectoryAdmin;
  users: UserDirectory;
  groups: GroupDirectory;
  access: AccessIndex;
  audit: AuditLog;
  requests: AccessRequests;
  profiles: ProfileService;
  /** The portal's store: it also ends the embedded provider's sessions when sessions are revoked. */
  sessions: CachedSessionStore;
  registry: AppRegistry;
  /** What the Apps page says about `command` apps' processes (read only). */
  supervisor: Pick<Supervisor, 'running' | 'restarts' | 'lastErrorLine'>;
  views: Views;
  publicOrigin: string;
  /** Second factors of local accounts, and the groups that require one. */
  factors: FactorDirectory;
}

interface Flash {
  kind: 'ok' | 'error';
  text: string;
}

/** One step of the breadcrumb trail; the last one is the page itself and has no link. */
export interface Crumb {
  label: string;
  href?: string;
}

/** The acting admin as the audit log names them. */
export function actor(ctx: PortalContext): string {
  const user = ctx.state.user;
  return user ? (user.email ?? user.sub) : 'unknown';
}

/**
 * Renders an admin page with the navigation, the breadcrumbs, the CSRF token and any flash message.
 * `crumbs` lists the trail below "Admin"; the last one is this page.
 */
export function render(ctx: PortalContext, views: Views, template: string, data: Record<string, unknown> & { crumbs?: Crumb[] }): void {
  const session = ctx.session as unknown as { flash?: Flash } | null;
  const flash = session?.flash;
  if (session && flash) delete session.flash;
  ctx.set('Cache-Control', 'no-store');
  ctx.type = 'html';
  ctx.body = views.render(`admin/${template}`, {
    ...data,
    crumbs: [{ label: 'Admin', href: '/admin/users' }, ...(data.crumbs ?? [])],
    user: ctx.state.user,
    csrf: signedInSession(ctx.session)?.csrf,
    flash,
    path: ctx.path,
  });
}

/** After a successful change: a flash message and a 303 back to a page (POST-redirect-GET). */
export function done(ctx: PortalContext, to: string, text: string): void {
  (ctx.session as unknown as { flash?: Flash }).flash = { kind: 'ok', text };
  ctx.status = 303;
  ctx.redirect(to);
}

export function field(ctx: PortalContext, name: string): string {
  const body = (ctx.request as { body?: Record<string, unknown> }).body ?? {};
  const value = body[name];
  return typeof value === 'string' ? value : '';
}

/** A query parameter as one string (a repeated one is not a string: empty). */
export function queryText(ctx: PortalContext, name: string, max = 200): string {
  const value = ctx.query[name];
  return typeof value === 'string' ? value.slice(0, max) : '';
}

export function pageNumber(value: unknown): number {
  const n = Number(typeof value === 'string' ? value : 1);
  return Number.isInteger(n) && n >= 1 && n <= 100_000 ? n : 1;
}

/** The slice of a list one page shows, and how many pages there are. */
export function paged<T>(items: T[], page: number, size: number): { items: T[]; page: number; pages: number; total: number } {
  const pages = Math.max(1, Math.ceil(items.length / size));
  const current = Math.min(page, pages);
  return { items: items.slice((current - 1) * size, current * size), page: current, pages, total: items.length };
}

/** `/admin/x?a=1&page=2`: the same page with one parameter changed, the others kept. */
export function withQuery(path: string, query: Record<string, string | number | undefined>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') params.set(key, String(value));
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}
