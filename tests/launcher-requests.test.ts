import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, signedInAgent } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { connect, cookieHeader, disconnected } from './helpers/sockets.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

let portal: TestPortal;

beforeAll(async () => {
  const apps = makeAppsDir({
    'stable/welcome/index.js': koaAppSource('welcome'),
    'stable/welcome/app.json': JSON.stringify({ title: 'Welcome', description: 'Start here' }),
    'ea/notes/index.js': koaAppSource('notes'),
    'ea/notes/app.json': JSON.stringify({ title: 'Notes', description: 'Shared notebooks' }),
    // A realtime app, so the test can see its socket end when the membership does.
    'devel/inspector/index.js': `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = 'inspector'; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.on('ping', (ack) => ack('pong'))); } };
`,
    'devel/inspector/app.json': JSON.stringify({ title: 'Inspector', description: 'Look inside requests' }),
    'ea/broken/index.js': koaAppSource('broken'),
    'ea/broken/app.json': '{ this is not json',
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
});
afterAll(async () => {
  await portal?.stopAll();
});

const signIn = (email: string): Promise<Agent> => signedInAgent(portal.origin, email);
const post = (agent: Agent, path: string, form: Record<string, string>) =>
  agent.request('POST', path, { form, headers: { Origin: portal.origin } });
const pathOf = (location: string | undefined) => {
  const url = new URL(location ?? '', portal.origin);
  expect(url.origin).toBe(portal.origin);
  return `${url.pathname}${url.search}`;
};
/** The launcher's parts: what precedes "Apps you can ask for", and that section. */
function sections(html: string): { yours: string; ask: string } {
  const at = html.indexOf('data-section="ask"');
  return { yours: at < 0 ? html : html.slice(0, at), ask: at < 0 ? '' : html.slice(at) };
}

describe('launcher', () => {
  it("shows the user's own apps first, then the ones they can ask for, tiers named in words", async () => {
    const stable = await signIn('stable@example.com');
    const page = await stable.get('/');
    expect(page.status).toBe(200);
    const { yours, ask } = sections(page.text);
    expect(yours).toContain('href="/apps/stable/welcome/"');
    expect(yours).not.toContain('Inspector');
    expect(ask).toContain('<h2 id="ask-heading">Apps you can ask for</h2>');
    expect(ask).toMatch(/Early access <span class="badge level-ea">ea<\/span>[\s\S]*In development <span class="badge level-devel">devel<\/span>/);
    expect(ask).toContain('Inspector');
    expect(ask).not.toContain('data-testid="app-link"');
    expect(page.text).not.toContain('tier “');
    expect(page.text).toContain('<script src="/assets/launcher.js" defer></script>');
    const script = await stable.get('/assets/launcher.js');
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
  });

  it('makes each open card one link around title and description, named by the title', async () => {
    const ea = await signIn('ea@example.com');
    const page = await ea.get('/');
    const link = /<a class="card-link" href="\/apps\/ea\/notes\/"[^>]*>([\s\S]*?)<\/a>/.exec(page.text);
    expect(link).not.toBeNull();
    // Named by the title alone: the description is its description (aria-describedby), not its name.
    expect(link![0]).toContain('aria-describedby="app-ea-notes-desc"');
    expect(link![1]).toContain('<span class="card-desc" id="app-ea-notes-desc" aria-hidden="true">Shared notebooks</span>');
    expect(link![1]).toContain('<strong class="card-title" id="app-ea-notes-title">Notes</strong>');
    expect(link![1]).toContain('Shared notebooks');
    expect(page.text.match(/href="\/apps\/ea\/notes\/"/g)).toHaveLength(1);
  });

  it('says an app whose manifest broke is temporarily unavailable, to those whose level reaches it', async () => {
    const ea = await signIn('ea@example.com');
    const page = await ea.get('/');
    const card = /<li class="card unavailable"[\s\S]*?<\/li>/.exec(page.text);
    expect(card?.[0]).toContain('broken');
    expect(card?.[0]).toContain('Temporarily unavailable');
    expect(card?.[0]).not.toContain('href=');
    expect((await (await signIn('stable@example.com')).get('/')).text).not.toContain('Temporarily unavailable');
  });

  it('filters with a GET form when scripts are off', async () => {
    const devel = await signIn('devel@example.com');
    const all = await devel.get('/');
    expect(all.text).toMatch(/<form method="get" action="\/" role="search"[\s\S]*?name="q"/);
    const found = await devel.get('/?q=NOTEB');
    expect(found.status).toBe(200);
    expect(found.text).toContain('href="/apps/ea/notes/"');
    expect(found.text).not.toContain('href="/apps/stable/welcome/"');
    expect(found.text).not.toContain('href="/apps/devel/inspector/"');
    expect(found.text).toContain('value="NOTEB"');
    expect(found.text).toMatch(/1 of \d+ apps match “NOTEB”/);
    const hostile = await devel.get(`/?q=${encodeURIComponent('<script>x</script>')}`);
    expect(hostile.status).toBe(200);
    expect(hostile.text).not.toContain('<script>x</script>');
    expect(hostile.text).toContain('0 of');
  });

  it('locked cards carry a Request access button that becomes Pending, and come back to the launcher', async () => {
    const stable = await signIn('stable@example.com');
    const before = await stable.get('/?q=insp');
    const form = /<form method="post" action="\/access-requests" class="inline request-access">[\s\S]*?<\/form>/.exec(sections(before.text).ask)?.[0];
    expect(form).toBeDefined();
    expect(form).toContain('name="level" value="devel"');
    expect(form).toContain('>Request access</button>');
    const fields = Object.fromEntries([...form!.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!.replaceAll('&amp;', '&').replaceAll('&#61;', '=')]));
    expect(fields.returnTo).toBe('/?q=insp');
    const sent = await post(stable, '/access-requests', fields);
    expect(sent.status).toBe(303);
    expect(pathOf(sent.location)).toBe('/?q=insp');
    const after = await stable.get('/');
    const inspector = /<li class="card locked"[^>]*>(?:(?!<\/li>)[\s\S])*Inspector[\s\S]*?<\/li>/.exec(after.text)?.[0];
    expect(inspector).toContain('data-testid="request-pending">Pending<');
    expect(inspector).not.toContain('Request access');
    // One notice, not two.
    expect(after.text.match(/data-testid="request-status"/g)).toHaveLength(1);
    expect(after.text).not.toContain('was sent to the administrators');
    // A returnTo elsewhere ends at the launcher.
    const elsewhere = await post(stable, '/access-requests', { ...fields, level: 'ea', returnTo: '//evil.example/' });
    expect(pathOf(elsewhere.location)).toBe('/');
  });

  it('from the 403 page (no returnTo field), goes back to the page it was sent from, if on this origin', async () => {
    const ea = await signIn('ea@example.com');
    const refused = await ea.get('/apps/devel/inspector/deep?x=1');
    expect(refused.status).toBe(403);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(refused.text.slice(refused.text.indexOf('data-testid="access-request"')))![1]!;
    const form = { _csrf: csrf, level: 'devel', reason: 'I maintain it' };
    const back = await ea.request('POST', '/access-requests', { form, headers: { Origin: portal.origin, Referer: `${portal.origin}/apps/devel/inspector/deep?x=1` } });
    expect(back.status).toBe(303);
    expect(pathOf(back.location)).toBe('/apps/devel/inspector/deep?x=1');
    const foreign = await ea.request('POST', '/access-requests', { form, headers: { Origin: portal.origin, Referer: 'https://evil.example/apps/' } });
    expect(pathOf(foreign.location)).toBe('/');
    // Leave no pending request behind for the lifecycle test.
    const admin = await signIn('admin@example.com');
    const id = (await ea.request('POST', '/access-requests', { json: { level: 'devel', reason: 'I maintain it' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' } })).json().id;
    expect((await post(admin, `/admin/requests/${id}`, { _csrf: await admin.csrfToken(), decision: 'denied', note: 'not yet' })).status).toBe(303);
  });

  it('gives a user with no level a way to ask for one', async () => {
    const nobody = await signIn('nobody@example.com');
    const page = await nobody.get('/');
    expect(page.text).toContain('no access level yet');
    expect(page.text).not.toContain('data-testid="app-link"');
    const form = /<form[^>]*data-testid="level-request">[\s\S]*?<\/form>/.exec(page.text)?.[0];
    expect(form).toContain('<select name="level">');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form!)![1]!;
    const sent = await post(nobody, '/access-requests', { _csrf: csrf, level: 'stable', reason: 'I am new here', returnTo: '/' });
    expect(sent.status).toBe(303);
    const again = await nobody.get('/');
    expect(again.text).not.toContain('data-testid="level-request"');
    expect(again.text).toContain('Pending');
  });
});

/** Bounds a failure only: revocation is event-driven. */
const GONE_WITHIN_MS = 15_000;

describe('access requests with a lifecycle', () => {
  it('request → pending → approved for 7 days → open → expired: membership gone, audited, socket dropped, history kept', async () => {
    const ea = await signIn('ea@example.com');
    const admin = await signIn('admin@example.com');
    const adminCsrf = await admin.csrfToken();
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(403);

    // Asked from the launcher's card.
    const launcher = await ea.get('/');
    const form = /<form method="post" action="\/access-requests" class="inline request-access">[\s\S]*?<\/form>/.exec(sections(launcher.text).ask)![0];
    const fields = Object.fromEntries([...form.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
    expect(fields.level).toBe('devel');
    expect((await post(ea, '/access-requests', fields)).status).toBe(303);
    expect((await ea.get('/')).text).toContain('data-testid="request-pending">Pending<');
    expect((await ea.get('/profile')).text).toMatch(/data-testid="my-requests"[\s\S]*level-devel[\s\S]*Pending/);

    // The admin sees what approving grants.
    const pending = await admin.get('/admin/requests');
    const panel = /<article class="panel" data-testid="pending-request">(?:(?!<\/article>)[\s\S])*ea@example\.com[\s\S]*?<\/article>/.exec(pending.text)![0];
    const grants = /data-testid="grants">([\s\S]*?)<\/p>/.exec(panel)![1]!;
    expect(grants).toContain('<strong>devel</strong>');
    expect(grants).toMatch(/inherits[^<]*ea[^<]*stable/);
    for (const title of ['Inspector', 'Notes', 'Welcome']) expect(grants).toContain(`>${title}</a>`);
    expect(panel).toContain('<option value="7">For 7 days</option>');
    const id = /action="\/admin\/requests\/(\d+)"/.exec(panel)![1]!;
    const approved = await post(admin, `/admin/requests/${id}`, { _csrf: adminCsrf, decision: 'approved', days: '7', note: 'for the audit week' });
    expect(approved.status).toBe(303);
    const record = await portal.portal.database.db.selectFrom('access_requests').selectAll().where('id', '=', Number(id)).executeTakeFirstOrThrow();
    const expiresAt = Number((record as { expires_at?: unknown }).expires_at);
    expect(expiresAt - Number(record.decided_at)).toBe(7 * 24 * 60 * 60 * 1000);

    expect((await ea.get('/')).text).toMatch(/Your request for <strong>In development<\/strong> access\s*was approved until \d{4}-\d\d-\d\d \d\d:\d\d UTC: for the audit week\./);
    // The user opens the app, over HTTP and a socket.
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(200);
    const socket = await connect(portal.origin, '/apps/devel/inspector', cookieHeader(ea));
    expect(socket.ok).toBe(true);
    if (!socket.ok) return;
    expect(await socket.socket.timeout(10_000).emitWithAck('ping')).toBe('pong');

    // Nothing ends before its time.
    expect(await portal.portal.admin.sweepExpiredMemberships()).toBe(0);
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(200);

    // Time passes: the sweep ends the membership.
    const gone = disconnected(socket.socket, GONE_WITHIN_MS);
    expect(await portal.portal.admin.sweepExpiredMemberships(expiresAt + 1)).toBe(1);
    await gone;
    expect((await ea.get('/apps/devel/inspector/')).status).toBe(403);
    const eaId = (await portal.portal.users.byEmail('ea@example.com'))[0]!.id;
    expect(await portal.portal.groups.directGroupsOf(eaId)).toEqual(['ea']);
    const audited = await portal.portal.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'member.expire').execute();
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({ actor: 'system:expiry', target: 'user:ea@example.com' });
    expect(JSON.parse(String(audited[0]!.before))).toMatchObject({ group: 'devel' });
    // A second sweep finds nothing.
    expect(await portal.portal.admin.sweepExpiredMemberships(expiresAt + 1)).toBe(0);

    // History for both.
    const history = /data-testid="request-history">([\s\S]*?)<\/table>/.exec((await admin.get('/admin/requests')).text)![1]!;
    expect(history).toMatch(/ea@example\.com[\s\S]*level-devel[\s\S]*To open Inspector[\s\S]*Approved until[\s\S]*admin@example\.com[\s\S]*for the audit week/);
    const mine = /data-testid="my-requests">([\s\S]*?)<\/table>/.exec((await ea.get('/profile')).text)![1]!;
    expect(mine).toMatch(/level-devel[\s\S]*Approved until[\s\S]*admin@example\.com[\s\S]*for the audit week/);
  });

  it('a permanent membership is not shortened by a timed approval, and an unknown duration is refused', async () => {
    const admin = await signIn('admin@example.com');
    const adminCsrf = await admin.csrfToken();
    const stable = await signIn('stable@example.com');
    const csrf = await stable.csrfToken();
    expect((await post(stable, '/access-requests', { _csrf: csrf, level: 'stable', reason: 'already in it', returnTo: '/' })).status).toBe(303);
    const page = await admin.get('/admin/requests');
    const id = /<article class="panel" data-testid="pending-request">(?:(?!<\/article>)[\s\S])*stable@example\.com<\/a> asks for <span class="badge level-stable">[\s\S]*?action="\/admin\/requests\/(\d+)"/.exec(page.text)![1]!;
    const refused = await post(admin, `/admin/requests/${id}`, { _csrf: adminCsrf, decision: 'approved', days: '3' });
    expect(refused.status).toBe(400);
    expect((await post(admin, `/admin/requests/${id}`, { _csrf: adminCsrf, decision: 'approved', days: '30' })).status).toBe(303);
    const stableId = (await portal.portal.users.byEmail('stable@example.com'))[0]!.id;
    await portal.portal.admin.sweepExpiredMemberships(Date.now() + 365 * 24 * 60 * 60 * 1000);
    expect(await portal.portal.groups.directGroupsOf(stableId)).toContain('stable');
  });
});
