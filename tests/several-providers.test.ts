import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import { AccessIndex } from '../lib/directory/access.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { GroupDirectory } from '../lib/directory/groups.ts';
import { UserDirectory } from '../lib/directory/users.ts';
import { freePort } from '../lib/free-port.ts';
import { createLogger } from '../lib/log.ts';
import { EMBEDDED_ISSUER_KEY, ProviderAccounts } from '../lib/providers/provider-accounts.ts';
import { TokenRefresher } from '../portal/sessions/refresher.ts';
import { renewTokens } from '../portal/sessions/token-renewal.ts';
import { Agent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { createTestDatabase, DIALECTS } from './helpers/databases.ts';
import { EXTERNAL_AUDIENCE, NAMESPACED_GROUPS, signInAt, startExternalIdp, type ExternalIdp } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { configProblems } from './helpers/config-problems.ts';

const TTL_S = 4;
const json = { Accept: 'application/json' };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let portal: TestPortal;
let corp: ExternalIdp;
let partners: ExternalIdp;
const agents = {} as { corp: Agent; partners: Agent };

/** Corporate SSO (Keycloak-shaped) first, local accounts, then a partners' provider (Auth0-shaped). */
beforeAll(async () => {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  corp = await startExternalIdp('keycloak', origin, { accessTokenTtl: TTL_S, backchannel: true });
  partners = await startExternalIdp('auth0', origin, { accessTokenTtl: TTL_S, backchannel: true });
  const providers = [
    { id: 'corp', title: 'Corporate SSO', issuer: corp.issuer, clientId: corp.clientId, clientSecretEnv: 'CORP_SECRET', audience: EXTERNAL_AUDIENCE, accessClaim: 'realm_access.roles', groupsClaim: 'groups' },
    { id: 'local', title: 'Local account', embedded: true },
    { id: 'partners', title: 'Partner login', issuer: partners.issuer, clientId: partners.clientId, clientSecret: partners.clientSecret, audience: EXTERNAL_AUDIENCE, accessClaim: 'permissions', groupsClaim: NAMESPACED_GROUPS, logoutUrl: `${partners.issuer}v2/logout?client_id={clientId}&returnTo={returnTo}` },
  ];
  portal = await startTestPortal({ port, env: { APPS_DIR: makeAppsDir({ 'ea/notes/index.js': koaAppSource('notes'), 'devel/lab/index.js': koaAppSource('lab') }), PROVIDERS: JSON.stringify(providers), CORP_SECRET: corp.clientSecret } });
  corp.setGroups('ext-ea', ['Engineering']);
  partners.setGroups('ext-ea', ['Engineering']);
  agents.corp = new Agent(portal.origin);
  agents.partners = new Agent(portal.origin);
  expect((await signInAt(agents.corp, corp, 'ext-ea', '/login?provider=corp&returnTo=/me')).status).toBe(200);
  expect((await signInAt(agents.partners, partners, 'ext-ea', '/login?provider=partners&returnTo=/me')).status).toBe(200);
});
afterAll(async () => {
  await portal?.stopAll();
  await corp?.close();
  await partners?.close();
});

const me = async (agent: Agent) => {
  const answer = await agent.get('/me', json);
  return answer.status === 200 ? (answer.json() as { sub: string; level: string | null; groups: string[]; email: string }) : answer.status;
};
const sessionOf = async (agent: Agent) => {
  const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', agent.cookie('atrium.sid')!.value).executeTakeFirstOrThrow();
  return JSON.parse(row.data) as { tokens: { access: string }; idpSid?: string };
};
const accessTokenOf = async (agent: Agent) => (await sessionOf(agent)).tokens.access;
const bearer = (token: string) => fetch(`${portal.origin}/me`, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });

describe('several providers side by side', () => {
  it('the sign-in page offers each provider, as links that carry returnTo', async () => {
    const page = await new Agent(portal.origin).get('/login?returnTo=%2Fapps%2Fea%2Fnotes%2F');
    expect(page.status).toBe(200);
    expect([...page.text.matchAll(/<a class="button" href="([^"]+)" data-provider="([^"]+)">Sign in with ([^<]+)<\/a>/g)].map((m) => [m[2], m[3], m[1]!.replace(/&amp;/g, '&')])).toEqual([
      ['corp', 'Corporate SSO', '/login?returnTo=%2Fapps%2Fea%2Fnotes%2F&provider=corp'],
      ['local', 'Local account', '/login?returnTo=%2Fapps%2Fea%2Fnotes%2F&provider=local'],
      ['partners', 'Partner login', '/login?returnTo=%2Fapps%2Fea%2Fnotes%2F&provider=partners'],
    ]);
    expect((await new Agent(portal.origin).get('/login?provider=nope')).status).toBe(400);
    // Signed in, /login (a step-up, say) goes back to the provider the session came from.
    const again = await agents.partners.get('/login?returnTo=/me');
    expect(again.status).toBe(302);
    expect(new URL(again.location!).origin).toBe(new URL(partners.issuer).origin);
    expect((await new Agent(portal.origin).get('/login?provider=corp&provider=local')).status).toBe(400);
  });

  it('two providers with the same sub are two users, each with its own groups and subject', async () => {
    expect(await me(agents.corp)).toMatchObject({ sub: 'ext-ea', level: 'ea', groups: ['corp:engineering'] });
    expect(await me(agents.partners)).toMatchObject({ sub: 'partners|ext-ea', level: 'ea', groups: ['partners:engineering'] });
    const users = await portal.portal.users.byEmail('ext.ea@corp.example');
    expect(users.map((u) => u.sub).sort()).toEqual(['ext-ea', 'partners|ext-ea']);
    const identities = await portal.portal.database.db.selectFrom('provider_identities').select(['issuer', 'subject']).orderBy('issuer').execute();
    expect(identities.map((i) => [i.issuer, i.subject]).sort()).toEqual([[corp.issuer, 'ext-ea'], [partners.issuer, 'ext-ea']].sort());

    // A directory grant to one of them is not the other's.
    await portal.portal.admin.addMember('test', 'devel', 'ext-ea');
    expect(await me(agents.corp)).toMatchObject({ level: 'devel' });
    expect(await me(agents.partners)).toMatchObject({ level: 'ea' });
  });

  it('local accounts sign in through the embedded provider beside them', async () => {
    const agent = new Agent(portal.origin);
    const hops = await agent.follow('/login?provider=local&returnTo=/me');
    const form = hops.at(-1)!;
    const action = /<form method="post" action="([^"]+)"/.exec(form.text)?.[1];
    expect(action).toBeDefined();
    const posted = await agent.request('POST', action!.replace(/&amp;/g, '&'), { form: { email: 'stable@example.com', password: DEMO_PASSWORD } });
    const after = (await agent.follow(posted.location!)).at(-1)!;
    expect(after.json()).toMatchObject({ email: 'stable@example.com', level: 'stable' });
    expect(after.json().sub).toMatch(/^[0-9a-f-]{36}$/);
    // Its access token works as a bearer token too: the embedded issuer picks the embedded keys.
    const local = await bearer(await accessTokenOf(agent));
    expect(await local.json()).toMatchObject({ sub: after.json().sub, level: 'stable' });
  });

  it('bearer tokens: the issuer picks the key set and the account', async () => {
    expect(await (await bearer(await accessTokenOf(agents.corp))).json()).toMatchObject({ sub: 'ext-ea', level: 'devel' });
    expect(await (await bearer(await accessTokenOf(agents.partners))).json()).toMatchObject({ sub: 'partners|ext-ea', level: 'ea' });
    // Signed by the partners' key, claiming the corporate issuer: the corporate keys refuse it.
    const forged = await bearer(await partners.sign({ iss: corp.issuer, sub: 'ext-ea', realm_access: { roles: ['access:admin'] } }));
    expect(forged.status).toBe(401);
    expect(forged.headers.get('www-authenticate')).toContain('invalid_token');
    const stranger = await bearer(await partners.sign({ iss: 'https://stranger.example', sub: 'ext-ea' }));
    expect(stranger.status).toBe(401);
    expect(stranger.headers.get('www-authenticate')).toContain('unknown issuer');
  });

  it('refresh goes to the provider that signed the session in, and brings its groups', async () => {
    partners.setGroups('ext-ea', []);
    const before = portal.portal.refresher.refreshes;
    await sleep(TTL_S * 1000);
    expect(await me(agents.partners)).toMatchObject({ sub: 'partners|ext-ea', level: 'ea', groups: [] });
    expect(await me(agents.corp)).toMatchObject({ sub: 'ext-ea', groups: ['corp:engineering', 'devel', 'ea', 'stable'] });
    expect(portal.portal.refresher.refreshes).toBe(before + 2);
  });

  it('back-channel logout ends only the sessions of the provider that sent it', async () => {
    const post = (token: string) => fetch(`${portal.origin}/auth/backchannel-logout`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }) });
    // A provider session id is the provider's own: the partners' provider naming the corporate
    // session's sid ends nothing (sids of two providers may collide, by chance or on purpose).
    const corpSid = (await sessionOf(agents.corp)).idpSid as string;
    expect(corpSid).toMatch(/./);
    expect((await post(await partners.logoutToken({ sid: corpSid }))).status).toBe(200);
    expect(await me(agents.corp)).toMatchObject({ sub: 'ext-ea' });
    expect(await me(agents.partners)).toMatchObject({ sub: 'partners|ext-ea' });
    // Its own sid ends its own session.
    const partnersSid = (await sessionOf(agents.partners)).idpSid as string;
    const other = new Agent(portal.origin);
    await signInAt(other, partners, 'ext-ea', '/login?provider=partners&returnTo=/me');
    expect((await post(await partners.logoutToken({ sid: partnersSid }))).status).toBe(200);
    expect(await me(agents.partners)).toBe(401);
    expect(await me(other)).toMatchObject({ sub: 'partners|ext-ea' });
    agents.partners = other;
    // The partners' provider signs out its ext-ea: the corporate ext-ea stays signed in.
    expect((await post(await partners.logoutToken({ sub: 'ext-ea' }))).status).toBe(200);
    expect(await me(agents.partners)).toBe(401);
    expect(await me(agents.corp)).toMatchObject({ sub: 'ext-ea' });
    // A token of an issuer nobody configured is refused as such.
    const stranger = await post(await partners.sign({ iss: 'https://stranger.example', aud: partners.clientId, jti: 'x', events: { 'http://schemas.openid.net/event/backchannel-logout': {} }, sub: 'ext-ea' }));
    expect(stranger.status).toBe(400);
    expect(await stranger.json()).toMatchObject({ error: 'invalid_logout_token' });
    expect((await post(await corp.logoutToken({ sub: 'ext-ea' }))).status).toBe(200);
    expect(await me(agents.corp)).toBe(401);
  });

  it('a session whose provider is no longer configured ends at its refresh, rather than wait on an outage', async () => {
    const refresher = new TokenRefresher(portal.portal.refresher as never, { rpFor: () => undefined });
    const owner = { uid: 1, sub: 'gone|x', email: null, provider: 'gone' };
    await expect(refresher.refresh('a-refresh-token', owner)).rejects.toMatchObject({ status: 401, code: 'provider_removed' });
    const session = { ...owner, name: null, picture: null, profile: {}, tokenLevel: null, csrf: 'x', authAt: Date.now(), tokens: { access: 'a', refresh: 'r', id: undefined, expiresAt: Date.now() - 1 } };
    expect(await renewTokens(session, { refresher, accessClaim: 'scope', tokenGrantsLevel: true, log: createLogger('silent', false) })).toBe('ended');
  });

  it('sign-out goes to the provider the session came from', async () => {
    const agent = new Agent(portal.origin);
    await signInAt(agent, partners, 'ext-devel', '/login?provider=partners&returnTo=/me');
    const out = await agent.request('POST', '/logout', { form: { _csrf: await agent.csrfToken() } });
    expect(out.location).toBe(`${partners.issuer}v2/logout?client_id=${partners.clientId}&returnTo=${encodeURIComponent(`${portal.origin}/`)}`);
  });
});

for (const dialect of DIALECTS) {
  describe(`provider accounts on ${dialect}`, () => {
    it('never merges accounts of two providers, and lets only the creating provider take over an account from before', async () => {
      const testDb = await createTestDatabase(dialect);
      const database = await openDatabase(testDb.target);
      try {
        await migrateToLatest(database);
        const users = new UserDirectory(database);
        const accounts = new ProviderAccounts(database, users);
        const first = { issuer: 'https://corp.example', embedded: false, subjectPrefix: '' };
        const second = { issuer: 'https://partners.example', embedded: false, subjectPrefix: 'partners|' };
        const embedded = { issuer: 'https://atrium.example/idp', embedded: true, subjectPrefix: '' };

        const a = await accounts.signIn(second, { sub: 'abc' });
        expect(a.sub).toBe('partners|abc');
        // The first provider's account whose own sub spells the same Atrium subject is refused, not merged.
        await expect(accounts.signIn(first, { sub: 'partners|abc' })).rejects.toMatchObject({ status: 409, code: 'subject_taken' });
        expect(await accounts.signIn(second, { sub: 'abc', email: 'a@example.com' })).toMatchObject({ id: a.id, email: 'a@example.com', loginCount: 2 });

        // From before identities: an external user is the first external provider's to take over.
        const legacy = await users.recordLogin({ sub: 'old-user' });
        await expect(accounts.signIn(embedded, { sub: 'old-user' })).rejects.toMatchObject({ code: 'subject_taken' });
        expect((await accounts.signIn(first, { sub: 'old-user' })).id).toBe(legacy.id);
        // …and a local account the embedded provider's.
        const local = await users.createLocal({ email: 'l@example.com', password: 'a-long-enough-password' });
        await expect(accounts.signIn(first, { sub: local.sub })).rejects.toMatchObject({ code: 'subject_taken' });
        expect((await accounts.signIn(embedded, { sub: local.sub })).id).toBe(local.id);
        expect(await accounts.subjectOf(second, 'abc')).toBe('partners|abc');
        expect(await accounts.subjectOf(first, 'abc')).toBeUndefined();

        // Bearer tokens find users the same way, in the access index (users it knows: members here).
        const older = await users.recordLogin({ sub: 'older' });
        const groups = new GroupDirectory(database);
        for (const id of [a.id, older.id, local.id]) await groups.addMember('stable', id);
        const index = await AccessIndex.load(database);
        expect(index.userIdOfIdentity(second.issuer, 'abc')).toBe(a.id);
        // The first provider's `partners|abc` is not the partners' abc, whose Atrium subject it spells.
        expect(index.userIdOfIdentity(first.issuer, 'partners|abc', { sub: 'partners|abc', local: false })).toBeUndefined();
        // An account from before identities: the external provider keeping subjects finds it, and only for a non-local account.
        expect(index.userIdOfIdentity(first.issuer, 'older', { sub: 'older', local: false })).toBe(older.id);
        // The embedded provider's accounts are recorded under its fixed key, whatever its issuer (PUBLIC_URL).
        expect(index.userIdOfIdentity(EMBEDDED_ISSUER_KEY, 'older', { sub: 'older', local: true })).toBeUndefined();
        expect(index.userIdOfIdentity(EMBEDDED_ISSUER_KEY, local.sub)).toBe(local.id);
        expect(index.userIdOfIdentity(embedded.issuer, local.sub)).toBeUndefined();
      } finally {
        await database.close();
        await testDb.drop();
      }
    });
  });
}

describe('PROVIDERS in the configuration', () => {
  const problems = (env: Record<string, string>) => configProblems({ NODE_ENV: 'test', ...env });
  const corpEntry = { id: 'corp', issuer: 'https://corp.example', clientId: 'portal', groupsClaim: 'groups' };

  it('keeps the single-provider variables as the one-provider case, and reads PROVIDERS_FILE', () => {
    const single = loadConfig({ NODE_ENV: 'test', OIDC_ISSUER: 'https://corp.example', OIDC_CLIENT_ID: 'portal' });
    expect(single.providers.map((p) => [p.id, p.embedded, p.subjectPrefix])).toEqual([['idp', false, '']]);
    expect(loadConfig({ NODE_ENV: 'test' }).providers.map((p) => [p.id, p.embedded])).toEqual([['local', true]]);
    const file = join(mkdtempSync(join(tmpdir(), 'atrium-providers-')), 'providers.json');
    writeFileSync(file, JSON.stringify([corpEntry, { id: 'local', embedded: true }, { ...corpEntry, id: 'b', issuer: 'https://b.example' }]));
    const several = loadConfig({ NODE_ENV: 'test', PROVIDERS_FILE: file });
    expect(several.providers.map((p) => [p.id, p.embedded, p.subjectPrefix, p.groupRules.map((r) => r.text)])).toEqual([
      ['corp', false, '', ['* -> corp:*']],
      ['local', true, '', []],
      ['b', false, 'b|', ['* -> b:*']],
    ]);
    // The embedded provider is among them: it runs at /idp.
    expect(several.oidc.issuer).toBeUndefined();
  });

  it('reports every problem of PROVIDERS at once', () => {
    const found = problems({
      PROVIDERS: JSON.stringify([corpEntry, { ...corpEntry, groupRules: ['nonsense'] }, { id: 'x', embedded: true, issuer: 'https://x.example' }, { id: 'y', embedded: true }, { id: 'z' }]),
      OIDC_ISSUER: 'https://other.example',
    });
    expect(found).toEqual([
      expect.stringContaining('PROVIDERS: also set are OIDC_ISSUER'),
      'PROVIDERS[1] (corp): another provider has the id "corp"',
      'PROVIDERS[1] (corp): another provider has the issuer https://corp.example/',
      'PROVIDERS[1] (corp): "nonsense" must be "provider group -> atrium group", e.g. "Engineering -> engineering" or "* -> idp:*"',
      'PROVIDERS[2] (x): the embedded provider takes only id, title, scope and accessClaim, not issuer',
      'PROVIDERS[3] (y): only one embedded provider can be listed',
      'PROVIDERS[4] (z): "issuer" is required (or "embedded": true)',
      'PROVIDERS[4] (z): "clientId" is required',
    ]);
    expect(problems({ PROVIDERS: '[{"id":"corp","issuer":"https://c.example","clientId":"p","typo":1}]' })[0]).toContain('Unrecognized key');
    expect(problems({ PROVIDERS: 'not json' })[0]).toMatch(/^PROVIDERS: not JSON/);
    expect(problems({ PROVIDERS: '[{"id":"Bad Id","embedded":true}]' })[0]).toContain('an id is 1-30 lowercase letters');
    expect(problems({ PROVIDERS: JSON.stringify([{ ...corpEntry, clientSecretEnv: 'NOT_SET_HERE' }]) })).toEqual(['PROVIDERS[0] (corp): clientSecretEnv names NOT_SET_HERE, which is not set']);
    expect(problems({ PROVIDERS_FILE: '/nonexistent/providers.json' })).toEqual(['PROVIDERS_FILE: cannot read /nonexistent/providers.json (ENOENT)']);
    expect(problems({ NODE_ENV: 'production', SESSION_SECRET: 'x'.repeat(32), PUBLIC_URL: 'https://a.example', PROVIDERS: JSON.stringify([{ ...corpEntry, issuer: 'http://corp.example' }]) })).toEqual([
      'PROVIDERS[0] (corp) issuer: production needs an https issuer; set ALLOW_HTTP=1 to allow http',
    ]);
  });
});

describe('the embedded provider under another address', () => {
  it('keeps its accounts when PUBLIC_URL changes (another instance, a new domain): its issuer is not what ties them', async () => {
    const database = await createTestDatabase('sqlite');
    try {
      const first = await startTestPortal({ database });
      const before = new Agent(first.origin);
      await before.login('devel@example.com', DEMO_PASSWORD);
      const seen = (await before.get('/me', { Accept: 'application/json' })).json() as { sub: string; level: string };
      await first.stopAll();
      // A new port: a new PUBLIC_URL, and so a new issuer for the embedded provider, on the same database.
      const second = await startTestPortal({ database });
      try {
        expect(second.origin).not.toBe(first.origin);
        const after = new Agent(second.origin);
        const landed = await after.login('devel@example.com', DEMO_PASSWORD);
        expect(landed.status).toBe(200);
        expect((await after.get('/me', { Accept: 'application/json' })).json()).toMatchObject({ sub: seen.sub, level: 'devel' });
      } finally {
        await second.stopAll();
      }
    } finally {
      await database.drop();
    }
  });
});
