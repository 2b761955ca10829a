import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { sessionRef } from '../portal/console/admin/session-refs.ts';
import { Agent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

let portal: TestPortal;
let admin: Agent;
let adminCsrf: string;

beforeAll(async () => {
  // One app per tier, plus one only the "finance" group may open.
  const apps = makeAppsDir({
    'stable/welcome/index.js': koaAppSource('welcome'),
    'ea/notes/index.js': koaAppSource('notes'),
    'devel/inspector/index.js': koaAppSource('inspector'),
    'stable/payroll/index.js': koaAppSource('payroll'),
    'stable/payroll/app.json': JSON.stringify({ title: 'Payroll', groups: ['finance'] }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
  adminCsrf = await admin.csrfToken();
});
afterAll(async () => {
  await portal?.stopAll();
});

const userId = async (email: string) => (await portal.portal.users.byEmail(email))[0]!.id;
const post = (agent: Agent, path: string, form: Record<string, string>, csrf: string) =>
  agent.request('POST', path, { form: { _csrf: csrf, ...form }, headers: { Origin: portal.origin } });

describe('admin console', () => {
  it('renders every page for an admin', async () => {
    const id = await userId('ea@example.com');
    for (const path of ['/admin/users', '/admin/users?q=example&page=1', `/admin/users/${id}`, '/admin/groups', '/admin/groups/devel', '/admin/apps', '/admin/audit', '/admin/requests', '/admin/fields']) {
      const page = await admin.get(path);
      expect(page.status, path).toBe(200);
      expect(page.text, path).toContain('aria-label="Admin"');
    }
    expect((await admin.get('/admin/users?q=ea@')).text).toContain('ea@example.com');
    expect((await admin.get('/admin/groups')).text).toMatch(/stable[\s\S]*ea[\s\S]*devel[\s\S]*admin/);
  });

  it('answers hostile ids, names and paging with 4xx, never 500', async () => {
    for (const path of [
      '/admin/users/99999999999999999999',
      '/admin/users/-1',
      '/admin/users/%27%20OR%201=1--',
      '/admin/users/%3Cscript%3E',
      '/admin/groups/%3Cscript%3E',
      '/admin/groups/..%252f..%252fetc',
      '/admin/users/%00',
      '/admin/users/..%2f..%2fadmin',
    ]) {
      const r = await admin.get(path);
      expect([400, 404], path).toContain(r.status);
      expect(r.text, path).not.toContain('<script>');
    }
    for (const query of ['?page=-1', '?page=abc', '?page=1e9', `?q=${'%25'.repeat(300)}`, '?q=%5C%25_', '?q[]=a&q[]=b']) {
      expect((await admin.get(`/admin/users${query}`)).status, query).toBe(200);
      expect((await admin.get(`/admin/audit${query}`)).status, query).toBe(200);
    }
    for (const [path, form] of [
      ['/admin/users/99999/groups', { group: 'devel' }],
      ['/admin/users/1/groups', { group: 'no-such-group' }],
      ['/admin/requests/abc', { decision: 'approved' }],
      ['/admin/requests/1', { decision: 'maybe' }],
      ['/admin/fields', { name: '__proto__', label: 'x', type: 'text' }],
      ['/admin/fields', { name: 'ok_name', label: 'x', type: 'javascript' }],
    ] as [string, Record<string, string>][]) {
      const r = await post(admin, path, form, adminCsrf);
      expect([400, 404], path).toContain(r.status);
    }
  });

  it('refuses non-admins and the signed-out', async () => {
    const devel = new Agent(portal.origin);
    await devel.login('devel@example.com', DEMO_PASSWORD);
    expect((await devel.get('/admin/users')).status).toBe(403);
    expect((await devel.get('/admin/users', { Accept: 'application/json' })).json()).toMatchObject({ error: 'forbidden', needed: 'admin' });
    const csrf = await devel.csrfToken();
    expect((await post(devel, '/admin/groups', { name: 'sneaky' }, csrf)).status).toBe(403);
    expect(await portal.portal.groups.find('sneaky')).toBeUndefined();
    const anonymous = new Agent(portal.origin);
    expect((await anonymous.get('/admin/users')).status).toBe(302);
    expect((await anonymous.request('POST', '/admin/groups', { form: { name: 'sneaky' } })).status).toBe(401);
  });

  it('refuses forms without a valid CSRF token or from another origin', async () => {
    expect((await admin.request('POST', '/admin/groups', { form: { name: 'nocsrf' } })).status).toBe(403);
    expect((await post(admin, '/admin/groups', { name: 'badcsrf' }, 'x'.repeat(32))).status).toBe(403);
    expect((await admin.request('POST', '/admin/groups', { form: { _csrf: adminCsrf, name: 'xorigin' }, headers: { Origin: 'https://evil.example' } })).status).toBe(403);
    for (const name of ['nocsrf', 'badcsrf', 'xorigin']) expect(await portal.portal.groups.find(name)).toBeUndefined();
  });

  it('promotes ea@ into devel: the user opens a devel app on the next request, without signing out', async () => {
    const ea = new Agent(portal.origin);
    await ea.login('ea@example.com', DEMO_PASSWORD);
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(403);
    const id = await userId('ea@example.com');
    const added = await post(admin, `/admin/users/${id}/groups`, { group: 'devel' }, adminCsrf);
    expect(added.status).toBe(303);
    expect((await admin.get(added.location!)).text).toContain('Added to devel.');
    const open = await ea.get('/apps/devel/inspector/', { Accept: 'application/json' });
    expect(open.status).toBe(200);
    expect(open.json()).toMatchObject({ app: 'inspector', user: 'ea@example.com' });
    expect((await ea.get('/me', { Accept: 'application/json' })).json()).toMatchObject({ level: 'devel', groups: ['devel', 'ea', 'stable'] });
    // …and demotion is just as immediate.
    expect((await post(admin, `/admin/users/${id}/groups/remove`, { group: 'devel' }, adminCsrf)).status).toBe(303);
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(403);
  });

  it('demotes devel@ out of devel: the open session loses access at its next request', async () => {
    const devel = new Agent(portal.origin);
    await devel.login('devel@example.com', DEMO_PASSWORD);
    expect((await devel.get('/apps/devel/inspector/')).status).toBe(200);
    const id = await userId('devel@example.com');
    expect((await post(admin, `/groups/devel/members/remove`.replace(/^/, '/admin'), { user: String(id) }, adminCsrf)).status).toBe(303);
    expect((await devel.get('/apps/devel/inspector/')).status).toBe(403);
    expect((await devel.get('/me', { Accept: 'application/json' })).json().level).toBeNull();
    expect((await post(admin, '/admin/groups/devel/members', { user: 'devel@example.com' }, adminCsrf)).status).toBe(303);
    expect((await devel.get('/apps/devel/inspector/')).status).toBe(200);
  });

  it('builds nested groups with the editor and refuses a cycle with a clear message', async () => {
    expect((await post(admin, '/admin/groups', { name: 'finance', level: '', description: 'Money people' }, adminCsrf)).status).toBe(303);
    expect((await post(admin, '/admin/groups', { name: 'auditors', level: '' }, adminCsrf)).status).toBe(303);
    expect((await post(admin, '/admin/groups/auditors/nest', { parent: 'finance' }, adminCsrf)).status).toBe(303);
    const cycle = await post(admin, '/admin/groups/finance/nest', { parent: 'auditors' }, adminCsrf);
    expect(cycle.status).toBe(409);
    expect(cycle.text).toContain('finance ⊂ auditors ⊂ finance');
    const bad = await post(admin, '/admin/groups', { name: '<script>', level: '' }, adminCsrf);
    expect(bad.status).toBe(400);
    expect(bad.text).not.toContain('<script>');
    expect((await post(admin, '/admin/groups', { name: 'x', level: 'root' }, adminCsrf)).status).toBe(400);
    expect((await post(admin, '/admin/groups/admin/delete', {}, adminCsrf)).status).toBe(409);
    expect((await post(admin, '/admin/groups/admin/unnest', { parent: 'devel' }, adminCsrf)).status).toBe(409);
    expect((await post(admin, '/admin/groups/nope/nest', { parent: 'ea' }, adminCsrf)).status).toBe(404);
    const page = await admin.get('/admin/groups/auditors');
    expect(page.text).toContain('href="/admin/groups/finance"');
  });

  it('draws nested diamonds once per group, not once per path', async () => {
    // Ten levels of diamonds: 2^10 paths to the bottom, but each group is expanded only once.
    let parent = 'dia-0';
    expect((await post(admin, '/admin/groups', { name: parent, level: '' }, adminCsrf)).status).toBe(303);
    for (let i = 1; i <= 10; i++) {
      for (const side of ['l', 'r']) {
        expect((await post(admin, '/admin/groups', { name: `dia-${i}${side}`, level: '' }, adminCsrf)).status).toBe(303);
        await portal.portal.admin.nest('test', `dia-${i}${side}`, parent);
      }
      const join = `dia-${i}`;
      expect((await post(admin, '/admin/groups', { name: join, level: '' }, adminCsrf)).status).toBe(303);
      await portal.portal.admin.nest('test', join, `dia-${i}l`);
      await portal.portal.admin.nest('test', join, `dia-${i}r`);
      parent = join;
    }
    const page = await admin.get('/admin/groups');
    expect(page.status).toBe(200);
    expect(page.text.length).toBeLessThan(200_000);
    expect(page.text.match(/href="\/admin\/groups\/dia-10"/g)?.length).toBe(2); // expanded once, mentioned once more
    expect(page.text).toContain('(nesting shown above)');
  });

  it('narrows an app to its manifest groups, at the gate', async () => {
    const stable = new Agent(portal.origin);
    await stable.login('stable@example.com', DEMO_PASSWORD);
    const refused = await stable.get('/apps/stable/payroll/');
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('open only to members of finance');
    // A member of a group nested in finance inherits the audience.
    expect((await post(admin, '/admin/groups/auditors/members', { user: 'stable@example.com' }, adminCsrf)).status).toBe(303);
    expect((await stable.get('/apps/stable/payroll/', { Accept: 'application/json' })).json()).toMatchObject({ app: 'payroll' });
    // Admins pass every gate; a devel user outside finance does not.
    expect((await admin.get('/apps/stable/payroll/')).status).toBe(200);
    const devel = new Agent(portal.origin);
    await devel.login('devel@example.com', DEMO_PASSWORD);
    expect((await devel.get('/apps/stable/payroll/')).status).toBe(403);
  });

  it('shows discovered apps and their manifests as readable fields', async () => {
    const page = await admin.get('/admin/apps');
    expect(page.text).toContain('/apps/stable/payroll');
    const payroll = page.text.slice(page.text.indexOf('data-app="stable/payroll"'));
    expect(payroll.slice(0, payroll.indexOf('</article>'))).toMatch(/<dt>Open to<\/dt><dd>members of finance<\/dd>/);
  });

  it('lists, revokes and ends sessions; disabling an account signs it out', async () => {
    const victim = new Agent(portal.origin);
    await victim.login('nobody@example.com', DEMO_PASSWORD);
    const id = await userId('nobody@example.com');
    const page = await admin.get(`/admin/users/${id}`);
    // The page names sessions by a digest, never by the id the browser's cookie holds.
    const sid = victim.cookie('atrium.sid')!.value;
    expect(page.text).not.toContain(sid);
    const session = /data-session="([^"]+)"/.exec(page.text)![1]!;
    expect(session).toBe(sessionRef(sid));
    const confirm = await admin.get(`/admin/users/${id}/sessions/revoke?session=${encodeURIComponent(session)}`);
    expect(confirm.text).toContain(`name="session" value="${session}"`);
    expect((await post(admin, `/admin/users/${id}/sessions/revoke`, { session }, adminCsrf)).status).toBe(303);
    expect((await victim.get('/me', { Accept: 'application/json' })).status).toBe(401);
    await victim.login('nobody@example.com', DEMO_PASSWORD);
    expect((await post(admin, `/admin/users/${id}/disable`, { disabled: 'true' }, adminCsrf)).status).toBe(303);
    expect((await victim.get('/me', { Accept: 'application/json' })).status).toBe(401);
    expect((await victim.login('nobody@example.com', DEMO_PASSWORD)).status).toBe(401);
    expect((await post(admin, `/admin/users/${id}/disable`, { disabled: 'false' }, adminCsrf)).status).toBe(303);
    expect((await victim.login('nobody@example.com', DEMO_PASSWORD)).status).toBe(200);
  });

  it('audits every change: actor, action, target, before and after', async () => {
    const page = await admin.get('/admin/audit');
    expect(page.text).toContain('group.nest');
    const actions = new Set((await portal.portal.database.db.selectFrom('audit_log').select('action').execute()).map((r) => r.action));
    for (const action of ['member.add', 'member.remove', 'group.create', 'group.nest', 'session.revoke', 'user.disable', 'user.enable']) expect(actions).toContain(action);
    expect((await admin.get('/admin/audit?page=2')).text).toContain('group.create');
    const rows = await portal.portal.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'group.nest').execute();
    expect(rows[0]).toMatchObject({ actor: 'admin@example.com', target: 'group:auditors' });
    expect(JSON.parse(rows[0]!.after!)).toEqual({ child: 'auditors', parent: 'finance' });
  });
});

describe('access requests', () => {
  it('a refused user asks from the 403 page, an admin approves, the user gets in', async () => {
    const ea = new Agent(portal.origin);
    await ea.login('ea@example.com', DEMO_PASSWORD);
    const refused = await ea.get('/apps/devel/inspector/');
    expect(refused.status).toBe(403);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(refused.text.slice(refused.text.indexOf('data-testid="access-request"')))![1]!;
    const asked = await post(ea, '/access-requests', { level: 'devel', reason: 'I maintain the inspector' }, csrf);
    expect(asked.status).toBe(303);
    expect((await ea.get('/')).text).toContain('is waiting for an administrator');

    const pending = await admin.get('/admin/requests');
    expect(pending.text).toContain('I maintain the inspector');
    const id = /action="\/admin\/requests\/(\d+)"/.exec(pending.text)![1]!;
    expect((await post(admin, `/admin/requests/${id}`, { decision: 'approved', note: 'welcome' }, adminCsrf)).status).toBe(303);
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(200);
    expect((await ea.get('/')).text).toContain('was approved: welcome');
    // Deciding twice is refused.
    expect((await post(admin, `/admin/requests/${id}`, { decision: 'denied' }, adminCsrf)).status).toBe(409);
    await portal.portal.admin.removeMember('test', 'devel', 'ea@example.com');
  });

  it('a denial is shown to the user; hostile requests are refused', async () => {
    const stable = new Agent(portal.origin);
    await stable.login('stable@example.com', DEMO_PASSWORD);
    const csrf = await stable.csrfToken();
    for (const form of [{ level: 'root', reason: 'please' }, { level: 'ea', reason: '' }, { level: 'ea', reason: 'x'.repeat(1001) }, { reason: 'no level' }]) {
      expect((await post(stable, '/access-requests', form as Record<string, string>, csrf)).status).toBe(400);
    }
    expect((await stable.request('POST', '/access-requests', { form: { level: 'ea', reason: 'no token' } })).status).toBe(403);
    expect((await new Agent(portal.origin).request('POST', '/access-requests', { json: { level: 'ea', reason: 'anon' } })).status).toBe(401);
    const created = await stable.request('POST', '/access-requests', { json: { level: 'ea', reason: 'testing the ea tier' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' } });
    expect(created.status).toBe(201);
    expect((await post(admin, `/admin/requests/${created.json().id}`, { decision: 'denied', note: 'not now' }, adminCsrf)).status).toBe(303);
    expect((await stable.get('/')).text).toContain('was denied: not now');
    expect((await stable.get('/apps/ea/notes/')).status).toBe(403);
  });
});
