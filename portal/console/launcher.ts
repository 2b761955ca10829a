import Router from '@koa/router';
import type { AccessRequests } from '../../lib/access-requests.ts';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { UnauthenticatedError } from '../../lib/errors.ts';
import { decide } from '../../lib/gate.ts';
import type { AppFailure } from '../../lib/apps/discovery.ts';
import { isTier, reaches, TIERS, type Tier } from '../../lib/levels.ts';
import type { Logger } from '../../lib/log.ts';
import type { PortalState } from '../http/context.ts';
import type { AppTable, MountedApp } from '../apps/dispatch.ts';
import { signedInSession } from '../sessions/user.ts';
import type { Views } from '../http/views.ts';

const TIER_LABELS = { stable: 'Stable', ea: 'Early access', devel: 'In development' } as const;

/** The launcher (`/`) and the signed-in user as JSON (`/me`). */
export function pageRoutes(deps: {
  apps: AppTable;
  views: Views;
  requests: AccessRequests;
  /** With APP_ORIGIN, where each app lives; otherwise its path here. */
  hrefOf?: (app: MountedApp) => string;
  /** Where a failed side lookup is reported (the page is served without it). */
  log?: Logger;
  /** App folders that do not serve (a broken app.json, an app that never loaded): shown as unavailable. */
  failures?: () => AppFailure[];
  /** Whether a command app's process runs (keyed by prefix); a stopped one is shown as unavailable. */
  supervisor?: { running(prefix: string): boolean };
}): Router<PortalState> {
  const { apps, views, requests } = deps;
  const hrefOf = deps.hrefOf ?? ((app: MountedApp) => `${app.prefix}/`);
  const router = new Router<PortalState>();

  router.get('/', async (ctx) => {
    const user = ctx.state.user;
    // The apps are in memory; the user's access requests are a side note from the database. When it
    // cannot give them (down, hung), the page leaves them out rather than failing or waiting.
    const userId = ctx.state.userId;
    const recent = userId === undefined ? [] : await sideLookup(() => requests.forUser(userId, 10), [], (err) => deps.log?.warn({ err, userId }, 'launcher: access requests left out'));
    const fortnight = Date.now() - 14 * 24 * 60 * 60 * 1000;
    const pendingLevels = recent.filter((r) => r.status === 'pending').map((r) => r.level);
    const q = typeof ctx.query.q === 'string' ? ctx.query.q.trim().slice(0, 200) : '';
    const needle = q.toLowerCase();
    const matches = (text: string) => needle === '' || text.toLowerCase().includes(needle);
    const cards = apps.list().map((app) => {
      const decision = decide(user, app);
      const down = !!app.command && deps.supervisor !== undefined && !deps.supervisor.running(app.prefix);
      return {
        id: `app-${app.tier}-${app.name}`,
        tier: app.tier,
        href: hrefOf(app),
        title: app.title,
        description: app.description,
        open: decision.allowed,
        // A level request cannot open an app narrowed to groups the user is not in.
        byGroups: !decision.allowed && 'reason' in decision && decision.reason === 'groups',
        groups: app.groups,
        unavailable: down,
        pending: pendingLevels.some((level) => reaches(level, app.tier)),
        search: `${app.title} ${app.description ?? ''} ${app.name}`,
      };
    });
    // Folders that serve nothing, shown (without a link) to those whose level reaches their tier.
    for (const f of deps.failures?.() ?? []) {
      if (!user || !f.name || !isTier(f.tier) || !reaches(user.level, f.tier)) continue;
      if (cards.some((c) => c.id === `app-${f.tier}-${f.name}`)) continue;
      cards.push({ id: `app-${f.tier}-${f.name}`, tier: f.tier, href: '', title: f.name, description: '', open: true, byGroups: false, groups: [], unavailable: true, pending: false, search: f.name });
    }
    const shown = cards.filter((c) => matches(c.search));
    const group = (open: boolean) =>
      TIERS.map((tier: Tier) => ({ name: tier, label: TIER_LABELS[tier], apps: shown.filter((c) => c.tier === tier && c.open === open) })).filter((t) => t.apps.length > 0);
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = views.render('launcher.njk', {
      title: 'Apps',
      user,
      q,
      total: cards.length,
      found: shown.length,
      yours: group(true),
      askable: group(false),
      csrf: signedInSession(ctx.session)?.csrf,
      pendingLevels,
      requests: recent.filter((r) => r.status === 'pending' || (r.decidedAt ?? 0) > fortnight).slice(0, 3),
    });
  });

  router.get('/me', (ctx) => {
    const user: AtriumUser | undefined = ctx.state.user;
    if (!user) throw new UnauthenticatedError();
    ctx.set('Cache-Control', 'no-store');
    ctx.body = {
      sub: user.sub,
      email: user.email,
      name: user.name,
      picture: user.picture,
      level: user.level,
      groups: user.groups,
      profile: user.profile,
      csrf: signedInSession(ctx.session)?.csrf,
    };
  });

  return router;
}

/** How long the launcher waits for a side lookup before leaving it out. */
const SIDE_LOOKUP_MS = 2_000;

/** A lookup the page can do without: its result, or `fallback` when it fails or takes too long. */
async function sideLookup<T>(lookup: () => Promise<T>, fallback: T, onFailure: (err: unknown) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer within ${SIDE_LOOKUP_MS} ms`)), SIDE_LOOKUP_MS)));
  try {
    return await Promise.race([lookup(), late]);
  } catch (err) {
    onFailure(err);
    return fallback;
  } finally {
    clearTimeout(timer);
  }
}
