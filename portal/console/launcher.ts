import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { AccessRequests } from '../../lib/access-requests.ts';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { BadRequestError, NotFoundError, UnauthenticatedError } from '../../lib/errors.ts';
import type { AppKey, RecentApps } from '../../lib/recent-apps.ts';
import { decide } from '../../lib/gate.ts';
import type { AppFailure } from '../../lib/apps/discovery.ts';
import { isTier, reaches, TIERS, type Tier } from '../../lib/levels.ts';
import type { Logger } from '../../lib/log.ts';
import type { PortalState } from '../http/context.ts';
import type { AppTable, MountedApp } from '../apps/dispatch.ts';
import { signedInSession } from '../sessions/user.ts';
import type { Views } from '../http/views.ts';
import { assertCsrf } from '../http/csrf.ts';
import { chromeRoutes } from './chrome.ts';
import { sideLookup } from '../http/side-lookup.ts';

const TIER_LABELS = { stable: 'Stable', ea: 'Early access', devel: 'In development' } as const;
/** How many recently opened apps the launcher shows first. */
const RECENT_SHOWN = 4;

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
  /** The apps each user opened last ("Recently opened"); without it the launcher has no such row. */
  recent?: RecentApps;
  /** The portal's origin, which the launcher's own POSTs must come from (CSRF). */
  publicOrigin?: string;
}): Router<PortalState> {
  const { apps, views, requests } = deps;
  const hrefOf = deps.hrefOf ?? ((app: MountedApp) => `${app.prefix}/`);
  const router = new Router<PortalState>();

  router.get('/', async (ctx) => {
    const user = ctx.state.user;
    // The apps are in memory; the user's access requests are a side note from the database. When it
    // cannot give them (down, hung), the page leaves them out rather than failing or waiting.
    const userId = ctx.state.userId;
    const [recent, opened] =
      userId === undefined
        ? [[], []]
        : await Promise.all([
            sideLookup(() => requests.forUser(userId, 10), [], (err) => deps.log?.warn({ err, userId }, 'launcher: access requests left out')),
            deps.recent ? sideLookup(() => deps.recent!.list(userId), [], (err) => deps.log?.warn({ err, userId }, 'launcher: recent apps left out')) : [],
          ]);
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
        // An app that needs a second factor opens after one more sign-in (step-up): it is not locked.
        open: decision.allowed || ('reason' in decision && decision.reason === 'mfa'),
        // A level request cannot open an app narrowed to groups the user is not in.
        byGroups: !decision.allowed && 'reason' in decision && decision.reason === 'groups',
        groups: app.groups,
        unavailable: down,
        pending: pendingLevels.some((level) => reaches(level, app.tier)),
        search: `${app.title} ${app.description ?? ''} ${app.name}`,
        key: `${app.tier}/${app.name}`,
      };
    });
    // Folders that serve nothing, shown (without a link) to those whose level reaches their tier.
    for (const f of deps.failures?.() ?? []) {
      if (!user || !f.name || !isTier(f.tier) || !reaches(user.level, f.tier)) continue;
      if (cards.some((c) => c.id === `app-${f.tier}-${f.name}`)) continue;
      cards.push({ id: `app-${f.tier}-${f.name}`, tier: f.tier, href: '', title: f.name, description: '', open: true, byGroups: false, groups: [], unavailable: true, pending: false, search: f.name, key: `${f.tier}/${f.name}` });
    }
    const shown = cards.filter((c) => matches(c.search));
    const group = (open: boolean) =>
      TIERS.map((tier: Tier) => ({ name: tier, label: TIER_LABELS[tier], apps: shown.filter((c) => c.tier === tier && c.open === open) })).filter((t) => t.apps.length > 0);
    // The apps opened last that the user may still open, newest first, shown before the rest (a
    // search shows only matches, so not these). Ids of their own: the same app is in its tier too.
    const recently = q
      ? []
      : opened.flatMap(({ app }) => cards.filter((c) => c.key === app && c.open && !c.unavailable)).map((c) => ({ ...c, id: `recent-${c.id}` })).slice(0, RECENT_SHOWN);
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = views.render('launcher.njk', {
      recently,
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

  // The launcher's script reports a followed link here (navigator.sendBeacon, with the CSRF token):
  // the one write "Recently opened" costs, made when a person opens an app from the launcher,
  // never on the /apps/ path.
  router.post('/recent-apps', bodyParser({ enableTypes: ['form', 'json'], formLimit: '2kb', jsonLimit: '2kb' }), async (ctx) => {
    const user = ctx.state.user;
    const userId = ctx.state.userId;
    if (!user || userId === undefined || !signedInSession(ctx.session)) throw new UnauthenticatedError();
    assertCsrf(ctx, deps.publicOrigin ?? ctx.origin);
    const key = ((ctx.request as { body?: Record<string, unknown> }).body ?? {}).app;
    const [tier, name, ...rest] = typeof key === 'string' && key.length <= 160 ? key.split('/') : [];
    if (!tier || !name || rest.length > 0 || !isTier(tier)) throw new BadRequestError('Name an app as tier/name, e.g. ea/notes.', { code: 'bad_app' });
    const app = apps.get(tier, name);
    const decision = app && decide(user, app);
    // Only an app this user may open (after a step-up, if it asks for one) is remembered: nobody
    // learns of others, or fills the list with them.
    if (!decision || !(decision.allowed || ('reason' in decision && decision.reason === 'mfa'))) throw new NotFoundError('There is no such app.');
    await deps.recent?.remember(userId, `${tier}/${name}` as AppKey);
    ctx.set('Cache-Control', 'no-store');
    ctx.status = 204;
  });

  chromeRoutes(router, { views });

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
