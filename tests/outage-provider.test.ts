import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { UnauthenticatedError, UpstreamError } from '../lib/errors.ts';
import { freePort } from '../lib/free-port.ts';
import { createLogger } from '../lib/log.ts';
import type { RelyingParty, TokenSet } from '../lib/oidc/relying-party.ts';
import type { PortalSession } from '../portal/http/context.ts';
import { TokenRefresher } from '../portal/sessions/refresher.ts';
import { PROVIDER_OUTAGE_GRACE_MS, renewTokens } from '../portal/sessions/token-renewal.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { loopRequests, pollUntil, summary, withinDeadline } from './helpers/load.ts';
import { OUTAGE_AUDIENCE, startOutageIdp, type IdpMode, type OutageIdp } from './helpers/outage-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

/**
 * The identity provider going away (refusing connections) or hanging (accepting and never
 * answering): signed-in users keep working past their access token's expiry, within the grace;
 * no request waits longer than a provider call's timeout; /readyz says the provider is failing;
 * and once it is back the sessions are refreshed in the background.
 */
const TOKEN_TTL_S = 4;
/** A provider call's timeout (5 s) and a wide margin for a loaded machine: only a failure waits this long. */
const REQUEST_DEADLINE_MS = 15_000;
const EVENT_DEADLINE_MS = 30_000;

let idp: OutageIdp;
let portal: TestPortal;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
const agents: Agent[] = [];

beforeAll(async () => {
  upstream = await startEchoUpstream();
  const port = await freePort();
  idp = await startOutageIdp(`http://127.0.0.1:${port}`, TOKEN_TTL_S);
  portal = await startTestPortal({
    port,
    env: {
      APPS_DIR: makeAppsDir({ 'ea/inproc/index.js': koaAppSource('inproc'), 'ea/echo/app.json': JSON.stringify({ upstream: upstream.url }) }),
      OIDC_ISSUER: idp.issuer,
      OIDC_CLIENT_ID: idp.clientId,
      OIDC_CLIENT_SECRET: idp.clientSecret,
      OIDC_AUDIENCE: OUTAGE_AUDIENCE,
      OIDC_SCOPE: 'openid profile email offline_access access:stable access:ea',
    },
  });
  for (let i = 0; i < 2; i++) agents.push(await signIn());
});
afterAll(async () => {
  await portal?.stopAll();
  await idp?.close();
  await upstream?.close();
});

/** The code flow across the two origins, each side with its own cookies; lands on /me. */
async function signIn(): Promise<Agent> {
  const agent = new Agent(portal.origin);
  const idpAgent = new Agent(idp.issuer);
  let next: string | undefined = `${portal.origin}/login?returnTo=/me`;
  let last: AgentResponse | undefined;
  for (let hops = 0; next && hops < 15; hops++) {
    const client: Agent = new URL(next).origin === portal.origin ? agent : idpAgent;
    last = await client.get(next, { Accept: 'application/json, text/html' });
    next = last.status >= 300 && last.status < 400 ? last.location : undefined;
  }
  if (last?.status !== 200) throw new Error(`sign-in failed: ${last?.status} ${last?.text.slice(0, 200)}`);
  return agent;
}

async function tokensOf(agent: Agent): Promise<{ access: string; expiresAt: number }> {
  const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', agent.cookie('atrium.sid')!.value).executeTakeFirstOrThrow();
  return (JSON.parse(row.data) as PortalSession).tokens as { access: string; expiresAt: number };
}

async function readiness(): Promise<{ status: number; provider: string }> {
  // A readiness probe must answer, and soon: a hung one fails this long before the test's own limit.
  const response = await withinDeadline(fetch(`${portal.origin}/readyz`), 5_000, '/readyz');
  return { status: response.status, provider: ((await response.json()) as { checks: Record<string, string> }).checks.provider ?? '' };
}

const PATHS = ['/apps/ea/inproc/', '/apps/ea/echo/', '/me'];

async function rideOut(mode: Exclude<IdpMode, 'up'>): Promise<void> {
  const load = loopRequests(
    agents.map((agent, i) => ({ name: `user${i}`, agent, paths: PATHS })),
    REQUEST_DEADLINE_MS,
  );
  try {
    await idp.set(mode);
    const down = await pollUntil(readiness, (r) => r.status === 503, EVENT_DEADLINE_MS);
    expect(down).toEqual({ status: 503, provider: 'failing' });
    // The tokens the sessions hold now are the last the provider gave: none can be refreshed.
    const before = await Promise.all(agents.map(tokensOf));

    // Past every session's access-token expiry, well within the grace: the users keep working.
    const expired = Math.max(...before.map((t) => t.expiresAt));
    const afterExpiry = () => load.answers.filter((a) => a.at > expired + 1_000);
    await pollUntil(async () => afterExpiry().length, (n) => n >= 4 * agents.length * PATHS.length, EVENT_DEADLINE_MS);
    expect(afterExpiry().length).toBeGreaterThanOrEqual(4 * agents.length * PATHS.length);

    await idp.set('up');
    // Refreshed in the background: the users' requests do not wait for it, the store gets new tokens.
    for (const [i, agent] of agents.entries()) {
      const after = await pollUntil(() => tokensOf(agent), (t) => t.access !== before[i]!.access && t.expiresAt > Date.now(), EVENT_DEADLINE_MS);
      expect(after.access).not.toBe(before[i]!.access);
    }
    expect((await pollUntil(readiness, (r) => r.status === 200, EVENT_DEADLINE_MS)).provider).toBe('ok');
  } finally {
    await load.stop();
    await idp.set('up');
  }
  console.info(`provider ${mode}:`, JSON.stringify(summary(load.answers)));
  expect(load.hung).toEqual([]);
  expect(load.answers.filter((a) => a.status !== 200)).toEqual([]);
}

describe('the identity provider goes away', () => {
  it('hangs (accepts, never answers): users work on past their token’s expiry, nothing waits on it, /readyz says failing', { timeout: 180_000 }, async () => {
    await rideOut('hang');
  });

  it('refuses connections: the same, and the sessions refresh once it is back', { timeout: 180_000 }, async () => {
    await rideOut('down');
  });
});

describe('the refresh memo', () => {
  const fakeRp = (lifetimeMs: number) => {
    const rp = {
      calls: 0,
      async refresh(): Promise<TokenSet> {
        rp.calls += 1;
        const now = Date.now();
        return { issuedAt: now, accessToken: `access-${rp.calls}`, refreshToken: `refresh-${rp.calls}`, idToken: undefined, expiresAt: now + lifetimeMs, scope: undefined, idClaims: {} };
      },
    };
    return rp;
  };

  it('never hands out a remembered refresh whose access token has expired', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      // The provider issues tokens that live 5 s, shorter than the memo's minute.
      const rp = fakeRp(5_000);
      const refresher = new TokenRefresher(rp as unknown as RelyingParty);
      const first = await refresher.refresh('refresh-0');
      // Still within the minute a result used to be remembered, but past that token's expiry.
      vi.setSystemTime(Date.now() + 20_000);
      const second = await refresher.refresh('refresh-0');
      expect(second.accessToken).not.toBe(first.accessToken);
      expect(second.expiresAt).toBeGreaterThan(Date.now());
      expect(rp.calls).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shares one refresh among requests while its token lives', async () => {
    const rp = fakeRp(600_000);
    const refresher = new TokenRefresher(rp as unknown as RelyingParty);
    const [a, b] = await Promise.all([refresher.refresh('refresh-0'), refresher.refresh('refresh-0')]);
    const c = await refresher.refresh('refresh-0');
    expect(new Set([a.accessToken, b.accessToken, c.accessToken]).size).toBe(1);
    expect(rp.calls).toBe(1);
  });
});

describe('the provider-outage grace', () => {
  const session = (expiresAt: number) => ({ sub: 's', uid: 1, tokens: { access: 'a', refresh: 'r', expiresAt, issuedAt: expiresAt - 60_000 } }) as unknown as PortalSession;
  const deps = (failure: Error) => ({
    refresher: new TokenRefresher({ refresh: () => Promise.reject(failure) } as unknown as RelyingParty),
    accessClaim: 'scope',
    tokenGrantsLevel: true,
    log: createLogger('silent', false),
  });

  it('carries a session on within the grace past its expiry, and not beyond it', async () => {
    const outage = new UpstreamError('provider down', { code: 'idp_error' });
    const now = Date.now();
    expect(await renewTokens(session(now - PROVIDER_OUTAGE_GRACE_MS + 10_000), deps(outage), now)).toBeUndefined();
    await expect(renewTokens(session(now - PROVIDER_OUTAGE_GRACE_MS - 10_000), deps(outage), now)).rejects.toBe(outage);
  });

  it('ends the session when the provider refuses the refresh, outage or not', async () => {
    const refusal = new UnauthenticatedError('refused', { code: 'session_expired' });
    expect(await renewTokens(session(Date.now() - 1_000), deps(refusal))).toBe('ended');
  });
});
