import { afterAll, describe, expect, it } from 'vitest';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { EXTERNAL_AUDIENCE, NAMESPACED_ROLES, startExternalIdp, type ExternalIdp, type ProviderShape } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { freePort } from '../lib/free-port.ts';

const APPS = { 'stable/welcome/index.js': koaAppSource('welcome'), 'ea/notes/index.js': koaAppSource('notes'), 'devel/lab/index.js': koaAppSource('lab') };
const running: { portal?: TestPortal; idp?: ExternalIdp }[] = [];
afterAll(async () => {
  for (const r of running) {
    await r.portal?.stopAll();
    await r.idp?.close();
  }
});

/** A free port first, so the external provider knows the portal's redirect URI before it starts. */
async function setup(shape: ProviderShape, env: (idp: ExternalIdp) => Record<string, string>) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const idp = await startExternalIdp(shape, origin);
  const portal = await startTestPortal({ port, env: { APPS_DIR: makeAppsDir(APPS), OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: idp.clientId, OIDC_CLIENT_SECRET: idp.clientSecret, ...env(idp) } });
  running.push({ portal, idp });
  return { portal, idp };
}

/** The code flow across two origins: each side keeps its own cookies, as a browser would. */
async function login(portal: TestPortal, idp: ExternalIdp, account: string): Promise<{ agent: Agent; last: AgentResponse }> {
  const agent = new Agent(portal.origin);
  const idpAgent = new Agent(new URL(idp.issuer).origin);
  const start = await agent.get('/login?returnTo=/me');
  const authorize = new URL(start.location!);
  authorize.searchParams.set('login_hint', account);
  let next: string | undefined = authorize.href;
  let last = start;
  for (let hops = 0; next && hops < 15; hops++) {
    const client = new URL(next).origin === portal.origin ? agent : idpAgent;
    last = await client.get(next, { Accept: 'application/json, text/html' });
    next = last.status >= 300 && last.status < 400 ? last.location : undefined;
  }
  return { agent, last };
}

describe('Auth0-shaped provider', () => {
  it('sends the audience, reads the permissions claim, and signs out through /v2/logout', async () => {
    const { portal, idp } = await setup('auth0', (p) => ({
      OIDC_AUDIENCE: EXTERNAL_AUDIENCE,
      ACCESS_CLAIM: 'permissions',
      OIDC_LOGOUT_URL: `${p.issuer}v2/logout?client_id={clientId}&returnTo={returnTo}`,
    }));
    const { agent, last } = await login(portal, idp, 'ext-ea');
    expect(last.status).toBe(200);
    expect(last.json()).toMatchObject({ email: 'ext.ea@corp.example', level: 'ea' });
    expect(idp.authRequests.at(-1)).toMatchObject({ audience: EXTERNAL_AUDIENCE, code_challenge_method: 'S256', client_id: idp.clientId });
    expect((await agent.get('/apps/ea/notes/', { Accept: 'application/json' })).status).toBe(200);
    expect((await agent.get('/apps/devel/lab/')).status).toBe(403);
    // No embedded provider and no demo accounts with an external issuer.
    expect((await agent.get('/idp/.well-known/openid-configuration')).status).toBe(404);
    expect(await portal.portal.users.localAccount('admin@example.com')).toBeUndefined();

    const csrf = await agent.csrfToken();
    const out = await agent.request('POST', '/logout', { form: { _csrf: csrf } });
    expect(out.status).toBe(303);
    expect(out.location).toBe(`${idp.issuer}v2/logout?client_id=${idp.clientId}&returnTo=${encodeURIComponent(`${portal.origin}/`)}`);
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
  });

  it('reads a namespaced custom claim from the ID token', async () => {
    const { portal, idp } = await setup('auth0', () => ({ OIDC_AUDIENCE: EXTERNAL_AUDIENCE, ACCESS_CLAIM: NAMESPACED_ROLES }));
    const { last } = await login(portal, idp, 'ext-devel');
    expect(last.json()).toMatchObject({ email: 'ext.devel@corp.example', level: 'devel' });
  });
});

describe('Keycloak-shaped provider', () => {
  it('reads realm roles, verifies its PS256 access tokens as bearer tokens, and logs out via end_session', async () => {
    const { portal, idp } = await setup('keycloak', () => ({ OIDC_AUDIENCE: EXTERNAL_AUDIENCE, ACCESS_CLAIM: 'realm_access.roles' }));
    expect(idp.issuer).toMatch(/\/realms\/atrium$/);
    const { agent, last } = await login(portal, idp, 'ext-devel');
    expect(last.json()).toMatchObject({ level: 'devel' });
    expect((await agent.get('/apps/devel/lab/', { Accept: 'application/json' })).status).toBe(200);

    const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', agent.cookie('atrium.sid')!.value).executeTakeFirstOrThrow();
    const access = JSON.parse(row.data).tokens.access as string;
    const bearer = await fetch(`${portal.origin}/apps/devel/lab/`, { headers: { Authorization: `Bearer ${access}`, Accept: 'application/json' } });
    expect(bearer.status).toBe(200);

    const csrf = await agent.csrfToken();
    const out = await agent.request('POST', '/logout', { form: { _csrf: csrf } });
    const end = new URL(out.location!);
    expect(`${end.origin}${end.pathname}`).toBe(`${idp.issuer}/session/end`);
    expect(end.searchParams.get('id_token_hint')).toMatch(/^eyJ/);
  });

  it('a user without an access role signs in with no level', async () => {
    const { portal, idp } = await setup('keycloak', () => ({ OIDC_AUDIENCE: EXTERNAL_AUDIENCE, ACCESS_CLAIM: 'realm_access.roles' }));
    const { agent, last } = await login(portal, idp, 'ext-none');
    expect(last.json()).toMatchObject({ email: 'ext.none@corp.example', level: null });
    expect((await agent.get('/apps/stable/welcome/')).status).toBe(403);
  });
});

describe('a generic provider', () => {
  it('grants levels as scopes, and the directory adds to them', async () => {
    const { portal, idp } = await setup('generic', () => ({ OIDC_AUDIENCE: EXTERNAL_AUDIENCE, OIDC_SCOPE: 'openid profile email offline_access access:stable access:ea' }));
    const { agent, last } = await login(portal, idp, 'ext-ea');
    expect(last.json()).toMatchObject({ level: 'ea' });
    // An admin puts the external user in devel: the directory grant adds to the token's.
    await portal.portal.admin.addMember('test', 'devel', 'ext.ea@corp.example');
    expect((await agent.get('/me', { Accept: 'application/json' })).json().level).toBe('devel');
    expect((await agent.get('/apps/devel/lab/', { Accept: 'application/json' })).status).toBe(200);
  });
});
