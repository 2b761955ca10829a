import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RECENT_KEPT, RecentApps } from '../lib/recent-apps.ts';
import { UserDirectory } from '../lib/directory/users.ts';
import { Agent, signedInAgent } from './helpers/agent.ts';
import { DIALECTS, useMigratedDatabase } from './helpers/databases.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * "Recently opened" on the launcher (issue 13, item 1): remembered per user in the database when a
 * launcher link is followed (POST /recent-apps, what the launcher's script sends), shown first,
 * and never written while an app is being served.
 */
let portal: TestPortal;

beforeAll(async () => {
  const apps = makeAppsDir({
    'stable/welcome/index.js': koaAppSource('welcome'),
    'stable/welcome/app.json': JSON.stringify({ title: 'Welcome' }),
    'ea/notes/index.js': koaAppSource('notes'),
    'ea/notes/app.json': JSON.stringify({ title: 'Notes' }),
    'devel/inspector/index.js': koaAppSource('inspector'),
    'devel/inspector/app.json': JSON.stringify({ title: 'Inspector' }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
});
afterAll(async () => {
  await portal?.stopAll();
});

const signIn = (email: string): Promise<Agent> => signedInAgent(portal.origin, email);
const opened = (agent: Agent, csrf: string, app: unknown, headers: Record<string, string> = { Origin: portal.origin }) =>
  typeof app === 'string' ? agent.request('POST', '/recent-apps', { form: { _csrf: csrf, app }, headers }) : agent.request('POST', '/recent-apps', { json: { _csrf: csrf, app }, headers });

/** The launcher's "Recently opened" section: the app links in it, in order (empty when absent). */
function recentLinks(html: string): string[] {
  const section = /<section data-section="recent"[\s\S]*?<\/section>/.exec(html)?.[0] ?? '';
  return [...section.matchAll(/<a class="card-link" href="([^"]+)"/g)].map((m) => m[1]!);
}
const rows = (userId: number) => portal.portal.database.db.selectFrom('recent_apps').selectAll().where('user_id', '=', userId).execute();

describe('recently opened apps', () => {
  it('are remembered when a launcher link is followed and shown first, newest first', async () => {
    const ea = await signIn('ea@example.com');
    const csrf = await ea.csrfToken();
    const before = await ea.get('/');
    expect(before.text).not.toContain('data-section="recent"');
    // The launcher's links carry what the script reports, and the token it reports with.
    expect(before.text).toContain('href="/apps/ea/notes/" data-testid="app-link" data-app="ea/notes"');
    expect(before.text).toMatch(/<div data-section="yours" data-csrf="[^"]+">/);

    expect((await opened(ea, csrf, 'ea/notes')).status).toBe(204);
    const once = await ea.get('/');
    expect(recentLinks(once.text)).toEqual(['/apps/ea/notes/']);
    expect(once.text.indexOf('data-section="recent"')).toBeLessThan(once.text.indexOf('data-section="yours"'));
    // Its cards have ids of their own (the same app is in its tier too) and are not search entries.
    expect(once.text).toContain('id="recent-app-ea-notes-title"');
    expect(once.text.match(/data-search="notes/g)).toHaveLength(1);

    expect((await opened(ea, csrf, 'stable/welcome')).status).toBe(204);
    expect(recentLinks((await ea.get('/')).text)).toEqual(['/apps/stable/welcome/', '/apps/ea/notes/']);
    expect((await opened(ea, csrf, 'ea/notes')).status).toBe(204);
    expect(recentLinks((await ea.get('/')).text)).toEqual(['/apps/ea/notes/', '/apps/stable/welcome/']);
    // A search shows matches only: not the recent row.
    expect((await ea.get('/?q=notes')).text).not.toContain('data-section="recent"');
    // Per user: another account has its own (empty) list.
    expect((await (await signIn('devel@example.com')).get('/')).text).not.toContain('data-section="recent"');
  });

  it('adds nothing to serving an app: no write, whatever the number of requests', async () => {
    const stable = await signIn('stable@example.com');
    const csrf = await stable.csrfToken();
    const userId = (await portal.portal.users.byEmail('stable@example.com'))[0]!.id;
    expect((await opened(stable, csrf, 'stable/welcome')).status).toBe(204);
    const remembered = await rows(userId);
    expect(remembered.map((r) => r.app)).toEqual(['stable/welcome']);
    for (let i = 0; i < 25; i++) expect((await stable.get(`/apps/stable/welcome/page-${i}`)).status).toBe(200);
    expect(await rows(userId)).toEqual(remembered);
  });

  it('refuses what is not a followed link of this user: a clear 4xx, nothing written', async () => {
    const ea = await signIn('ea@example.com');
    const csrf = await ea.csrfToken();
    const userId = (await portal.portal.users.byEmail('ea@example.com'))[0]!.id;
    const before = await rows(userId);
    expect((await ea.request('POST', '/recent-apps', { form: { app: 'ea/notes' }, headers: { Origin: portal.origin } })).status).toBe(403);
    expect((await opened(ea, `${csrf}x`, 'ea/notes')).status).toBe(403);
    expect((await opened(ea, csrf, 'ea/notes', { Origin: 'https://evil.example' })).status).toBe(403);
    // An app above the user's level, or none at all: not remembered, and nothing said about it.
    const above = await opened(ea, csrf, 'devel/inspector');
    expect(above.status).toBe(404);
    expect(above.text).not.toContain('Inspector');
    expect((await opened(ea, csrf, 'ea/nothing-here')).status).toBe(404);
    for (const bad of ['', 'notes', 'nope/notes', 'ea/notes/x', '/ea/notes', 'ea/', `ea/${'n'.repeat(200)}`]) {
      const answer = await opened(ea, csrf, bad);
      expect(answer.status, bad).toBe(400);
    }
    for (const bad of [['ea/notes'], { tier: 'ea' }, 7, null]) expect((await opened(ea, csrf, bad)).status, JSON.stringify(bad)).toBe(400);
    expect(await rows(userId)).toEqual(before);
    // Signed out: an API 401.
    const stranger = new Agent(portal.origin);
    expect((await stranger.request('POST', '/recent-apps', { form: { _csrf: csrf, app: 'ea/notes' }, headers: { Origin: portal.origin } })).status).toBe(401);
  });

});

for (const dialect of DIALECTS) {
  describe(`the recent_apps store on ${dialect}`, () => {
    const migrated = useMigratedDatabase(dialect);

    it(`keeps the newest ${RECENT_KEPT} per user, each app once`, async () => {
      const { database } = migrated;
      const users = new UserDirectory(database);
      const a = (await users.syncFromProvider({ sub: 'a', email: 'a@example.com' })).user;
      const b = (await users.syncFromProvider({ sub: 'b', email: 'b@example.com' })).user;
      const recent = new RecentApps(database);
      for (let i = 1; i <= RECENT_KEPT + 3; i++) await recent.remember(a.id, `ea/app-${i}`, 1_000 + i);
      await recent.remember(a.id, 'ea/app-5', 5_000);
      await recent.remember(b.id, 'stable/welcome', 7_000);
      expect(await recent.list(a.id)).toEqual([{ app: 'ea/app-5', openedAt: 5_000 }, ...[9, 8, 7, 6, 4].map((i) => ({ app: `ea/app-${i}`, openedAt: 1_000 + i }))]);
      expect(await recent.list(b.id)).toEqual([{ app: 'stable/welcome', openedAt: 7_000 }]);
      const rowsOfA = await database.db.selectFrom('recent_apps').select('app').where('user_id', '=', a.id).execute();
      expect(rowsOfA).toHaveLength(RECENT_KEPT);
    });
  });
}
