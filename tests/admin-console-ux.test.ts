import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../lib/cli.ts';
import { openDatabase } from '../lib/db/database.ts';
import { AuditLog } from '../lib/directory/audit.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir, writeFiles } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The admin console as an admin uses it over HTTP (issue 13): refusals next to the form that caused
 * them, selects without a preselected group, no cycle offered as a parent, confirmation pages for
 * every destructive change, the audit log's filters, paging and export, sign-ins in the log, each
 * app's state, and a user in 1,000 groups whose page (and `whois --json`) stays small.
 */

let portal: TestPortal;
let appsDir: string;
let admin: Agent;
let csrf: string;
let audit: AuditLog;

/** A crashing command app and a healthy one, written as Node one-liners. */
const HEALTHY = `console.error('svc: warming up'); require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT, '127.0.0.1')`;
const CRASHY = `console.error('crashy: no config file at /etc/crashy.conf'); process.exit(3)`;
const command = (source: string) => `node -e "${source.replace(/"/g, '\\"')}"`;

beforeAll(async () => {
  appsDir = makeAppsDir({
    'stable/good/index.js': koaAppSource('good'),
    'stable/good/app.json': JSON.stringify({ title: 'Good', description: 'Always works', groups: ['finance'] }),
    'ea/edited/index.js': koaAppSource('edited'),
    'ea/closing/index.js': koaAppSource('closing'),
    'devel/broken/index.js': 'export default {{{ not javascript',
    'stable/svc/app.json': JSON.stringify({ title: 'Service', upstream: 'http://127.0.0.1:0', command: command(HEALTHY) }),
    'stable/crashy/app.json': JSON.stringify({ title: 'Crashy', upstream: 'http://127.0.0.1:0', command: command(CRASHY) }),
    'stable/remote/app.json': JSON.stringify({ title: 'Remote', upstream: 'http://127.0.0.1:9' }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: appsDir } });
  admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
  csrf = await admin.csrfToken();
  await portal.portal.admin.createGroup('test', { name: 'finance' });
  audit = new AuditLog(portal.portal.database);
});
afterAll(async () => {
  await portal?.stopAll();
});

const post = (path: string, form: Record<string, string>, headers: Record<string, string> = {}) =>
  admin.request('POST', path, { form: { _csrf: csrf, ...form }, headers: { Origin: portal.origin, ...headers } });
const userId = async (email: string) => (await portal.portal.users.byEmail(email))[0]!.id;

/** The HTML of the first `<select name=…>` on a page. */
function selectNamed(html: string, name: string): string {
  const start = html.indexOf(`<select name="${name}"`);
  expect(start, `a select named ${name}`).toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf('</select>', start));
}

/** The values a select offers, its placeholder left out. */
const offered = (select: string) => [...select.matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);

async function until<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('refusals are shown next to the form that caused them', () => {
  it('a nesting cycle: 409, the group page again, the message above the nesting form', async () => {
    await portal.portal.admin.createGroup('test', { name: 'auditors' });
    await portal.portal.admin.nest('test', 'auditors', 'finance');
    const cycle = await post('/admin/groups/finance/nest', { parent: 'auditors' });
    expect(cycle.status).toBe(409);
    expect(cycle.text).toContain('<h1>Group finance');
    expect(cycle.text).not.toContain('Back to your apps');
    expect(cycle.text).toMatch(/<p class="form-error" role="alert" id="nest-error" data-testid="form-error">That nesting would make a cycle: finance ⊂ auditors ⊂ finance\.[^<]*<\/p>\s*<form method="post" action="\/admin\/groups\/finance\/nest"/);
    expect(selectNamed(cycle.text, 'parent')).toContain('aria-invalid="true" aria-describedby="nest-error"');
    // An API caller still gets the JSON error.
    const json = await post('/admin/groups/finance/nest', { parent: 'auditors' }, { Accept: 'application/json' });
    expect(json.status).toBe(409);
    expect(json.json()).toMatchObject({ error: 'nesting_cycle', cycle: ['finance', 'auditors', 'finance'] });
  });

  it('an unknown user: 404, the group page again, what was typed still in the field', async () => {
    const unknown = await post('/admin/groups/finance/members', { user: 'ghost@example.com' });
    expect(unknown.status).toBe(404);
    expect(unknown.text).toMatch(/id="add-member-error"[^>]*>There is no user &quot;ghost@example\.com&quot;\.<\/p>\s*<form method="post" action="\/admin\/groups\/finance\/members"/);
    expect(unknown.text).toMatch(/<input type="text" name="user" value="ghost@example\.com"[^>]*aria-invalid="true"/);
  });

  it('a bad group name: 400, the groups page with the create form open, name and description kept (escaped)', async () => {
    const bad = await post('/admin/groups', { name: '<b>Bad Name</b>', level: 'ea', description: 'kept "as typed"' });
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('<details class="panel" open><summary>Create a group</summary>');
    expect(bad.text).toContain('id="create-group-error"');
    expect(bad.text).toContain('value="&lt;b&gt;Bad Name&lt;/b&gt;"');
    expect(bad.text).not.toContain('<b>Bad Name</b>');
    expect(bad.text).toContain('value="kept &quot;as typed&quot;"');
    expect(bad.text).toContain('<option selected>ea</option>');
    const duplicate = await post('/admin/groups', { name: 'finance' });
    expect(duplicate.status).toBe(409);
    expect(duplicate.text).toContain('A group named &quot;finance&quot; already exists.');
  });

  it('a user page form: an unknown group is refused on the user page; a password is never echoed', async () => {
    const id = await userId('ea@example.com');
    const refused = await post(`/admin/users/${id}/groups`, { group: 'no-such-group' });
    expect(refused.status).toBe(404);
    expect(refused.text).toMatch(/id="add-group-error"[^>]*>There is no group named &quot;no-such-group&quot;\.<\/p>\s*<form method="post" action="\/admin\/users\/\d+\/groups"/);
    const created = await post('/admin/users', { email: 'not-an-address', name: 'Kept Name', password: 'secret-password-123' });
    expect(created.status).toBe(400);
    expect(created.text).toContain('value="not-an-address"');
    expect(created.text).toContain('value="Kept Name"');
    expect(created.text).not.toContain('secret-password-123');
  });
});

describe('selects', () => {
  it('preselect no group: a disabled, selected "Choose a group…" placeholder, and required', async () => {
    const pages = [
      [await admin.get(`/admin/users/${await userId('ea@example.com')}`), 'group'],
      [await admin.get('/admin/groups/finance'), 'parent'],
    ] as [AgentResponse, string][];
    for (const [page, name] of pages) {
      const select = selectNamed(page.text, name);
      expect(select).toMatch(/^<select name="[a-z]+" required>/);
      expect(select).toMatch(/<option value="" disabled selected>Choose a group…<\/option>/);
      expect(select.match(/ selected/g)).toHaveLength(1);
      expect(offered(select).length).toBeGreaterThan(0);
    }
  });

  it('never offer a parent that would make a cycle', async () => {
    // chain-a ⊂ chain-b ⊂ chain-c: members of chain-a inherit chain-b, and so chain-c.
    for (const name of ['chain-a', 'chain-b', 'chain-c']) await portal.portal.admin.createGroup('test', { name });
    await portal.portal.admin.nest('test', 'chain-a', 'chain-b');
    await portal.portal.admin.nest('test', 'chain-b', 'chain-c');
    const top = offered(selectNamed((await admin.get('/admin/groups/chain-c')).text, 'parent'));
    expect(top).not.toContain('chain-c');
    expect(top).not.toContain('chain-b');
    expect(top).not.toContain('chain-a');
    expect(top).toContain('stable');
    const bottom = offered(selectNamed((await admin.get('/admin/groups/chain-a')).text, 'parent'));
    expect(bottom).not.toContain('chain-a');
    expect(bottom).not.toContain('chain-b'); // already its parent
    expect(bottom).toContain('chain-c');
    // The built-in order: admin inherits everything, so stable may nest in nothing built in.
    const stable = offered(selectNamed((await admin.get('/admin/groups/stable')).text, 'parent'));
    for (const name of ['ea', 'devel', 'admin', 'stable']) expect(stable).not.toContain(name);
  });
});

describe('destructive changes ask first, on a page that works without JavaScript', () => {
  const confirmationOf = (page: AgentResponse) => {
    expect(page.status).toBe(200);
    const form = /<form method="post" action="([^"]+)" class="row">([\s\S]*?)<\/form>/.exec(page.text.slice(page.text.indexOf('data-testid="confirmation"')))!;
    const fields = Object.fromEntries([...form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1], m[2]]));
    return { action: form[1]!, fields, heading: /<h1>([^<]+)<\/h1>/.exec(page.text)![1] };
  };

  it('removing a member: the group page links to "Remove X from Y?", the GET changes nothing, its form does', async () => {
    await portal.portal.admin.addMember('test', 'finance', 'stable@example.com');
    const id = await userId('stable@example.com');
    const group = await admin.get('/admin/groups/finance');
    expect(group.text).toContain(`href="/admin/groups/finance/members/remove?user=${id}"`);
    expect(group.text).not.toContain('action="/admin/groups/finance/members/remove"');
    const confirm = confirmationOf(await admin.get(`/admin/groups/finance/members/remove?user=${id}`));
    expect(confirm.heading).toBe('Remove stable@example.com from finance?');
    expect(confirm.action).toBe('/admin/groups/finance/members/remove');
    expect(confirm.fields).toEqual({ _csrf: csrf, user: String(id) });
    expect((await portal.portal.groups.members('finance')).map((m) => m.id)).toContain(id);
    const done = await post(confirm.action, confirm.fields);
    expect(done.status).toBe(303);
    expect((await portal.portal.groups.members('finance')).map((m) => m.id)).not.toContain(id);
    // Confirming twice: the refusal is shown on the confirmation page itself.
    const again = await post(confirm.action, confirm.fields);
    expect(again.status).toBe(404);
    expect(again.text).toContain('data-testid="confirmation"');
    expect(again.text).toContain('is not a direct member of &quot;finance&quot;');
  });

  it('un-nesting, removing from a group on the user page, revoking sessions, disabling and deleting', async () => {
    const ea = await userId('ea@example.com');
    const cases: [string, string, string, Record<string, string>][] = [
      ['/admin/groups/auditors/unnest?parent=finance', 'Stop nesting auditors inside finance?', '/admin/groups/auditors/unnest', { parent: 'finance' }],
      [`/admin/users/${ea}/groups/remove?group=ea`, 'Remove ea@example.com from ea?', `/admin/users/${ea}/groups/remove`, { group: 'ea' }],
      [`/admin/users/${ea}/sessions/revoke`, 'Revoke all sessions of ea@example.com?', `/admin/users/${ea}/sessions/revoke`, {}],
      [`/admin/users/${ea}/disable`, 'Disable ea@example.com?', `/admin/users/${ea}/disable`, { disabled: 'true' }],
      ['/admin/groups/chain-a/delete', 'Delete the group chain-a?', '/admin/groups/chain-a/delete', {}],
    ];
    for (const [page, question, action, fields] of cases) {
      const confirm = confirmationOf(await admin.get(page));
      expect(confirm.heading, page).toBe(question);
      expect(confirm, page).toMatchObject({ action, fields: { _csrf: csrf, ...fields } });
    }
    // Nothing changed by looking.
    expect((await portal.portal.users.byId(ea))!.disabled).toBe(false);
    expect(await portal.portal.groups.find('chain-a')).toBeDefined();
    expect((await portal.portal.groups.edges()).some((e) => e.child === 'auditors' && e.parent === 'finance')).toBe(true);
    // The pages link there rather than posting at once.
    const userPage = (await admin.get(`/admin/users/${ea}`)).text;
    for (const href of [`/admin/users/${ea}/groups/remove?group=ea`, `/admin/users/${ea}/sessions/revoke`, `/admin/users/${ea}/disable`]) expect(userPage).toContain(`href="${href}"`);
    expect(userPage).not.toContain('onclick');
    expect((await admin.get('/admin/groups/auditors')).text).toContain('href="/admin/groups/auditors/unnest?parent=finance"');
    // And the confirmed form does it.
    expect((await post('/admin/groups/auditors/unnest', { parent: 'finance' })).status).toBe(303);
    expect((await portal.portal.groups.edges()).some((e) => e.child === 'auditors' && e.parent === 'finance')).toBe(false);
  });

  it('has breadcrumbs on every page, the last one the page itself', async () => {
    const ea = await userId('ea@example.com');
    const trails: [string, string[]][] = [
      ['/admin/users', ['Admin', 'Users']],
      [`/admin/users/${ea}`, ['Admin', 'Users', 'ea@example.com']],
      ['/admin/groups/finance', ['Admin', 'Groups', 'finance']],
      ['/admin/groups/finance/members/remove?user=' + ea, ['Admin', 'Groups', 'finance', 'Remove ea@example.com']],
      ['/admin/audit', ['Admin', 'Audit log']],
      ['/admin/apps', ['Admin', 'Apps']],
    ];
    for (const [path, trail] of trails) {
      const html = (await admin.get(path)).text;
      const nav = html.slice(html.indexOf('<nav class="crumbs"'), html.indexOf('</nav>', html.indexOf('<nav class="crumbs"')));
      expect([...nav.matchAll(/<li>(?:<a href="[^"]+">|<span aria-current="page">)([^<]+)</g)].map((m) => m[1]), path).toEqual(trail);
      expect(nav, path).toContain(`<span aria-current="page">${trail.at(-1)}</span>`);
    }
  });
});

describe('the audit log', () => {
  it('has sign-ins and sign-outs in it, with the user as the actor', async () => {
    const stable = new Agent(portal.origin);
    await stable.login('stable@example.com', DEMO_PASSWORD);
    const token = await stable.csrfToken();
    expect((await stable.request('POST', '/logout', { form: { _csrf: token }, headers: { Origin: portal.origin } })).status).toBe(303);
    // Written once the answer is out (and only if it is a success), so a moment later.
    const rows = await until(async () => {
      const found = await portal.portal.database.db.selectFrom('audit_log').selectAll().where('actor', '=', 'stable@example.com').orderBy('id').execute();
      return found.length >= 2 ? found : undefined;
    });
    expect(rows.map((r) => [r.action, r.target])).toEqual([
      ['session.sign_in', 'user:stable@example.com'],
      ['session.sign_out', 'user:stable@example.com'],
    ]);
    const page = await admin.get('/admin/audit?action=session.');
    expect(page.text).toContain('<code>session.sign_in</code>');
    expect(page.text).toContain('<code>session.sign_out</code>');
    expect(page.text).not.toContain('Nothing yet.');
  });

  it('filters by actor, action (exact or a prefix), target and time, as a GET form', async () => {
    for (let i = 0; i < 60; i++) await audit.record({ actor: 'cli:filler', action: 'test.filler', target: `thing:${i}`, after: { n: i } });
    const page = await admin.get('/admin/audit');
    expect(page.text).toMatch(/<form method="get" action="\/admin\/audit"[^>]*data-testid="audit-filters">/);
    for (const name of ['actor', 'action', 'target', 'from', 'to']) expect(page.text).toContain(`name="${name}"`);

    const byActor = await admin.get('/admin/audit?actor=STABLE@example');
    expect(byActor.text).toContain('user:stable@example.com');
    expect(byActor.text).not.toContain('cli:filler');
    expect(byActor.text).toContain('value="STABLE@example"'); // the form shows the filter it applied
    const exact = await admin.get('/admin/audit?action=test.filler&target=thing:59');
    expect(exact.text.match(/<code>test\.filler<\/code>/g)).toHaveLength(1);
    expect((await admin.get('/admin/audit?action=test.')).text).toContain('<code>test.filler</code>');
    expect((await admin.get('/admin/audit?action=test')).text).toContain('No entries match these filters.');
    // A LIKE wildcard typed as a filter is a literal character, not "anything".
    expect((await admin.get('/admin/audit?target=thing%25')).text).toContain('No entries match these filters.');
    const today = new Date().toISOString().slice(0, 10);
    expect((await admin.get(`/admin/audit?action=test.filler&from=${today}&to=${today}`)).text).toContain('<code>test.filler</code>');
    expect((await admin.get('/admin/audit?action=test.filler&to=2000-01-01')).text).toContain('No entries match these filters.');
    expect((await admin.get('/admin/audit?action=test.filler&from=2999-01-01')).text).toContain('No entries match these filters.');
    expect((await admin.get('/admin/audit?from=not-a-date&to=2026-02-31')).status).toBe(200);
  });

  it('pages, keeping the filters in its links', async () => {
    const first = await admin.get('/admin/audit?action=test.filler');
    expect(first.text).toContain('Page 1 of 2');
    expect(first.text).toContain('href="/admin/audit?action=test.filler&amp;page=2"');
    const second = await admin.get('/admin/audit?action=test.filler&page=2');
    expect(second.text.match(/<code>test\.filler<\/code>/g)).toHaveLength(10);
    expect(second.text).toContain('Page 2 of 2');
  });

  it('shows changes as readable lines, not raw JSON', async () => {
    await portal.portal.admin.createGroup('test', { name: 'renamed-from', description: 'old words' });
    await portal.portal.admin.updateGroup('test', 'renamed-from', { description: 'new words', level: 'ea' });
    const page = await admin.get('/admin/audit?action=group.update&target=renamed-from');
    expect(page.text).toContain('<span class="field-name">description</span>: <span class="was"><span class="visually-hidden">was </span>old words</span> → new words');
    expect(page.text).toContain('<span class="field-name">level</span>: <span class="was"><span class="visually-hidden">was </span>none</span> → ea');
    expect(page.text).not.toContain('<span class="field-name">name</span>'); // unchanged fields are left out
    expect(page.text).not.toContain('{&quot;');
  });

  it('exports the same filter as CSV and as JSON lines, streamed, formulas defused', async () => {
    await audit.record({ actor: '=HYPERLINK("http://evil.example")', action: 'test.formula', target: 'user:x, "quoted"' });
    const csv = await admin.get('/admin/audit/export.csv?action=test.');
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(csv.headers.get('content-disposition')).toMatch(/^attachment; filename="atrium-audit-\d{8}-\d{6}\.csv"$/);
    expect(csv.headers.get('transfer-encoding')).toBe('chunked'); // streamed, not buffered into one body
    const lines = csv.text.trimEnd().split('\r\n');
    expect(lines[0]).toBe('id,at,actor,action,target,before,after');
    expect(lines).toHaveLength(1 + 61);
    expect(lines[1]).toMatch(/^\d+,\d{4}-\d\d-\d\dT[\d:.]+Z,"'=HYPERLINK\(""http:\/\/evil\.example""\)",test\.formula,"user:x, ""quoted""",,$/);
    expect(lines.at(-1)).toMatch(/,cli:filler,test\.filler,thing:0,,"\{""n"":0\}"$/);

    const jsonl = await admin.get('/admin/audit/export.jsonl?actor=cli:filler&target=thing:1');
    expect(jsonl.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
    const entries = jsonl.text.trimEnd().split('\n').map((l) => JSON.parse(l));
    // thing:1 and thing:10 … thing:19 (a substring filter), newest first.
    expect(entries.map((e) => e.target)).toEqual(['thing:19', 'thing:18', 'thing:17', 'thing:16', 'thing:15', 'thing:14', 'thing:13', 'thing:12', 'thing:11', 'thing:10', 'thing:1']);
    expect(entries.at(-1)).toMatchObject({ actor: 'cli:filler', action: 'test.filler', after: { n: 1 }, at: expect.stringMatching(/Z$/) });
    // Whoever exported is in the log, with the filter they used.
    const exported = await portal.portal.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'audit.export').orderBy('id', 'desc').executeTakeFirstOrThrow();
    expect(exported.actor).toBe('admin@example.com');
    expect(JSON.parse(exported.after!)).toEqual({ format: 'jsonl', actor: 'cli:filler', target: 'thing:1' });
    // Only admins.
    const devel = new Agent(portal.origin);
    await devel.login('devel@example.com', DEMO_PASSWORD);
    expect((await devel.get('/admin/audit/export.csv')).status).toBe(403);
  });

  it('exports every row of a log longer than one read batch', async () => {
    const before = Number((await portal.portal.database.db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow()).n);
    const rows = Array.from({ length: 1200 }, (_, i) => ({ at: Date.now(), actor: 'cli:bulk', action: 'test.bulk', target: `bulk:${i}`, before: null, after: null }));
    await portal.portal.database.db.insertInto('audit_log').values(rows).execute();
    const all = await admin.get('/admin/audit/export.jsonl');
    const ids = all.text.trimEnd().split('\n').map((l) => JSON.parse(l).id as number);
    expect(ids.length).toBe(before + 1200 + 1); // and the export's own entry
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
  });
});

describe('the Apps page', () => {
  it('shows each app once with its state, its manifest as fields and its upstream health', async () => {
    // Break one app's code (the last good version keeps serving) and another's manifest (closed).
    writeFiles(appsDir, { 'ea/edited/index.js': 'export default {{{ broken edit', 'ea/closing/app.json': '{ "grups": [] }' });
    const page = await until(async () => {
      const text = (await admin.get('/admin/apps')).text;
      return text.includes('data-app="ea/edited" data-state="stale"') && text.includes('data-app="ea/closing" data-state="closed"') && /data-app="stable\/crashy"[\s\S]*?data-testid="app-restarts">[1-9]/.test(text) ? text : undefined;
    });
    const article = (key: string) => {
      const start = page.indexOf(`data-app="${key}"`);
      expect(start, key).toBeGreaterThanOrEqual(0);
      expect(page.indexOf(`data-app="${key}"`, start + 1), `${key} is listed once`).toBe(-1);
      return page.slice(start, page.indexOf('</article>', start));
    };
    expect(article('stable/good')).toContain('data-state="serving"');
    expect(article('stable/good')).toMatch(/<dt>Title<\/dt><dd>Good<\/dd>\s*<dt>Description<\/dt><dd>Always works<\/dd>\s*<dt>Open to<\/dt><dd>members of finance<\/dd>/);
    expect(article('ea/edited')).toContain('Serving the last good version');
    expect(article('ea/edited')).toContain('The latest edit is broken: ');
    expect(article('ea/edited')).not.toContain('(the last good version is still serving)');
    // A closed app is reported by the manifest that closed it: nothing of it is served.
    expect(article('ea/closing')).toContain('data-state="closed"');
    expect(article('ea/closing')).toContain('Not serving: closed until app.json is fixed');
    expect(article('ea/closing')).toContain('grups');
    expect(article('devel/broken')).toContain('data-state="failed"');
    expect(page).not.toContain('<pre>{}</pre>');

    const svc = article('stable/svc');
    expect(svc).toMatch(/data-testid="app-health"><strong>up<\/strong>: accepting connections at <code>127\.0\.0\.1:\d+<\/code>/);
    expect(svc).toContain('<dt>Process</dt><dd>running</dd>');
    expect(svc).toContain('data-testid="app-restarts">0<');
    expect(svc).toContain('data-testid="app-last-error"><code>svc: warming up</code>');
    expect(svc).toMatch(/<dt>Upstream<\/dt><dd><code>http:\/\/127\.0\.0\.1:0 \(now http:\/\/127\.0\.0\.1:\d+\/\)<\/code>/);
    const crashy = article('stable/crashy');
    expect(crashy).toContain('<strong>down</strong>');
    expect(crashy).toContain('data-testid="app-last-error"><code>crashy: no config file at /etc/crashy.conf</code>');
    const remote = article('stable/remote');
    expect(remote).toContain('<strong>down</strong>: nothing accepting connections at <code>127.0.0.1:9</code>');
    expect(remote).not.toContain('<dt>Restarts</dt>');
  });
});

describe('a user in 1,000 groups', () => {
  it('has a user page and a whois --json under 200 KB: one shortest path per group, paged', { timeout: 300_000 }, async () => {
    // The worst case for paths: 1,000 groups nested in a chain, the user at the bottom of it, so
    // the groups' shortest paths are 1, 2, … 1,000 long. And a second user directly in all of them.
    const directory = portal.portal.admin;
    const deep = await directory.addLocalUser('test', { email: 'deep@example.com' });
    const wide = await directory.addLocalUser('test', { email: 'wide@example.com' });
    let previous: string | undefined;
    for (let i = 0; i < 1000; i++) {
      const name = `g-${String(i).padStart(4, '0')}`;
      await directory.createGroup('test', { name });
      if (previous) await directory.nest('test', previous, name);
      await directory.addMember('test', name, wide.id);
      previous = name;
    }
    await directory.nest('test', previous!, 'stable');
    await directory.addMember('test', 'g-0000', deep.id);

    const database = await openDatabase(portal.database.target);
    try {
      for (const user of [deep, wide]) {
        const page = await admin.get(`/admin/users/${user.id}`);
        expect(page.status).toBe(200);
        const bytes = Buffer.byteLength(page.text);
        console.log(`user page of ${user.email}: ${bytes} bytes`);
        expect(bytes).toBeLessThan(200_000);
        expect(page.text).toContain('<h2>Groups <small>1001</small></h2>'); // 1,000 and stable
        expect(page.text).toContain('Page 1 of 21');

        let out = '';
        expect(await runCli(['whois', user.email!, '--json'], database, { out: (t) => (out += t), err: () => {} }, 'cli:test')).toBe(0);
        console.log(`whois --json of ${user.email}: ${Buffer.byteLength(out)} bytes`);
        expect(Buffer.byteLength(out)).toBeLessThan(200_000);
        const whois = JSON.parse(out);
        expect(whois.level).toBe('stable');
        expect(whois.groups).toHaveLength(1001);
      }

      // The deep user: each group once, with the step it is inherited through; the long paths
      // shortened on the page, whole one link away.
      let out = '';
      await runCli(['whois', 'deep@example.com', '--json'], database, { out: (t) => (out += t), err: () => {} }, 'cli:test');
      const groups = new Map((JSON.parse(out).groups as { group: string; depth: number; through: string | null }[]).map((g) => [g.group, g]));
      expect(groups.get('g-0000')).toMatchObject({ depth: 0, through: null });
      expect(groups.get('g-0999')).toMatchObject({ depth: 999, through: 'g-0998' });
      expect(groups.get('stable')).toMatchObject({ depth: 1000, through: 'g-0999' });
      expect(JSON.parse(out).grantedBy).toHaveLength(1001);

      const last = await admin.get(`/admin/users/${deep.id}?page=21`);
      expect(last.text).toContain('via g-0000 ⊂ g-0001 ⊂ … 997 more … ⊂ g-0999 ⊂ stable');
      expect(last.text).toContain(`href="/admin/users/${deep.id}/path?group=stable"`);
      const path = await admin.get(`/admin/users/${deep.id}/path?group=stable`);
      expect(path.status).toBe(200);
      expect(path.text.match(/<li><a href="\/admin\/groups\//g)).toHaveLength(1001);
      expect((await admin.get(`/admin/users/${deep.id}/path?group=admin`)).status).toBe(404);
      const wideFirst = await admin.get(`/admin/users/${wide.id}`);
      expect(wideFirst.text.match(/direct member/g)).toHaveLength(50);
    } finally {
      await database.close();
    }
  });
});
