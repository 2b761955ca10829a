import type Router from '@koa/router';
import type { PortalState } from '../../http/context.ts';
import { appStates } from './app-states.ts';
import { render, type AdminDeps } from './kit.ts';

/** Apps: each folder once, with its state, its manifest, and for upstreams their health. */
export function appPages(router: Router<PortalState>, deps: AdminDeps): void {
  router.get('/apps', async (ctx) => {
    const apps = await appStates(deps);
    const counts = { serving: 0, stale: 0, closed: 0, failed: 0 };
    for (const app of apps) counts[app.state] += 1;
    render(ctx, deps.views, 'apps.njk', { title: 'Apps', crumbs: [{ label: 'Apps' }], apps, counts });
  });
}
