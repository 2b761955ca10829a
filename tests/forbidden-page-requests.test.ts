import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, signedInAgent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The 403 page asks for access as the launcher does (issue 13, item 2): its form comes back to the
 * refused page, which then says "Pending" instead of offering a second request; and /profile says
 * when each timed membership ends.
 */
let portal: TestPortal;

beforeAll(async () => {
  const apps = makeAppsDir({
    'ea/notes/index.js': koaAppSource('notes'),
    'ea/notes/app.json': JSON.stringify({ title: 'Notes' }),
    'devel/inspector/index.js': koaAppSource('inspector'),
    'devel/inspector/app.json': JSON.stringify({ title: 'Inspector' }),
    'devel/secret/index.js': koaAppSource('secret'),
    'devel/secret/app.json': JSON.stringify({ title: 'Secret', groups: ['auditors'] }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
});
afterAll(async () => {
  await portal?.stopAll();
});

const signIn = (email: string): Promise<Agent> => signedInAgent(portal.origin, email);
/** The 403 page's request form's fields, or undefined when the page has none. */
function requestForm(html: string): Record<string, string> | undefined {
  const form = /<form method="post" action="\/access-requests"[^>]*data-testid="access-request">([\s\S]*?)<\/form>/.exec(html)?.[1];
  if (!form) return undefined;
  return Object.fromEntries([...form.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!.replaceAll('&amp;', '&')]));
}
const pendingNotice = (html: string) => /data-testid="request-pending">([\s\S]*?)<\/p>/.exec(html)?.[1];

describe('the 403 page', () => {
  it('sends a request and comes back to the refused page, which then says Pending', async () => {
    const ea = await signIn('stable@example.com');
    const refused = await ea.get('/apps/devel/inspector/reports?week=48');
    expect(refused.status).toBe(403);
    const fields = requestForm(refused.text);
    expect(fields).toMatchObject({ level: 'devel', returnTo: '/apps/devel/inspector/reports?week=48' });
    expect(pendingNotice(refused.text)).toBeUndefined();

    const sent = await ea.request('POST', '/access-requests', { form: { ...fields!, reason: 'I run the weekly reports' }, headers: { Origin: portal.origin } });
    expect(sent.status).toBe(303);
    expect(sent.location).toBe(`${portal.origin}/apps/devel/inspector/reports?week=48`);

    const back = await ea.get(sent.location!);
    expect(back.status).toBe(403);
    expect(requestForm(back.text)).toBeUndefined();
    expect(pendingNotice(back.text)).toMatch(/<span class="badge pending">Pending<\/span> You asked for <strong>devel<\/strong> access\./);
    // A devel request covers the lower tier too: the ea app's 403 says Pending as well.
    const lower = await ea.get('/apps/ea/notes/');
    expect(lower.status).toBe(403);
    expect(pendingNotice(lower.text)).toBeDefined();
    // Only for the one who asked.
    const other = await (await signIn('ea@example.com')).get('/apps/devel/inspector/');
    expect(pendingNotice(other.text)).toBeUndefined();
    expect(requestForm(other.text)).toBeDefined();
  });

  it('offers the form again once the request is denied, and never for an app narrowed to groups', async () => {
    const nobody = await signIn('nobody@example.com');
    const csrf = requestForm((await nobody.get('/apps/ea/notes/')).text)!._csrf!;
    const asked = await nobody.request('POST', '/access-requests', { json: { level: 'ea', reason: 'To take notes' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json', Origin: portal.origin } });
    expect(asked.status).toBe(201);
    expect(pendingNotice((await nobody.get('/apps/ea/notes/')).text)).toBeDefined();
    const admin = await signIn('admin@example.com');
    const denied = await admin.request('POST', `/admin/requests/${asked.json().id}`, { form: { _csrf: await admin.csrfToken(), decision: 'denied', note: 'not now' }, headers: { Origin: portal.origin } });
    expect(denied.status).toBe(303);
    const again = await nobody.get('/apps/ea/notes/');
    expect(pendingNotice(again.text)).toBeUndefined();
    expect(requestForm(again.text)).toMatchObject({ level: 'ea' });

    const devel = await signIn('devel@example.com');
    const narrowed = await devel.get('/apps/devel/secret/');
    expect(narrowed.status).toBe(403);
    expect(requestForm(narrowed.text)).toBeUndefined();
    expect(pendingNotice(narrowed.text)).toBeUndefined();
  });

  it('does the same for the admin console, whose level is admin', async () => {
    const devel = await signIn('devel@example.com');
    const refused = await devel.get('/admin/users');
    expect(refused.status).toBe(403);
    const fields = requestForm(refused.text);
    expect(fields).toMatchObject({ level: 'admin', returnTo: '/admin/users' });
    const sent = await devel.request('POST', '/access-requests', { form: { ...fields!, reason: 'I am on call this week' }, headers: { Origin: portal.origin } });
    expect(sent.location).toBe(`${portal.origin}/admin/users`);
    const back = await devel.get('/admin/users');
    expect(back.status).toBe(403);
    expect(pendingNotice(back.text)).toContain('You asked for <strong>admin</strong> access.');
  });

  it('answers API callers with JSON, with no lookup and no page', async () => {
    const stable = await signIn('stable@example.com');
    const refused = await stable.get('/apps/devel/inspector/', { Accept: 'application/json' });
    expect(refused.status).toBe(403);
    expect(refused.json()).toMatchObject({ error: 'forbidden', needed: 'devel', level: 'stable' });
  });
});

describe('/profile', () => {
  it('says when each timed membership ends', async () => {
    const ea = await signIn('ea@example.com');
    const csrf = /name="_csrf" value="([^"]+)"/.exec((await ea.get('/profile')).text)![1]!;
    expect((await ea.get('/profile')).text).not.toContain('data-testid="membership-ends"');
    const asked = await ea.request('POST', '/access-requests', { json: { level: 'devel', reason: 'For the audit week' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json', Origin: portal.origin } });
    expect(asked.status).toBe(201);
    const admin = await signIn('admin@example.com');
    const approved = await admin.request('POST', `/admin/requests/${asked.json().id}`, { form: { _csrf: await admin.csrfToken(), decision: 'approved', days: '7' }, headers: { Origin: portal.origin } });
    expect(approved.status).toBe(303);
    const devel = (await portal.portal.groups.byName('devel')).id;
    const userId = (await portal.portal.users.byEmail('ea@example.com'))[0]!.id;
    const expiry = await portal.portal.database.db.selectFrom('membership_expiries' as never).select('expires_at' as never).where('group_id' as never, '=', devel as never).where('user_id' as never, '=', userId as never).executeTakeFirstOrThrow();
    const until = new Date(Number((expiry as { expires_at: unknown }).expires_at)).toISOString().replace('T', ' ').slice(0, 16);

    const page = (await ea.get('/profile')).text;
    const list = /<ul data-testid="membership-ends">([\s\S]*?)<\/ul>/.exec(page)?.[1];
    expect(list).toBeDefined();
    expect(list!.replace(/\s+/g, ' ').trim()).toBe(`<li>You are in <strong>devel</strong> until <strong>${until} UTC</strong>; then the membership ends by itself.</li>`);
    // Permanent memberships (ea, from the demo directory) are not listed as ending.
    expect(list).not.toContain('<strong>ea</strong>');
  });
});
