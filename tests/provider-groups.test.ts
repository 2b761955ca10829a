import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../lib/config.ts';
import { freePort } from '../lib/free-port.ts';
import { GroupsClaimError, MAX_PROVIDER_GROUPS, readGroupsClaim } from '../lib/providers/groups-claim.ts';
import { Agent } from './helpers/agent.ts';
import { DIALECTS, type DialectName } from './helpers/databases.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { EXTERNAL_AUDIENCE, NAMESPACED_GROUPS, signInAt, startExternalIdp, type ExternalIdp, type ProviderShape } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, cookieHeader, disconnected } from './helpers/sockets.ts';
import { configProblems } from './helpers/config-problems.ts';

/** An app for one provider group, with a socket.io namespace, and one per tier. */
const realtimeApp = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { groups: ctx.state.user.groups }; });
export default { app, realtime(nsp) { nsp.on('connection', () => {}); } };
`;
const APPS = {
  'stable/eng/index.js': realtimeApp,
  'stable/eng/app.json': JSON.stringify({ groups: ['idp:engineering'] }),
  'stable/welcome/index.js': koaAppSource('welcome'),
  'ea/notes/index.js': koaAppSource('notes'),
};
const TTL_S = 4;
const running: { portal: TestPortal; idp: ExternalIdp }[] = [];
afterAll(async () => {
  for (const r of running) {
    await r.portal.stopAll();
    await r.idp.close();
  }
});

async function setup(shape: ProviderShape, env: Record<string, string>, dialect: DialectName = 'sqlite') {
  const port = await freePort();
  const idp = await startExternalIdp(shape, `http://127.0.0.1:${port}`, { accessTokenTtl: TTL_S });
  const portal = await startTestPortal({
    port,
    dialect,
    env: { APPS_DIR: makeAppsDir(APPS), OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: idp.clientId, OIDC_CLIENT_SECRET: idp.clientSecret, OIDC_AUDIENCE: EXTERNAL_AUDIENCE, ...env },
  });
  running.push({ portal, idp });
  return { portal, idp };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const json = { Accept: 'application/json' };
const me = async (agent: Agent) => (await agent.get('/me', json)).json() as { level: string | null; groups: string[] };
/** Waits out the access token's life, then a request refreshes it on the server (one refresh, the sync inside it). */
async function afterRefresh(portal: TestPortal, agent: Agent) {
  const before = portal.portal.refresher.refreshes;
  await sleep(TTL_S * 1000);
  const answer = await agent.get('/me', json);
  expect(portal.portal.refresher.refreshes).toBe(before + 1);
  return answer;
}
const userId = async (portal: TestPortal, email: string) => (await portal.portal.users.byEmail(email))[0]!.id;
const auditOf = async (portal: TestPortal, action: string) =>
  portal.portal.database.db.selectFrom('audit_log').selectAll().where('action', '=', action).orderBy('id').execute();

describe('Keycloak-shaped provider (a `groups` claim)', () => {
  it.each(DIALECTS)('syncs provider groups at sign-in into the idp namespace; they nest, open apps, and leave admin memberships alone (%s)', async (dialect) => {
    const { portal, idp } = await setup('keycloak', { GROUPS_CLAIM: 'groups', ACCESS_CLAIM: 'realm_access.roles' }, dialect);
    idp.setGroups('ext-none', ['Engineering', '/platform/ops']);
    const agent = new Agent(portal.origin);
    expect((await signInAt(agent, idp, 'ext-none')).status).toBe(200);
    expect(await me(agent)).toEqual(expect.objectContaining({ level: null, groups: ['idp:engineering', 'idp:platform-ops'] }));
    // No level yet: even the app that names the group is out of reach (the tier decides first).
    expect((await agent.get('/apps/stable/eng/', json)).status).toBe(403);

    // An admin nests the provider's group where it grants a level; an admin's own membership stays.
    await portal.portal.admin.nest('test', 'idp:engineering', 'ea');
    await portal.portal.admin.createGroup('test', { name: 'payroll' });
    await portal.portal.admin.addMember('test', 'payroll', 'ext.none@corp.example');
    expect(await me(agent)).toMatchObject({ level: 'ea', groups: ['ea', 'idp:engineering', 'idp:platform-ops', 'payroll', 'stable'] });
    expect((await agent.get('/apps/ea/notes/', json)).status).toBe(200);
    expect((await agent.get('/apps/stable/eng/', json)).json()).toEqual({ groups: ['ea', 'idp:engineering', 'idp:platform-ops', 'payroll', 'stable'] });

    // The next sign-in says otherwise: provider memberships follow it, the admin's does not move.
    idp.setGroups('ext-none', ['Engineering']);
    const again = new Agent(portal.origin);
    await signInAt(again, idp, 'ext-none');
    expect((await me(again)).groups).toEqual(['ea', 'idp:engineering', 'payroll', 'stable']);
    const id = await userId(portal, 'ext.none@corp.example');
    expect(await portal.portal.groups.adminGroupsOf(id)).toEqual(['payroll']);
    expect([...(await portal.portal.groups.managedGroupsOf(id))]).toEqual([['idp:engineering', ['idp']]]);

    const syncs = await auditOf(portal, 'member.provider_sync');
    expect(syncs.map((s) => [s.actor, s.target, JSON.parse(s.after!).added, JSON.parse(s.after!).removed])).toEqual([
      ['provider:idp', 'user:ext.none@corp.example', ['idp:engineering', 'idp:platform-ops'], []],
      ['provider:idp', 'user:ext.none@corp.example', [], ['idp:platform-ops']],
    ]);
  });

  it('the console shows provider memberships as managed by the provider, and refuses to remove them', async () => {
    const { portal, idp } = await setup('keycloak', { GROUPS_CLAIM: 'groups', ACCESS_CLAIM: 'realm_access.roles' });
    idp.setGroups('ext-devel', ['Engineering']);
    await signInAt(new Agent(portal.origin), idp, 'ext-devel');
    const id = await userId(portal, 'ext.devel@corp.example');
    // Another provider user made an admin in the directory, signed in through the same provider.
    const admin = new Agent(portal.origin);
    await signInAt(admin, idp, 'ext-ea');
    await portal.portal.admin.addMember('test', 'admin', 'ext.ea@corp.example');

    const page = await admin.get(`/admin/users/${id}`);
    expect(page.status).toBe(200);
    expect(page.text).toContain('managed by the identity provider idp');
    expect(page.text).not.toContain('groups/remove?group=idp%3Aengineering');
    const group = await admin.get('/admin/groups/idp:engineering');
    expect(group.text).toContain('managed by the identity provider idp');
    expect(group.text).not.toContain(`members/remove?user=${id}`);

    // Forcing the form anyway is refused with the reason, and the membership stays.
    const csrf = await admin.csrfToken();
    const forced = await admin.request('POST', `/admin/users/${id}/groups/remove`, { form: { _csrf: csrf, group: 'idp:engineering' } });
    expect(forced.status).toBe(409);
    expect(forced.text).toContain('managed by the identity provider');
    expect([...(await portal.portal.groups.managedGroupsOf(id)).keys()]).toEqual(['idp:engineering']);
    expect((await portal.portal.groups.members('idp:engineering')).map((m) => [m.email, m.managedBy])).toEqual([['ext.devel@corp.example', 'idp']]);
  });

  it('a group removed at the provider ends access at the next refresh, the open socket included', async () => {
    const { portal, idp } = await setup('keycloak', { GROUPS_CLAIM: 'groups', ACCESS_CLAIM: 'realm_access.roles' });
    idp.setGroups('ext-ea', ['Engineering']);
    const agent = new Agent(portal.origin);
    await signInAt(agent, idp, 'ext-ea');
    expect((await agent.get('/apps/stable/eng/', json)).status).toBe(200);
    const socket = await connect(portal.origin, '/apps/stable/eng', cookieHeader(agent));
    expect(socket.ok).toBe(true);
    if (!socket.ok) return;

    idp.setGroups('ext-ea', []);
    const gone = disconnected(socket.socket, 30_000);
    expect((await afterRefresh(portal, agent)).json().groups).toEqual([]);
    await gone;
    expect((await agent.get('/apps/stable/eng/', json)).status).toBe(403);
    const refused = await connect(portal.origin, '/apps/stable/eng', cookieHeader(agent));
    expect(refused).toMatchObject({ ok: false, message: 'forbidden' });

    // And a group added at the provider arrives with the next refresh too.
    idp.setGroups('ext-ea', ['Engineering']);
    expect((await afterRefresh(portal, agent)).json().groups).toEqual(['idp:engineering']);
  });

  it('a session that only holds a socket (no HTTP requests) is refreshed by its socket, and a group removed at the provider closes it', async () => {
    const { portal, idp } = await setup('keycloak', { GROUPS_CLAIM: 'groups', ACCESS_CLAIM: 'realm_access.roles' });
    idp.setGroups('ext-ea', ['Engineering']);
    const agent = new Agent(portal.origin);
    await signInAt(agent, idp, 'ext-ea');
    const socket = await connect(portal.origin, '/apps/stable/eng', cookieHeader(agent));
    expect(socket.ok).toBe(true);
    if (!socket.ok) return;
    const before = portal.portal.refresher.refreshes;
    idp.setGroups('ext-ea', []);
    // Nothing but the socket from here on: the refresh at the token's expiry must come from the portal.
    await disconnected(socket.socket, 30_000);
    expect(portal.portal.refresher.refreshes).toBeGreaterThan(before);
    expect([...(await portal.portal.groups.managedGroupsOf(await userId(portal, 'ext.ea@corp.example'))).keys()]).toEqual([]);
  });

  it('a refresh that brings a groups claim that is not a list ends the session and the provider memberships', async () => {
    const { portal, idp } = await setup('keycloak', { GROUPS_CLAIM: 'groups', ACCESS_CLAIM: 'realm_access.roles' });
    idp.setGroups('ext-ea', ['Engineering']);
    const agent = new Agent(portal.origin);
    await signInAt(agent, idp, 'ext-ea');
    idp.setGroups('ext-ea', 'Engineering');
    await sleep(TTL_S * 1000);
    expect((await agent.get('/me', json)).status).toBe(401);
    expect([...(await portal.portal.groups.managedGroupsOf(await userId(portal, 'ext.ea@corp.example')))]).toEqual([]);
  });
});

describe('Auth0-shaped provider (a namespaced claim) with rules', () => {
  const RULES = 'atrium-* -> *; Atrium Admins -> admin; atrium-missing -> nothere; * -> auth0:*';

  it('maps by prefix into existing groups and by namespace; a wildcard never grants a built-in group', async () => {
    const { portal, idp } = await setup('auth0', { GROUPS_CLAIM: NAMESPACED_GROUPS, GROUP_RULES: RULES, ACCESS_CLAIM: 'permissions' });
    await portal.portal.admin.createGroup('test', { name: 'payroll' });
    idp.setGroups('ext-none', ['atrium-payroll', 'atrium-admin', 'admin', 'atrium-missing', 'Data Team']);
    const agent = new Agent(portal.origin);
    expect((await signInAt(agent, idp, 'ext-none')).status).toBe(200);
    const { level, groups } = await me(agent);
    // atrium-admin -> admin by the wildcard is refused; `admin` lands in the namespace; no plain group is created.
    expect(level).toBeNull();
    expect(groups).toEqual(['auth0:admin', 'auth0:atrium-admin', 'auth0:atrium-missing', 'auth0:atrium-payroll', 'auth0:data-team', 'payroll']);
    expect(await portal.portal.groups.find('nothere')).toBeUndefined();
    expect((await portal.portal.groups.find('auth0:admin'))?.level).toBeNull();
  });

  it('an exact rule naming a built-in group is how a provider group grants it', async () => {
    const { portal, idp } = await setup('auth0', { GROUPS_CLAIM: NAMESPACED_GROUPS, GROUP_RULES: RULES, ACCESS_CLAIM: 'permissions' });
    idp.setGroups('ext-none', ['Atrium Admins']);
    const agent = new Agent(portal.origin);
    await signInAt(agent, idp, 'ext-none');
    expect(await me(agent)).toMatchObject({ level: 'admin', groups: ['admin', 'auth0:atrium-admins', 'devel', 'ea', 'stable'] });
    expect((await agent.get('/admin/users', { Accept: 'text/html' })).status).toBe(200);
  });

  it('refuses a groups claim that is not a list of names, or holds too many, and removes what it granted', async () => {
    const { portal, idp } = await setup('auth0', { GROUPS_CLAIM: NAMESPACED_GROUPS, ACCESS_CLAIM: 'permissions' });
    idp.setGroups('ext-ea', ['Engineering']);
    await signInAt(new Agent(portal.origin), idp, 'ext-ea');
    const id = await userId(portal, 'ext.ea@corp.example');
    expect([...(await portal.portal.groups.managedGroupsOf(id)).keys()]).toEqual(['idp:engineering']);

    const tooMany = Array.from({ length: MAX_PROVIDER_GROUPS + 1 }, (_, i) => `g${i}`);
    for (const hostile of ['Engineering', { Engineering: true }, [1, 2], [['Engineering']], ['Engineering', null], 42, tooMany]) {
      idp.setGroups('ext-ea', hostile);
      const agent = new Agent(portal.origin);
      const answer = await signInAt(agent, idp, 'ext-ea');
      expect(answer.status, JSON.stringify(hostile).slice(0, 40)).toBe(403);
      expect(answer.text).toContain(`The identity provider sent a &quot;${NAMESPACED_GROUPS}&quot; claim Atrium cannot use`);
      expect((await agent.get('/me', json)).status).toBe(401);
      expect([...(await portal.portal.groups.managedGroupsOf(id)).keys()]).toEqual([]);
    }
    const refusals = await auditOf(portal, 'session.sign_in_refused');
    expect(refusals).toHaveLength(7);
    expect(JSON.parse(refusals[0]!.after!)).toEqual({ reason: 'groups_claim_invalid', provider: 'idp' });
  });

  it('takes as many groups as the bound allows, and skips overlong, blank and control-character names', async () => {
    const { portal, idp } = await setup('auth0', { GROUPS_CLAIM: NAMESPACED_GROUPS, ACCESS_CLAIM: 'permissions' });
    const many = Array.from({ length: MAX_PROVIDER_GROUPS - 5 }, (_, i) => `team ${i}`);
    idp.setGroups('ext-ea', [...many, 'x'.repeat(300), '   ', 'bad\u0000name', '¡¡¡', `${'y'.repeat(97)}`]);
    const agent = new Agent(portal.origin);
    expect((await signInAt(agent, idp, 'ext-ea')).status).toBe(200);
    const managed = await portal.portal.groups.managedGroupsOf(await userId(portal, 'ext.ea@corp.example'));
    // 995 teams; the 97-character name makes idp: + 97 = 101 characters, one too long for a group name: skipped.
    expect(managed.size).toBe(MAX_PROVIDER_GROUPS - 5);
    expect(managed.has('idp:team-0')).toBe(true);
    expect(managed.has('idp:team-994')).toBe(true);
    expect([...managed.keys()].some((g) => g.includes('x') || g.includes('bad') || g.includes('y'))).toBe(false);
  });
});

describe('reading the groups claim', () => {
  it('refuses an Entra ID overage reference rather than read it as no groups', () => {
    const overage = { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'https://graph.microsoft.com/v1.0/users/x/getMemberObjects' } } };
    expect(() => readGroupsClaim('groups', overage, {})).toThrow(GroupsClaimError);
    expect(() => readGroupsClaim('groups', {}, overage)).toThrow(/look the groups up elsewhere/);
    // A token that simply has no groups claim says nothing about groups.
    expect(readGroupsClaim('groups', { sub: 'x' }, {})).toBeUndefined();
    expect(readGroupsClaim('realm_access.groups', {}, { realm_access: { groups: ['a', 'a', 'b'] } })).toEqual({ names: ['a', 'b'], skipped: 0 });
  });
});

describe('group rules in the configuration', () => {
  const base = { NODE_ENV: 'test', OIDC_ISSUER: 'https://idp.example', OIDC_CLIENT_ID: 'portal' };
  const problems = configProblems;

  it('parses the rule forms, and defaults to one-to-one into the idp namespace', () => {
    const config = loadConfig({ ...base, GROUPS_CLAIM: 'groups', GROUP_RULES: 'Engineering -> engineering\natrium-* -> team-*; * -> idp:*' });
    expect(config.providers[0]!.groupRules.map((r) => [r.pattern, r.wildcard, r.target])).toEqual([
      ['Engineering', false, 'engineering'],
      ['atrium-', true, 'team-*'],
      ['', true, 'idp:*'],
    ]);
    expect(loadConfig({ ...base, GROUPS_CLAIM: 'realm_access.groups' }).providers[0]!.groupRules.map((r) => r.text)).toEqual(['* -> idp:*']);
    expect(loadConfig({ ...base, GROUPS_CLAIM: 'groups', GROUP_RULES: '["A -> a", "B* -> b-*"]' }).providers[0]!.groupRules).toHaveLength(2);
  });

  it('reports every bad rule at once, each saying what is wrong', () => {
    const found = problems({ ...base, GROUPS_CLAIM: 'groups', GROUP_RULES: 'Engineering; a*b -> x; A* -> a; B -> b*; C -> Not A Group; * -> a:b:*' });
    expect(found).toHaveLength(6);
    expect(found[0]).toContain('must be "provider group -> atrium group"');
    expect(found[1]).toContain('one "*", at the end');
    expect(found[2]).toContain('put one "*" in the Atrium group too');
    expect(found[3]).toContain('cannot hold "*"');
    expect(found[4]).toContain('cannot exist');
    expect(found[5]).toContain('cannot exist');
    expect(problems({ ...base, GROUP_RULES: 'A -> a' })).toEqual(['GROUP_RULES: group rules need a groups claim to read (GROUPS_CLAIM, or "groupsClaim" in PROVIDERS)']);
    expect(problems({ NODE_ENV: 'test', GROUPS_CLAIM: 'groups' })[0]).toContain('the embedded provider has no groups of its own');
    expect(problems({ ...base, GROUPS_CLAIM: 'groups', GROUP_RULES: '[1, 2]' })).toEqual(['GROUP_RULES: a JSON value must be an array of rules (strings)']);
  });
});
