import Router from '@koa/router';
import { probeDatabase } from '../../lib/db/probe.ts';
import type { Database } from '../../lib/db/schema.ts';
import type { RelyingParty } from '../../lib/oidc/relying-party.ts';
import type { IsolationReport } from '../apps/isolation.ts';

/** How long /readyz waits for the database's answer: well inside a balancer's probe timeout. */
const DATABASE_PROBE_MS = 1_500;

/**
 * Liveness says the process answers; readiness says its dependencies do (database, provider, Redis), so a
 * load balancer sends traffic only to an instance that can sign people in. Both answer any Host (a
 * kubelet's probe names the pod's IP; see known-hosts.ts); under a Host the portal does not serve,
 * /readyz leaves out the isolation report, so a page that reaches it by DNS rebinding learns only up or down.
 */
export function healthRoutes(deps: { database: Database; rp: RelyingParty; redis?: { ping(): Promise<boolean> } | undefined; isolation?: IsolationReport }): Router {
  const router = new Router();
  router.get('/healthz', (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const checks: Record<string, 'ok' | 'failing'> = {};
    // The provider and Redis are asked at once, each within its own timeout (the provider's probe
    // 1.5 s, Redis's command timeout), so a dead dependency makes this answer "failing" within 2 s.
    const provider = deps.rp.ready();
    const redis = deps.redis?.ping();
    // A real query, given a deadline: a hung database is 'failing' within it, never a hung probe.
    checks.database = (await probeDatabase(deps.database, DATABASE_PROBE_MS)) ? 'ok' : 'failing';
    checks.provider = (await provider) ? 'ok' : 'failing';
    if (redis) checks.redis = (await redis) ? 'ok' : 'failing';
    const ready = Object.values(checks).every((c) => c === 'ok');
    ctx.status = ready ? 200 : 503;
    // Isolation does not gate readiness (the portal works), but an operator reading this learns what is weak.
    const isolation = deps.isolation && !(ctx.state as { hostUnknown?: true }).hostUnknown ? { isolation: deps.isolation } : {};
    ctx.body = { status: ready ? 'ready' : 'not ready', checks, ...isolation };
  });
  return router;
}
