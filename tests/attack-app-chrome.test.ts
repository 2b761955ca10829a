import dns from 'node:dns';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import mysql from 'mysql2/promise';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeHtml } from '../lib/app-kit.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { RECENT_KEPT } from '../lib/recent-apps.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { sendAs } from './helpers/attack-requests.ts';
import { rawRequest } from './helpers/raw-http.ts';
import { CHROMIUM, CHROMIUM_ARGS, launchChromium, NAVIGATION_TIMEOUT_MS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import type { HostAgentInMode, ModePortal, Mode } from './helpers/modes.ts';
import { MODES, startModePortal } from './helpers/modes.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * An attacker's look at issue 13's app chrome: the portal bar's data (`/.well-known/atrium/bar.json`),
 * "recently opened" (`POST /recent-apps`), sign-out (`/sign-out`, `POST /logout`), the 403 page's
 * access request and Pending, and the example apps' page()/html escaping. Real portals in both
 * hosting modes, real sign-ins through the embedded provider, Chromium where the browser is the point.
 * The trust model (README "Trust model and app origins"): with APP_ORIGIN an app's scripts must not
 * act on the portal or on another app.
 */

const BAR = '/.well-known/atrium/bar.json';
const BAR_KEYS = ['email', 'launcher', 'level', 'levelLabel', 'name', 'signOut'];
const EXAMPLES = fileURLToPath(new URL('../apps/', import.meta.url));
/** Apps an `ea` user may open beyond the examples, so "recently opened" has more to remember than it keeps. */
const FILLER = Array.from({ length: 10 }, (_, i) => `stable/filler${i + 1}`);

/** An app page that frames whatever `?src=` names: a clickjacking attempt from an app origin. */
const FRAMER = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => {
  const src = String(ctx.query.src ?? '').replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
  ctx.type = 'html';
  ctx.body = '<!doctype html><title>framer</title><iframe id="victim" src="' + src + '" width="800" height="500"></iframe>';
});
export default app;
`;

/** The example apps (welcome, notes, hello-python) as they are, plus the apps the attacks need. */
function appsDir(): string {
  const files: Record<string, string> = {
    'stable/welcome/index.ts': `export { default } from ${JSON.stringify(join(EXAMPLES, 'stable/welcome/index.ts'))};\n`,
    'stable/welcome/app.json': JSON.stringify({ title: 'Welcome' }),
    'ea/notes/index.ts': `export { default } from ${JSON.stringify(join(EXAMPLES, 'ea/notes/index.ts'))};\n`,
    'ea/hello-python/app.json': JSON.stringify({ title: 'Hello from Python', upstream: 'http://127.0.0.1:0', command: `python3 '${join(EXAMPLES, 'ea/hello-python/app.py')}'` }),
    'ea/framer/index.js': FRAMER,
    'ea/framer/app.json': JSON.stringify({ title: 'Framer' }),
    'devel/lab/index.js': koaAppSource('lab'),
    'devel/lab/app.json': JSON.stringify({ title: 'Lab' }),
    // An app's author is not trusted with APP_ORIGIN: its manifest's words are shown on the portal's pages.
    'stable/shady/index.js': koaAppSource('shady'),
    'stable/shady/app.json': JSON.stringify({ title: `Shady<script>alert(1)</script>`, description: `"><img src=x onerror=alert(2)>` }),
    'devel/secret/index.js': koaAppSource('secret'),
    'devel/secret/app.json': JSON.stringify({ title: 'Secret', groups: ['auditors'] }),
  };
  for (const key of FILLER) files[`${key}/index.js`] = koaAppSource(key);
  return makeAppsDir(files);
}

/** A local account whose name and email are markup (the email syntax the admin accepts allows it). */
const HOSTILE = {
  email: `x"'><svg/onload=alert(1)>@evil.example`,
  name: `<script>alert(1)</script>"><img src=x onerror=alert(2)>`,
  password: 'Plenty-long-passphrase-42',
};
const RAW_MARKUP = ['<script>alert(1)', '<svg/onload', '<img src=x'];

const setups = new Map<Mode, ModePortal>();
const extra: TestPortal[] = [];
let browser: Browser | undefined;
let restoreLookup = () => {};
let closeSameSite = async () => {};

beforeAll(async () => {
  for (const mode of MODES) {
    const setup = await startModePortal(mode, { env: { APPS_DIR: appsDir() } });
    setups.set(mode, setup);
    const { admin } = setup.portal.portal;
    await admin.addLocalUser('test', { email: HOSTILE.email, name: HOSTILE.name, password: HOSTILE.password });
    await admin.addMember('test', 'ea', HOSTILE.email);
    await admin.createGroup('test', { name: 'auditors' });
  }
}, 240_000);

afterAll(async () => {
  await browser?.close();
  await closeSameSite();
  for (const setup of setups.values()) await setup.stopAll();
  for (const portal of extra) await portal.stopAll();
  restoreLookup();
});

const setupOf = (mode: Mode) => setups.get(mode)!;
const userId = async (setup: ModePortal, email: string) => (await setup.portal.portal.users.byEmail(email))[0]!.id;
const recentRows = async (setup: ModePortal, email: string) =>
  (await setup.portal.portal.database.db.selectFrom('recent_apps').select(['app']).where('user_id', '=', await userId(setup, email)).orderBy('app').execute()).map((r) => r.app);
const me = async (agent: HostAgentInMode) => (await agent.get(`${agent.setup.origin}/me`, { Accept: 'application/json' })).status;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** Where an app page's bar asks (bar.js fetches the absolute path on the page's own origin). */
const barUrl = (setup: ModePortal, tier: string, name: string) => (setup.mode === 'app origins' ? setup.appUrl(tier, name, BAR) : `${setup.origin}${BAR}`);
/** As the bar asks, from a page of the app (entered first, so that an app origin holds its session). */
async function askBar(agent: HostAgentInMode, tier: string, name: string, headers: Record<string, string> = {}) {
  if (agent.setup.mode === 'app origins' && !agent.appSession(tier, name)) await agent.visit(tier, name, '/');
  return sendAs(agent, 'GET', barUrl(agent.setup, tier, name), { headers });
}
let freshCount = 0;
/** A new local account (no request, no list, nothing remembered yet), signed in; `group` gives it a level. */
async function freshUser(setup: ModePortal, group?: string): Promise<HostAgentInMode> {
  const email = `fresh${++freshCount}@example.com`;
  const password = 'Another-long-passphrase-77';
  await setup.portal.portal.admin.addLocalUser('test', { email, name: `Fresh ${freshCount}`, password });
  if (group) await setup.portal.portal.admin.addMember('test', group, email);
  const agent = setup.browser();
  const last = await agent.signIn(`${setup.origin}/login`, email, password);
  expect(last.status).toBe(200);
  return agent;
}

/** Asks until the answer's status is no longer `from` (a directory change reaches sessions soon, not in the same tick). */
async function statusOnceChanged(ask: () => Promise<{ status: number }>, from: number): Promise<number> {
  let status = from;
  for (let i = 0; i < 60 && status === from; i++) {
    status = (await ask()).status;
    if (status === from) await sleep(250);
  }
  return status;
}

/** The access-request form of a 403 page, its fields by name (undefined when the page has none). */
function requestForm(html: string): Record<string, string> | undefined {
  const form = /<form method="post" action="\/access-requests"[^>]*data-testid="access-request">([\s\S]*?)<\/form>/.exec(html)?.[1];
  if (!form) return undefined;
  return Object.fromEntries([...form.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1]!, m[2]!.replaceAll('&amp;', '&')]));
}

function expectNoCors(response: { headers: Record<string, string | string[] | undefined> }, what: string): void {
  expect(response.headers['access-control-allow-origin'], what).toBeUndefined();
  expect(response.headers['access-control-allow-credentials'], what).toBeUndefined();
}

// ------------------------------------------------------------------------------------------------
// bar.json
// ------------------------------------------------------------------------------------------------

for (const mode of MODES) {
  describe(`bar.json (${mode})`, () => {
    it('answers the user only what the app already knows: no token, no session id, no other app; not cacheable; no CORS', { timeout: 120_000 }, async () => {
      const setup = setupOf(mode);
      const ea = await setup.signedIn('ea@example.com');
      expect((await ea.visit('ea', 'notes')).status).toBe(200);
      const info = await askBar(ea, 'ea', 'notes');
      expect(info.status).toBe(200);
      expect(Object.keys(info.json()).sort()).toEqual(BAR_KEYS);
      expect(info.json()).toMatchObject({ email: 'ea@example.com', level: 'ea' });
      // No secret of either session: the portal's CSRF token and session id, the app origin's cookie.
      const secrets = [await ea.csrfToken(setup.origin), ea.portalSessionId(), ...ea.cookieFor('ea', 'notes').split('; ').map((c) => c.slice(c.indexOf('=') + 1))];
      for (const secret of secrets.filter((s) => s.length >= 16)) expect(info.text).not.toContain(secret);
      for (const other of ['welcome', 'hello-python', 'lab', 'secret', 'filler']) expect(info.text).not.toContain(other);
      // Per user: never stored by a shared cache, and a cache that keeps it keys it by cookie.
      expect(String(info.headers['cache-control'])).toMatch(/no-store|private/);
      expect(String(info.headers['cache-control'])).not.toMatch(/public/);
      expect(String(info.headers.vary ?? '')).toMatch(/cookie/i);
      expect(info.headers['content-type']).toMatch(/^application\/json/);
      expect(info.headers['x-content-type-options']).toBe('nosniff');

      // Another app's origin, another site, a sandboxed frame: nobody else may read it with the user's cookies.
      const foreign = [...(mode === 'app origins' ? [setup.appOrigin('stable', 'welcome'), setup.appOrigin('ea', 'hello-python'), setup.origin] : []), 'https://evil.example', 'null'];
      const places = [barUrl(setup, 'ea', 'notes'), ...(mode === 'app origins' ? [`${setup.origin}${BAR}`] : [])];
      for (const place of places) {
        for (const origin of foreign) {
          const read = await sendAs(ea, 'GET', place, { headers: { Origin: origin } });
          expectNoCors(read, `GET ${place} from ${origin}`);
          const preflight = await sendAs(ea, 'OPTIONS', place, { headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'accept' } });
          expectNoCors(preflight, `OPTIONS ${place} from ${origin}`);
          expect(preflight.headers['access-control-allow-methods'], `OPTIONS ${place} from ${origin}`).toBeUndefined();
        }
      }
    });

    it('is refused to a visitor without a session, as a 401 without any user in it', { timeout: 60_000 }, async () => {
      const setup = setupOf(mode);
      const stranger = setup.browser();
      for (const place of [barUrl(setup, 'ea', 'notes'), `${setup.origin}${BAR}`]) {
        const answer = await stranger.get(place, { Accept: 'application/json' });
        expect(answer.status, place).toBe(401);
        expect(answer.text).not.toMatch(/@example\.com/);
      }
    });
  });
}

describe('bar.json on app origins', () => {
  it('is refused with another app’s cookie, on an unknown app’s host, with a forged, unsigned, doubled or portal cookie', { timeout: 120_000 }, async () => {
    const setup = setupOf('app origins');
    const ea = await setup.signedIn('ea@example.com');
    expect((await ea.visit('ea', 'notes')).status).toBe(200);
    expect((await ea.visit('stable', 'welcome')).status).toBe(200);
    const jar = ea.jar(new URL(setup.appOrigin('ea', 'notes')).host);
    const value = jar.get('atrium.app')!;
    const sig = jar.get('atrium.app.sig');
    expect(value).toBeTruthy();
    const notesCookie = ea.cookieFor('ea', 'notes');
    const ask = (tier: string, name: string, cookie: string) => sendAs(ea, 'GET', setup.appUrl(tier, name, BAR), { headers: { Cookie: cookie } });
    // Where it belongs, it works (so the refusals below are about the cookie, not the request).
    expect((await ask('ea', 'notes', notesCookie)).status).toBe(200);

    // ea/notes's cookie replayed on other app origins: the session is bound to its app.
    for (const [tier, name] of [['stable', 'welcome'], ['ea', 'hello-python'], ['ea', 'ghost'], ['devel', 'lab']] as const) {
      const answer = await ask(tier, name, notesCookie);
      expect(answer.status, `${tier}/${name}`).toBeGreaterThanOrEqual(400);
      expect(answer.status, `${tier}/${name}`).toBeLessThan(500);
      expect(answer.text, `${tier}/${name}`).not.toContain('ea@example.com');
    }

    const flipped = `${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
    const portalJar = ea.jar(new URL(setup.origin).host);
    const forged: Record<string, string> = {
      'unsigned value': `atrium.app=${value}`,
      'flipped value, real signature': `atrium.app=${flipped}; atrium.app.sig=${sig}`,
      'real value, forged signature': `atrium.app=${value}; atrium.app.sig=${'A'.repeat((sig ?? 'x'.repeat(27)).length)}`,
      'two app cookies': `${notesCookie}; atrium.app=${value}; atrium.app.sig=${sig}`,
      'the portal’s own cookie': `atrium.sid=${portalJar.get('atrium.sid')}; atrium.sid.sig=${portalJar.get('atrium.sid.sig')}`,
      'a huge cookie': `atrium.app=${'a'.repeat(6000)}`,
    };
    for (const [what, cookie] of Object.entries(forged)) {
      const answer = await ask('ea', 'notes', cookie);
      expect(answer.status, what).toBe(401);
      expect(answer.text, what).not.toContain('ea@example.com');
    }
    // The app origin's cookie does not open the portal's own bar.json either.
    expect((await sendAs(ea, 'GET', `${setup.origin}${BAR}`, { headers: { Cookie: notesCookie } })).status).toBe(401);
  });

  it('is refused once the user may no longer open the app: a per-app group left, a level lost', { timeout: 120_000 }, async () => {
    const setup = setupOf('app origins');
    const { admin } = setup.portal.portal;
    await admin.addMember('test', 'auditors', 'devel@example.com');
    const devel = await setup.signedIn('devel@example.com');
    expect((await devel.visit('devel', 'secret')).status).toBe(200);
    expect((await devel.visit('devel', 'lab')).status).toBe(200);
    const secretBar = () => devel.call('devel', 'secret', BAR);
    const labBar = () => devel.call('devel', 'lab', BAR);
    expect((await secretBar()).status).toBe(200);
    expect((await labBar()).status).toBe(200);

    await admin.removeMember('test', 'auditors', 'devel@example.com');
    expect(await statusOnceChanged(secretBar, 200)).toBe(401);
    expect((await devel.call('devel', 'secret', '/')).status).toBe(403);
    expect((await labBar()).status).toBe(200);

    await admin.removeMember('test', 'devel', 'devel@example.com');
    try {
      expect(await statusOnceChanged(labBar, 200)).toBe(401);
    } finally {
      await admin.addMember('test', 'devel', 'devel@example.com');
    }
  });
});

describe('the portal’s paths on an app origin', () => {
  it('are never the app’s: /.well-known/atrium/* is answered by the portal, whatever the spelling', { timeout: 60_000 }, async () => {
    const setup = setupOf('app origins');
    const devel = await setup.signedIn('devel@example.com');
    expect((await devel.visit('devel', 'lab')).status).toBe(200);
    // The app answers every path of its own with its JSON (koaAppSource): that must never come back here.
    expect((await devel.call('devel', 'lab', '/anything')).json()).toMatchObject({ app: 'lab' });
    // Sent as written (a URL parser would resolve the dot segments before they reach the portal).
    const host = new URL(setup.appOrigin('devel', 'lab')).host;
    for (const path of ['/.well-known/atrium/x', '/.well-known/atrium/%62ar.json', '/.well-known/atrium/bar.json/', '/.well-known/atrium/bar.json;x', '/.well-known/atrium/jwks.json?x=1', '/.well-known/atrium/../lab', '/.well-known/atrium/%2e%2e/lab', '/.well-known/atrium/%2E%2E/lab', '/.well-known/atrium/..%2flab', '/.well-known//atrium/bar.json', '/.well-known/atrium/./bar.json']) {
      const answer = await rawRequest(setup.port, path, { headers: { Host: host, Cookie: devel.cookieFor('devel', 'lab'), Accept: 'application/json' } });
      expect(answer.body, path).not.toContain('"app":"lab"');
      expect(answer.status, path).toBeGreaterThanOrEqual(200);
      expect(answer.status, path).toBeLessThan(500);
    }
    const js = await devel.call('devel', 'lab', '/.well-known/atrium/bar.js', { Accept: '*/*' });
    expect(js.status).toBe(200);
    expect(js.text).toContain("customElements.define('atrium-bar'");
  });
});

describe('bar.json on app origins, after the account changes', () => {
  it('is refused once the user’s sessions are revoked, or the account is disabled', { timeout: 120_000 }, async () => {
    const setup = setupOf('app origins');
    const { admin } = setup.portal.portal;
    const revoked = await freshUser(setup, 'ea');
    const disabled = await freshUser(setup, 'ea');
    const revokedEmail = `fresh${freshCount - 1}@example.com`;
    const disabledEmail = `fresh${freshCount}@example.com`;
    expect((await askBar(revoked, 'ea', 'notes')).status).toBe(200);
    expect((await askBar(disabled, 'ea', 'notes')).status).toBe(200);
    await admin.revokeSessions('test', revokedEmail);
    await admin.setDisabled('test', disabledEmail, true);
    expect(await statusOnceChanged(() => askBar(revoked, 'ea', 'notes'), 200)).toBe(401);
    expect(await statusOnceChanged(() => askBar(disabled, 'ea', 'notes'), 200)).toBe(401);
  });
});

// ------------------------------------------------------------------------------------------------
// /recent-apps
// ------------------------------------------------------------------------------------------------

const recentPost = (agent: HostAgentInMode, form: Record<string, string>, headers: Record<string, string> = { Origin: agent.setup.origin }) =>
  agent.request('POST', `${agent.setup.origin}/recent-apps`, { form, headers: { Accept: 'application/json', ...headers } });

for (const mode of MODES) {
  describe(`POST /recent-apps (${mode})`, () => {
    it('refuses another user’s token and writes only the signed-in user’s list, whatever the body names', { timeout: 120_000 }, async () => {
      const setup = setupOf(mode);
      const a = await setup.signedIn('ea@example.com');
      const b = await setup.signedIn('stable@example.com');
      const tokenA = await a.csrfToken(setup.origin);
      const tokenB = await b.csrfToken(setup.origin);
      const beforeA = await recentRows(setup, 'ea@example.com');
      const beforeB = await recentRows(setup, 'stable@example.com');
      expect((await recentPost(a, { _csrf: tokenB, app: 'stable/welcome' })).status).toBe(403);
      expect((await recentPost(b, { _csrf: tokenA, app: 'stable/welcome' })).status).toBe(403);
      expect((await sendAs(a, 'POST', `${setup.origin}/recent-apps`, { body: JSON.stringify({ app: 'stable/welcome' }), headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': tokenB, Origin: setup.origin } })).status).toBe(403);
      expect(await recentRows(setup, 'ea@example.com')).toEqual(beforeA);
      expect(await recentRows(setup, 'stable@example.com')).toEqual(beforeB);

      const bId = String(await userId(setup, 'stable@example.com'));
      const named = await recentPost(a, { _csrf: tokenA, app: 'stable/welcome', user_id: bId, userId: bId, uid: bId, sub: 'stable@example.com', user: 'stable@example.com' });
      expect(named.status).toBe(204);
      expect(await recentRows(setup, 'stable@example.com')).toEqual(beforeB);
      expect(await recentRows(setup, 'ea@example.com')).toContain('stable/welcome');
    });

    it('remembers nothing of an app the user may no longer open (demoted, or outside its groups)', { timeout: 120_000 }, async () => {
      const setup = setupOf(mode);
      const { admin } = setup.portal.portal;
      const devel = await setup.signedIn('devel@example.com');
      const token = await devel.csrfToken(setup.origin);
      expect((await recentPost(devel, { _csrf: token, app: 'devel/secret' })).status).toBe(404);
      expect(await recentRows(setup, 'devel@example.com')).not.toContain('devel/secret');
      expect((await recentPost(devel, { _csrf: token, app: 'devel/lab' })).status).toBe(204);
      await admin.removeMember('test', 'devel', 'devel@example.com');
      try {
        const demoted = await statusOnceChanged(() => recentPost(devel, { _csrf: token, app: 'devel/lab' }), 204);
        expect(demoted).toBe(404);
        const rows = await recentRows(setup, 'devel@example.com');
        // What was remembered before stays, nothing new is added, and the launcher shows only what the user may open.
        expect(rows).toEqual(['devel/lab']);
        const launcher = await devel.get(`${setup.origin}/`);
        expect(launcher.status).toBe(200);
        expect(/<section data-section="recent"[\s\S]*?<\/section>/.exec(launcher.text)?.[0] ?? '').not.toContain('devel/lab');
      } finally {
        await admin.addMember('test', 'devel', 'devel@example.com');
      }
    });
  });
}

describe('POST /recent-apps from an app origin (APP_ORIGIN)', () => {
  it('is refused: an app’s script cannot write the portal’s list, with or without the token, form or beacon', { timeout: 120_000 }, async () => {
    const setup = setupOf('app origins');
    const a = await setup.signedIn('ea@example.com');
    expect((await a.visit('ea', 'notes')).status).toBe(200);
    const token = await a.csrfToken(setup.origin);
    const appOrigin = setup.appOrigin('ea', 'notes');
    const before = await recentRows(setup, 'ea@example.com');
    expect(before).not.toContain('ea/framer');
    const url = `${setup.origin}/recent-apps`;
    const attempts = [
      // Even an app that somehow learned the token: the browser says where the request comes from.
      () => recentPost(a, { _csrf: token, app: 'ea/framer' }, { Origin: appOrigin }),
      () => recentPost(a, { app: 'ea/framer' }, { Origin: appOrigin }),
      // navigator.sendBeacon(url, 'string') sends text/plain; with a Blob any type it likes.
      () => sendAs(a, 'POST', url, { body: `_csrf=${token}&app=ea/framer`, headers: { 'Content-Type': 'text/plain;charset=UTF-8', Origin: appOrigin } }),
      () => sendAs(a, 'POST', url, { body: `_csrf=${token}&app=ea/framer`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: appOrigin } }),
      () => sendAs(a, 'POST', url, { body: JSON.stringify({ _csrf: token, app: 'ea/framer' }), headers: { 'Content-Type': 'application/json', Origin: appOrigin } }),
      () => sendAs(a, 'POST', url, { body: `app=ea/framer`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: appOrigin, 'X-CSRF-Token': token } }),
    ];
    for (const [i, attempt] of attempts.entries()) expect((await attempt()).status, `attempt ${i}`).toBe(403);
    // The same beacon sent to the app's own origin reaches the app, never the portal's list.
    await sendAs(a, 'POST', setup.appUrl('ea', 'notes', '/recent-apps'), { body: `_csrf=${token}&app=ea/framer`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: appOrigin } });
    expect(await recentRows(setup, 'ea@example.com')).toEqual(before);
  });

  it(`stays at ${RECENT_KEPT} rows per user after 2,000 posts over 14 apps, 8 at a time, never a 5xx`, { timeout: 300_000 }, async () => {
    const setup = setupOf('app origins');
    const a = await setup.signedIn('ea@example.com');
    const token = await a.csrfToken(setup.origin);
    const keys = ['stable/welcome', 'ea/notes', 'ea/hello-python', 'ea/framer', ...FILLER];
    const statuses = new Map<number, number>();
    let sent = 0;
    const worker = async () => {
      while (sent < 2000) {
        const key = keys[sent++ % keys.length]!;
        const { status } = await recentPost(a, { _csrf: token, app: key });
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // 204 each (a limit answering 429 would be as good); nothing else.
    expect([...statuses.keys()].filter((s) => s !== 204 && s !== 429)).toEqual([]);
    const rows = await recentRows(setup, 'ea@example.com');
    expect(rows.length).toBeLessThanOrEqual(RECENT_KEPT);
    expect(new Set(rows).size).toBe(rows.length);
    const launcher = await a.get(`${setup.origin}/`);
    expect(launcher.status).toBe(200);
    const recent = /<section data-section="recent"[\s\S]*?<\/section>/.exec(launcher.text)?.[0] ?? '';
    const links = [...recent.matchAll(/data-app="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(links).size).toBe(links.length);
  });

  it('answers odd bodies and names with a 4xx and writes nothing', { timeout: 120_000 }, async () => {
    const setup = setupOf('app origins');
    const a = await setup.signedIn('ea@example.com');
    const token = await a.csrfToken(setup.origin);
    const url = `${setup.origin}/recent-apps`;
    const before = await recentRows(setup, 'ea@example.com');
    const form = 'application/x-www-form-urlencoded';
    const json = 'application/json';
    const bodies: [what: string, body: string | Buffer, headers: Record<string, string>][] = [
      ['form over 2 kB', `_csrf=${token}&app=ea/framer&pad=${'x'.repeat(4000)}`, { 'Content-Type': form }],
      ['JSON over 2 kB', JSON.stringify({ _csrf: token, app: 'ea/framer', pad: 'x'.repeat(4000) }), { 'Content-Type': json }],
      ['malformed JSON', `{"_csrf":"${token}","app":`, { 'Content-Type': json }],
      ['JSON that is a string', JSON.stringify('ea/framer'), { 'Content-Type': json, 'X-CSRF-Token': token }],
      ['JSON with __proto__', `{"_csrf":"${token}","__proto__":{"app":"ea/framer"}}`, { 'Content-Type': json }],
      ['text/plain with the header token', 'ea/framer', { 'Content-Type': 'text/plain', 'X-CSRF-Token': token }],
      ['multipart', `--b\r\nContent-Disposition: form-data; name="app"\r\n\r\nea/framer\r\n--b--\r\n`, { 'Content-Type': 'multipart/form-data; boundary=b', 'X-CSRF-Token': token }],
      ['a gzip bomb (20 MB of form inflated)', gzipSync(Buffer.from(`_csrf=${token}&app=ea/framer&pad=${'a'.repeat(20_000_000)}`)), { 'Content-Type': form, 'Content-Encoding': 'gzip' }],
      ['an unknown encoding', `_csrf=${token}&app=ea/framer`, { 'Content-Type': form, 'Content-Encoding': 'x-bogus' }],
      ['app twice', `_csrf=${token}&app=ea/framer&app=ea/framer`, { 'Content-Type': form }],
      ['app as an object', `_csrf=${token}&app[tier]=ea&app[name]=framer`, { 'Content-Type': form }],
      ['the token twice', `_csrf=${token}&_csrf=${token}&app=ea/framer`, { 'Content-Type': form }],
    ];
    // (Broken gzip and deflate bodies: the next describe.)
    const answers: string[] = [];
    for (const [what, body, headers] of bodies) answers.push(`${(await sendAs(a, 'POST', url, { body, headers: { Origin: setup.origin, ...headers } })).status} ${what}`);
    expect(answers.filter((line) => !/^4\d\d /.test(line))).toEqual([]);
    const names = ['ea/../notes', '../ea/notes', 'ea/./framer', 'ea/framer/..', 'ea/framer/', 'ea%2Fframer', 'ea/framer%2F..', 'ea\\framer', 'ea/framer\\..', 'EA/framer', 'ea/FRAMER', 'ea/framer ', ' ea/framer', 'ea/framer\u0000', 'ea/fra\u200bmer', 'ea/framer?x=1', 'ea/framer#x', 'ea//framer', '/ea/framer', 'ea/', '/', 'devel/lab', 'devel/secret', 'admin/users', 'ea/__proto__', 'ea/constructor', 'constructor/prototype'];
    for (const name of names) {
      const answer = await recentPost(a, { _csrf: token, app: name });
      expect([400, 404], JSON.stringify(name)).toContain(answer.status);
    }
    expect(await recentRows(setup, 'ea@example.com')).toEqual(before);
  });
});

describe('compressed request bodies that do not decompress', () => {
  it('are a 4xx on every form the portal parses, never a 500', { timeout: 120_000 }, async () => {
    const setup = setupOf('app origins');
    const user = await setup.signedIn('ea@example.com');
    expect((await user.visit('ea', 'notes')).status).toBe(200);
    const token = await user.csrfToken(setup.origin);
    const good = gzipSync(Buffer.from(`_csrf=${token}&app=ea/framer`));
    const bodies: [what: string, body: Buffer, encoding: string][] = [
      ['not gzip at all', Buffer.from('not gzip at all'), 'gzip'],
      ['gzip cut short', good.subarray(0, good.length - 6), 'gzip'],
      ['not deflate at all', Buffer.from('not deflate at all'), 'deflate'],
    ];
    const targets = [`${setup.origin}/recent-apps`, `${setup.origin}/logout`, `${setup.origin}/access-requests`, `${setup.origin}/profile`, setup.appUrl('ea', 'notes', '/.well-known/atrium/session')];
    const answers: string[] = [];
    for (const target of targets) {
      for (const [what, body, encoding] of bodies) {
        const answer = await sendAs(user, 'POST', target, { body, headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Encoding': encoding, Origin: new URL(target).origin } });
        answers.push(`${answer.status} ${new URL(target).pathname} (${what})`);
      }
    }
    // Nobody signed in: the body is read before anyone is asked who they are.
    const stranger = setup.browser();
    for (const target of [`${setup.origin}/logout`, `${setup.origin}/recent-apps`, setup.appUrl('ea', 'notes', '/.well-known/atrium/session')]) {
      const answer = await sendAs(stranger, 'POST', target, { body: Buffer.from('not gzip at all'), headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Encoding': 'gzip' } });
      answers.push(`${answer.status} ${new URL(target).pathname} (not gzip at all, signed out)`);
    }
    expect(answers.filter((line) => !/^4\d\d /.test(line))).toEqual([]);
    expect(await me(user)).toBe(200);
  });
});

// ------------------------------------------------------------------------------------------------
// /sign-out and /logout
// ------------------------------------------------------------------------------------------------

for (const mode of MODES) {
  describe(`signing out (${mode})`, () => {
    it('happens only by the confirmation form’s POST with this session’s token from the portal’s origin', { timeout: 120_000 }, async () => {
      const setup = setupOf(mode);
      const user = await setup.signedIn('stable@example.com');
      const other = await setup.signedIn('ea@example.com');
      const token = await user.csrfToken(setup.origin);
      const othersToken = await other.csrfToken(setup.origin);
      expect(await me(user)).toBe(200);
      const logout = `${setup.origin}/logout`;

      for (const path of ['/logout', `/logout?_csrf=${token}`, '/sign-out', `/sign-out?_csrf=${token}`]) {
        await user.get(`${setup.origin}${path}`);
        await user.request('HEAD', `${setup.origin}${path}`);
        expect(await me(user), `GET ${path}`).toBe(200);
      }
      const appOrigin = mode === 'app origins' ? [setup.appOrigin('ea', 'notes')] : [];
      const attempts: [what: string, run: () => Promise<{ status: number }>][] = [
        ['no token, another site', () => user.request('POST', logout, { form: {}, headers: { Origin: 'https://evil.example' } })],
        ['no token, no Origin', () => user.request('POST', logout, { form: {} })],
        ['no token, our Origin', () => user.request('POST', logout, { form: {}, headers: { Origin: setup.origin } })],
        ['the token, another site', () => user.request('POST', logout, { form: { _csrf: token }, headers: { Origin: 'https://evil.example' } })],
        ['the token, a null Origin', () => user.request('POST', logout, { form: { _csrf: token }, headers: { Origin: 'null' } })],
        ['another user’s token', () => user.request('POST', logout, { form: { _csrf: othersToken }, headers: { Origin: setup.origin } })],
        ['the token in the query', () => user.request('POST', `${logout}?_csrf=${token}`, { form: {}, headers: { Origin: setup.origin } })],
        ['a text/plain beacon with the token', () => sendAs(user, 'POST', logout, { body: `_csrf=${token}`, headers: { 'Content-Type': 'text/plain', Origin: 'https://evil.example' } })],
        ['a form over the limit', () => sendAs(user, 'POST', logout, { body: `_csrf=${token}&pad=${'x'.repeat(8000)}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: setup.origin } })],
        ...appOrigin.map((origin): [string, () => Promise<{ status: number }>] => ['the token, from an app origin', () => user.request('POST', logout, { form: { _csrf: token }, headers: { Origin: origin } })]),
      ];
      for (const [what, run] of attempts) {
        const answer = await run();
        expect(answer.status, what).toBeGreaterThanOrEqual(400);
        expect(answer.status, what).toBeLessThan(500);
        expect(await me(user), what).toBe(200);
      }
      // The real thing works (so the refusals above are the guards, not a broken logout).
      const out = await user.request('POST', logout, { form: { _csrf: token }, headers: { Origin: setup.origin } });
      expect(out.status).toBe(303);
      expect(await me(user)).toBe(401);
      expect(await me(other)).toBe(200);
    });

    it('its confirmation page (and the 403 page’s form) cannot be framed by another origin and is not cached', { timeout: 60_000 }, async () => {
      const setup = setupOf(mode);
      const user = await setup.signedIn('stable@example.com');
      for (const path of ['/sign-out', '/admin/users']) {
        const page = await user.get(`${setup.origin}${path}`);
        expect([200, 403], path).toContain(page.status);
        const xfo = String(page.headers['x-frame-options'] ?? '').toUpperCase();
        const csp = String(page.headers['content-security-policy'] ?? '');
        expect(xfo === 'DENY' || xfo === 'SAMEORIGIN' || /frame-ancestors\s+('none'|'self')/.test(csp), `${path}: X-Frame-Options ${xfo}, CSP ${csp}`).toBe(true);
        expect(String(page.headers['cache-control']), path).toMatch(/no-store/);
      }
    });
  });
}

// ------------------------------------------------------------------------------------------------
// The 403 page
// ------------------------------------------------------------------------------------------------

const OPEN_REDIRECTS = [
  'https://evil.example/',
  'http://evil.example',
  '//evil.example',
  '///evil.example',
  '/\\evil.example',
  '\\\\evil.example',
  '/\\/evil.example',
  '/%2F/evil.example',
  '%2F%2Fevil.example',
  '/%2f%2fevil.example',
  '/%5Cevil.example',
  '/%5c%5cevil.example',
  '/%252F%252Fevil.example',
  '/.//evil.example',
  '/..//evil.example',
  '/./../\\evil.example',
  ' //evil.example',
  '\t//evil.example',
  '/\t/evil.example',
  '/\n/evil.example',
  '\r\n//evil.example',
  'javascript:alert(1)',
  'JavaScript:alert(1)',
  'data:text/html,<script>alert(1)</script>',
  'http:evil.example',
  'https:/\\evil.example',
  '/%09/evil.example',
  '/%0d%0aLocation:%20//evil.example',
  '/\u3002evil.example',
  '//evil.example@127.0.0.1/',
  '/@evil.example',
];

for (const mode of MODES) {
  describe(`the 403 page (${mode})`, () => {
    it('comes back only to a path of the portal: no open redirect through returnTo or the Referer', { timeout: 180_000 }, async () => {
      const setup = setupOf(mode);
      const user = await setup.signedIn('stable@example.com');
      const fields = requestForm((await user.get(`${setup.origin}/admin/users`)).text);
      expect(fields).toMatchObject({ level: 'admin', returnTo: '/admin/users' });
      const portalOrigin = setup.origin;
      const check = (answer: { status: number; location: string | undefined; headers: Record<string, string | string[] | undefined> }, what: string) => {
        expect(answer.status, what).toBe(303);
        expect(new URL(answer.location!).origin, what).toBe(portalOrigin);
        // Browsers read a backslash as a slash: the raw header is a plain path of ours.
        expect(String(answer.headers.location), what).toMatch(/^\/(?![/\\])/);
        expect(String(answer.headers.location), what).not.toMatch(/[\s\\]/);
      };
      for (const target of OPEN_REDIRECTS) {
        const answer = await user.request('POST', `${portalOrigin}/access-requests`, { form: { ...fields!, returnTo: target, reason: 'For the audit week' }, headers: { Origin: portalOrigin } });
        check(answer, `returnTo ${JSON.stringify(target)}`);
      }
      const raw = (extraBody: string, headers: Record<string, string> = {}) =>
        sendAs(user, 'POST', `${portalOrigin}/access-requests`, {
          body: `_csrf=${encodeURIComponent(fields!._csrf!)}&level=admin&reason=For+the+audit+week${extraBody}`,
          headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'text/html', Origin: portalOrigin, ...headers },
        });
      check(await raw('&returnTo=%2Fadmin&returnTo=%2F%2Fevil.example'), 'returnTo twice');
      check(await raw('&returnTo[a]=%2F%2Fevil.example'), 'returnTo as an object');
      for (const referer of ['https://evil.example/x', `${portalOrigin}//evil.example/`, `${portalOrigin}/\\evil.example`, `${portalOrigin}/%2F%2Fevil.example`, 'javascript:alert(1)']) {
        check(await raw('', { Referer: referer }), `Referer ${referer}`);
      }
    });

    it('escapes the refused address it sends the request back to', { timeout: 60_000 }, async () => {
      const setup = setupOf(mode);
      const user = await freshUser(setup, 'stable');
      // Raw, as a script or curl sends it (a browser would percent-encode " < > itself).
      const host = new URL(setup.origin).host;
      const raw = await rawRequest(setup.port, `/admin/users?x="><svg/onload=alert(1)>'`, { headers: { Host: host, Cookie: [...user.jar(host)].map(([k, v]) => `${k}=${v}`).join('; '), Accept: 'text/html' } });
      const encoded = await sendAs(user, 'GET', `${setup.origin}/admin/users?x="><svg/onload=alert(1)>'`, { headers: { Accept: 'text/html' } });
      for (const page of [{ status: raw.status, text: raw.body }, encoded]) {
        expect([400, 403]).toContain(page.status);
        expect(page.text).not.toContain('<svg/onload');
        if (page.status === 403) {
          // Percent-encoded or entity-escaped, the value stays inside its attribute.
          const returnTo = requestForm(page.text)!.returnTo!;
          expect(returnTo.startsWith('/admin/users?x=')).toBe(true);
          expect(returnTo).not.toMatch(/[<>"']/);
        }
      }
      expect(raw.status).toBe(403);
      expect(raw.body).toContain('name="returnTo" value="/admin/users?x=&quot;&gt;&lt;svg/onload=alert(1)&gt;&#39;"');
    });

    it('shows Pending only to the one who asked', { timeout: 120_000 }, async () => {
      const setup = setupOf(mode);
      const asker = await freshUser(setup, 'ea');
      const csrf = requestForm((await asker.get(`${setup.origin}/admin/users`)).text)!._csrf!;
      const asked = await sendAs(asker, 'POST', `${setup.origin}/access-requests`, { body: JSON.stringify({ level: 'admin', reason: 'On call this week' }), headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, Origin: setup.origin } });
      expect(asked.status).toBe(201);
      expect((await asker.get(`${setup.origin}/admin/users`)).text).toContain('data-testid="request-pending"');
      const askerEmail = `fresh${freshCount}@example.com`;
      for (const group of ['stable', 'ea', 'devel', undefined]) {
        const other = await freshUser(setup, group);
        const page = await other.get(`${setup.origin}/admin/users`);
        expect(page.status, String(group)).toBe(403);
        expect(page.text, String(group)).not.toContain('data-testid="request-pending"');
        expect(requestForm(page.text), String(group)).toMatchObject({ level: 'admin' });
        expect(page.text, String(group)).not.toContain('On call this week');
        expect(page.text, String(group)).not.toContain(askerEmail);
      }
    });

    it('answers odd app names with a 4xx, never a 5xx', { timeout: 120_000 }, async () => {
      const setup = setupOf(mode);
      const user = await setup.signedIn('stable@example.com');
      const odd = ['INSPECTOR', 'lab;x=1', 'lab%20', '%E2%80%AE', 'n'.repeat(300), 'lab%3F', '%ff', '..%2flab', 'lab%00', '-', 'lab.', '%2e', '__proto__', 'constructor', 'lab%252f..', '%C0%AE%C0%AE', 'l%61b'];
      for (const name of odd) {
        for (const accept of ['text/html', 'application/json']) {
          const answer = await sendAs(user, 'GET', `${setup.origin}/apps/devel/${name}/`, { headers: { Accept: accept } });
          expect(answer.status, `${name} (${accept})`).toBeLessThan(500);
          if (mode === 'shared origin') expect(answer.status, `${name} (${accept})`).toBeGreaterThanOrEqual(400);
        }
      }
      if (mode === 'app origins') {
        for (const host of ['devel-INSPECTOR', 'devel-lab-', 'devel--lab', 'devel-__proto__', 'devel-constructor', `devel-${'n'.repeat(300)}`, 'ghost-lab', 'devel-', '-lab']) {
          const answer = await sendAs(user, 'GET', `http://${host}.apps.localhost:${setup.port}/`, { headers: { Accept: 'text/html' } });
          expect(answer.status, host).toBeGreaterThanOrEqual(300);
          expect(answer.status, host).toBeLessThan(500);
        }
      }
    });
  });
}

describe('the 403 page while the database is slow (MariaDB)', () => {
  it('still answers 403 with its page, leaving Pending out, and the launcher still answers', { timeout: 180_000 }, async () => {
    const portal = await startTestPortal({ dialect: 'mysql', env: { APPS_DIR: makeAppsDir({ 'devel/lab/index.js': koaAppSource('lab'), 'stable/home/index.js': koaAppSource('home') }) } });
    extra.push(portal);
    const agent = new Agent(portal.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    const refused = await agent.get('/apps/devel/lab/');
    expect(refused.status).toBe(403);
    const csrf = requestForm(refused.text)!._csrf!;
    const asked = await agent.request('POST', '/access-requests', { json: { level: 'devel', reason: 'For the lab' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json', Origin: portal.origin } });
    expect(asked.status).toBe(201);
    expect((await agent.get('/apps/devel/lab/')).text).toContain('data-testid="request-pending"');

    // Another connection holds the table: every lookup of a pending request waits for it.
    const holder = await mysql.createConnection({ uri: portal.database.url });
    await holder.query('LOCK TABLES access_requests WRITE');
    try {
      const slow = await agent.get('/apps/devel/lab/x');
      expect(slow.status).toBe(403);
      expect(slow.text).toContain('You do not have access');
      expect(slow.text).toContain('Back to your apps');
      const launcher = await agent.get('/');
      expect(launcher.status).toBe(200);
      const odd = await agent.get(`/apps/devel/${'%E2%80%AE'}lab/`);
      expect(odd.status).toBeGreaterThanOrEqual(400);
      expect(odd.status).toBeLessThan(500);
    } finally {
      await holder.query('UNLOCK TABLES');
      await holder.end();
    }
    expect((await agent.get('/apps/devel/lab/')).text).toContain('data-testid="request-pending"');
  });
});

// ------------------------------------------------------------------------------------------------
// page() / html: the example apps and the portal's pages with a hostile name and email
// ------------------------------------------------------------------------------------------------

async function signInHostile(setup: ModePortal): Promise<HostAgentInMode> {
  const agent = setup.browser();
  const last = await agent.signIn(`${setup.origin}/login`, HOSTILE.email, HOSTILE.password);
  expect(last.status).toBe(200);
  return agent;
}

for (const mode of MODES) {
  describe(`a user whose name and email are markup (${mode})`, () => {
    it('stays text in every example app and every portal page they see', { timeout: 180_000 }, async () => {
      const setup = setupOf(mode);
      const h = await signInHostile(setup);
      const pages: [what: string, text: string][] = [];
      for (const [tier, name] of [['stable', 'welcome'], ['ea', 'notes'], ['ea', 'hello-python']] as const) {
        const page = await h.visit(tier, name, '/');
        expect(page.status, `${tier}/${name}`).toBe(200);
        pages.push([`${tier}/${name}`, page.text]);
      }
      expect(pages[0]![1]).toContain(`<h1>Welcome, ${escapeHtml(HOSTILE.name)}</h1>`);
      expect(pages[1]![1]).toContain(`for ${escapeHtml(HOSTILE.email)}.`);
      expect(pages[2]![1]).toContain('<h1>Hello, &lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;</h1>');
      // Remembered, the hostile app title shows in "Recently opened" too.
      expect((await recentPost(h, { _csrf: await h.csrfToken(setup.origin), app: 'stable/shady' })).status).toBe(204);
      for (const path of ['/', '/?q=shady', '/sign-out', '/profile', '/admin/users', '/apps/devel/lab/']) {
        const page = await h.get(`${setup.origin}${path}`);
        pages.push([path, page.text]);
      }
      // The welcome app also prints the path it was asked for.
      const reflected = await sendAs(h, 'GET', setup.appUrl('stable', 'welcome', `/"><svg/onload=alert(1)>`), { headers: { Accept: 'text/html' } });
      pages.push(['welcome with markup in the path', reflected.text]);
      const welcomeUrl = new URL(setup.appUrl('stable', 'welcome', `/x`));
      const rawPath = await rawRequest(setup.port, `${welcomeUrl.pathname.slice(0, -1)}"><svg/onload=alert(1)>`, { headers: { Host: welcomeUrl.host, Cookie: h.cookieFor('stable', 'welcome'), Accept: 'text/html' } });
      expect(rawPath.status).toBeLessThan(500);
      pages.push(['welcome with raw markup in the path', rawPath.body]);
      expect(pages.find(([what]) => what === '/')![1]).toContain('Shady&lt;script&gt;alert(1)&lt;/script&gt;');
      for (const [what, text] of pages) for (const markup of RAW_MARKUP) expect(text, `${what}: ${markup}`).not.toContain(markup);

      const bar = await askBar(h, 'ea', 'notes');
      expect(bar.status).toBe(200);
      expect(bar.json()).toMatchObject({ name: HOSTILE.name, email: HOSTILE.email });
      expect(bar.headers['content-type']).toMatch(/^application\/json/);
      expect(bar.headers['x-content-type-options']).toBe('nosniff');
    });
  });
}

describe('in Chromium, on app origins', () => {
  it('runs no script from a name, shows it as text in the bar, and lets no app frame the sign-out page', { timeout: 300_000 }, async () => {
    const setup = setupOf('app origins');
    browser ??= await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1024, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
    const dialogs: string[] = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    const consoleLines: string[] = [];
    page.on('console', (message) => consoleLines.push(message.text()));
    try {
      const welcome = setup.appUrl('stable', 'welcome', '/');
      await page.goto(welcome);
      await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
      await page.getByLabel('Email').fill(HOSTILE.email);
      await page.getByLabel('Password').fill(HOSTILE.password);
      // Chromium's own type=email check would stop this address before the portal sees it.
      await page.locator('form:has(input[name="password"])').evaluate((form: any) => (form.noValidate = true));
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(welcome);

      for (const [tier, name] of [['stable', 'welcome'], ['ea', 'notes'], ['ea', 'hello-python']] as const) {
        await page.goto(setup.appUrl(tier, name, '/'));
        const bar = page.locator('atrium-bar[data-ready]');
        await bar.waitFor({ state: 'attached' });
        expect(await text(bar.locator('[data-part="name"]')), `${tier}/${name}`).toBe(HOSTILE.name);
        expect(await bar.locator('[data-part="name"]').getAttribute('title'), `${tier}/${name}`).toBe(HOSTILE.email);
        expect(await page.locator('main script, main img, main svg, atrium-bar img, atrium-bar script').count(), `${tier}/${name}`).toBe(0);
        expect(await page.locator('main').innerText(), `${tier}/${name}`).toContain(tier === 'ea' && name === 'notes' ? HOSTILE.email : HOSTILE.name);
      }
      await page.goto(`${setup.origin}/sign-out`);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Sign out of Atrium?');
      expect(await page.locator('[data-testid="sign-out-confirm"] strong').first().innerText()).toBe(HOSTILE.name);

      // An app page framing the portal's sign-out confirmation (to trick a click on its button).
      const framerUrl = setup.appUrl('ea', 'framer', `/?src=${encodeURIComponent(`${setup.origin}/sign-out`)}`);
      const framerAnswer = await (await signInHostile(setup)).visit('ea', 'framer', `/?src=${encodeURIComponent(`${setup.origin}/sign-out`)}`);
      expect(framerAnswer.status).toBe(200);
      // Nothing on the framing page itself forbids frames: only the framed page's headers can refuse.
      expect(framerAnswer.headers['content-security-policy']).toBeUndefined();
      await page.goto(framerUrl);
      await page.locator('#victim').waitFor({ state: 'attached' });
      const deadline = Date.now() + 30_000;
      while (!consoleLines.some((line) => /Refused to display .* in a frame/i.test(line)) && Date.now() < deadline) await sleep(200);
      // Here SameSite=Lax already keeps the portal's cookie out of the frame (127.0.0.1 and *.apps.localhost are
      // two sites), so /sign-out sends it on to the signed-out page and then / : refused by X-Frame-Options too.
      // (Same-site app origins, *.apps.example.com beside the portal, would get the page: the header is what stops it.)
      expect(consoleLines.filter((line) => /Refused to display/i.test(line)).join('\n')).toMatch(/Refused to display 'http:\/\/127\.0\.0\.1:\d+\/[^']*' in a frame because it set 'X-Frame-Options'/);
      const framed = page.frames().find((frame) => frame !== page.mainFrame());
      expect(framed).toBeDefined();
      expect(await framed!.locator('[data-testid="sign-out-confirm"]').count()).toBe(0);
      expect((await page.request.get(`${setup.origin}/me`, { headers: { Accept: 'application/json' } })).status()).toBe(200);
      expect(dialogs).toEqual([]);
    } finally {
      await context.close();
    }
  });
});

describe('in Chromium, app origins on the portal’s own site (*.apps.example.com beside portal.example.com)', () => {
  it('an app page sends the portal’s Lax cookie yet can neither frame the sign-out page, read the portal’s answers, sign out nor write the list', { timeout: 300_000 }, async () => {
    // One registrable domain (example.com) for the portal and its app origins, so that they are one *site*
    // and the portal's SameSite=Lax cookie goes along with an app page's requests (*.localhost names are
    // each a site of their own to Chromium). Both this process (the portal asks its own provider at
    // PUBLIC_URL) and Chromium resolve *.example.com to the loopback address.
    const lookup = dns.lookup;
    (dns as { lookup: unknown }).lookup = (host: string, ...rest: unknown[]) => (lookup as (...args: unknown[]) => void)(/\.example\.com$/i.test(host) ? '127.0.0.1' : host, ...rest);
    restoreLookup = () => ((dns as { lookup: unknown }).lookup = lookup);
    const port = await freePort();
    const origin = `http://portal.example.com:${port}`;
    const apps = (tier: string, name: string, rest = '/') => `http://${tier}-${name}.apps.example.com:${port}${rest}`;
    const portal = await startTestPortal({ port, env: { PUBLIC_URL: origin, APP_ORIGIN: `http://{tier}-{name}.apps.example.com:${port}`, APPS_DIR: appsDir() } });
    extra.push(portal);
    expect(existsSync(CHROMIUM)).toBe(true);
    const args = CHROMIUM_ARGS.map((arg) => (arg.startsWith('--host-resolver-rules=') ? `${arg}, MAP *.example.com 127.0.0.1` : arg));
    const sameSite = await chromium.launch({ executablePath: CHROMIUM, headless: true, args, timeout: NAVIGATION_TIMEOUT_MS });
    closeSameSite = () => sameSite.close();
    const context = await sameSite.newContext({ viewport: { width: 1024, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
    const consoleLines: string[] = [];
    page.on('console', (message) => consoleLines.push(message.text()));
    // The frame's request for the confirmation page: what the portal answered it, and with which cookies.
    const framedAnswers: { status: number; cookie: string }[] = [];
    page.on('response', async (response) => {
      if (response.url() === `${origin}/sign-out` && response.frame() !== page.mainFrame()) framedAnswers.push({ status: response.status(), cookie: (await response.request().allHeaders()).cookie ?? '' });
    });    try {
      const framer = apps('ea', 'framer', `/?src=${encodeURIComponent(`${origin}/sign-out`)}`);
      await page.goto(framer);
      await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
      await page.getByLabel('Email').fill('ea@example.com');
      await page.getByLabel('Password').fill(DEMO_PASSWORD);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.waitForURL(framer);
      await page.locator('#victim').waitFor({ state: 'attached' });
      const deadline = Date.now() + 30_000;
      while (!consoleLines.some((line) => /Refused to display/.test(line)) && Date.now() < deadline) await sleep(200);
      // Same site: the frame's request carried the session, so the portal answered with the confirmation
      // page itself (not a redirect to /signed-out), and only its X-Frame-Options kept it out of the frame.
      // (Chromium names only the origin of the refused page.)
      expect(framedAnswers).toHaveLength(1);
      expect(framedAnswers[0]!.status).toBe(200);
      expect(framedAnswers[0]!.cookie).toContain('atrium.sid=');
      expect(consoleLines.filter((line) => /Refused to display/.test(line)).join('\n')).toContain(`Refused to display '${origin}/' in a frame because it set 'X-Frame-Options' to 'sameorigin'.`);
      const framed = page.frames().find((frame) => frame !== page.mainFrame());
      expect(await framed!.locator('[data-testid="sign-out-confirm"]').count()).toBe(0);

      // What the app's script tries, from its own origin, with the portal's cookie going along.
      const tried = await page.evaluate(`(async (portal) => {
        const read = async (path) => { try { const r = await fetch(portal + path, { credentials: 'include' }); return 'read ' + r.status + ' ' + (await r.text()).slice(0, 80); } catch (e) { return 'blocked'; } };
        const out = { me: await read('/me'), bar: await read('/.well-known/atrium/bar.json'), launcher: await read('/') };
        await fetch(portal + '/logout', { method: 'POST', mode: 'no-cors', credentials: 'include', body: new URLSearchParams({}) }).catch(() => {});
        await fetch(portal + '/recent-apps', { method: 'POST', mode: 'no-cors', credentials: 'include', body: new URLSearchParams({ app: 'ea/framer' }) }).catch(() => {});
        out.beacon1 = navigator.sendBeacon(portal + '/recent-apps', new URLSearchParams({ app: 'ea/framer' }));
        out.beacon2 = navigator.sendBeacon(portal + '/recent-apps', 'app=ea/framer');
        return out;
      })(${JSON.stringify(origin)})`);
      expect(tried).toMatchObject({ me: 'blocked', bar: 'blocked', launcher: 'blocked' });
      // A top-level form post from the app page (it may navigate the tab): refused, nobody signed out.
      const refused = page.waitForResponse((response) => response.url() === `${origin}/logout`);
      await page.evaluate(`(() => { const f = document.createElement('form'); f.method = 'post'; f.action = ${JSON.stringify(`${origin}/logout`)}; document.body.append(f); f.submit(); })()`);
      expect((await refused).status()).toBe(403);
      await page.waitForURL(`${origin}/logout`);
      const still = await page.goto(`${origin}/me`);
      expect(still!.status()).toBe(200);
      expect(await still!.json()).toMatchObject({ email: 'ea@example.com' });
      const userRow = (await portal.portal.users.byEmail('ea@example.com'))[0]!;
      const rows = await portal.portal.database.db.selectFrom('recent_apps').select('app').where('user_id', '=', userRow.id).execute();
      expect(rows.map((r) => r.app)).not.toContain('ea/framer');
    } finally {
      await context.close();
    }
  });
});
