import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { launchChromium, NAVIGATION_TIMEOUT_MS, SCREENSHOTS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { MODES, type Mode, type ModePortal, startModePortal } from './helpers/modes.ts';

/**
 * A hostile app in a real browser (Debian's Chromium via playwright-core), with apps on the portal's
 * origin and on their own: its page's script tries to register a service worker for the whole site,
 * plants a session cookie of its author's with a narrower Path, and fetches a response that sets
 * the session cookie; a page of the author's on another port of the portal's host (same site:
 * cookies ignore ports) plants one by HTTP. The admin who opened them stays themselves throughout.
 * CI installs Chromium (see .ci/run); when it is missing this test fails, it never skips.
 */

/**
 * The app: a page whose script attacks (its results in `window.__attack`), a worker script whose
 * answer asks for scope `/`, and an endpoint whose answer sets the session cookie it is given.
 */
const EVIL_APP = `import Koa from ${JSON.stringify(KOA)};
const PAGE = \`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Evil</title></head><body><h1>Totally harmless</h1>
<script type="module">
const q = new URLSearchParams(location.search);
const out = {};
// Mounted under the portal's origin, or at the root of its own.
const base = location.pathname.startsWith('/apps/ea/evil/') ? '/apps/ea/evil/' : '/';
// (a) A worker for the whole site would answer /admin and draw a fake /idp sign-in form.
try { await navigator.serviceWorker.register(base + 'sw.js', { scope: '/' }); out.siteWide = 'registered'; }
catch (e) { out.siteWide = e.name; }
// The same worker within the app's own path is fine: proof that workers work here at all.
try { const own = await navigator.serviceWorker.register(base + 'sw.js', { scope: base + 'own/' }); out.own = 'registered'; await own.unregister(); }
catch (e) { out.own = e.name; }
// (b) The author's own session, planted with a narrower Path: sent before the visitor's on /profile.
document.cookie = 'atrium.sid=' + q.get('sid') + '; path=/profile';
document.cookie = 'atrium.sid.sig=' + q.get('sig') + '; path=/profile';
// (c) A response that sets the session cookie for the whole site.
out.plant = (await fetch(base + 'plant?' + q.toString())).status;
window.__attack = out;
</script></body></html>\`;
const app = new Koa();
app.use((ctx) => {
  if (ctx.path === '/sw.js') {
    ctx.set('Service-Worker-Allowed', '/');
    ctx.type = 'text/javascript';
    ctx.body = "self.addEventListener('fetch', (e) => e.respondWith(new Response('<h1>Sign in to Atrium</h1><form>fake</form>', { headers: { 'Content-Type': 'text/html' } })));";
    return;
  }
  if (ctx.path === '/plant') {
    ctx.append('Set-Cookie', ['atrium.sid=' + ctx.query.sid + '; Path=/; HttpOnly', 'atrium.sid.sig=' + ctx.query.sig + '; Path=/; HttpOnly']);
    ctx.body = { planted: true };
    return;
  }
  ctx.type = 'html';
  ctx.body = PAGE;
});
export default app;
`;

let browser: Browser | undefined;
let evilApps: string;
/** The author's server on another port of 127.0.0.1: its answer sets the cookie it is given, Path=/profile. */
let sibling: Server;
let siblingOrigin: string;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  for (const file of readdirSync(SCREENSHOTS)) if (file.startsWith('browser-app-isolation-')) rmSync(`${SCREENSHOTS}${file}`, { force: true });
  evilApps = makeAppsDir({ 'ea/evil/index.js': EVIL_APP });
  sibling = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    // Only /plant: the browser's own requests (a favicon) must not set anything.
    if (url.pathname !== '/plant') {
      res.statusCode = 404;
      res.end();
      return;
    }
    const q = url.searchParams;
    res.setHeader('Set-Cookie', [`atrium.sid=${q.get('sid')}; Path=/profile; HttpOnly`, `atrium.sid.sig=${q.get('sig')}; Path=/profile; HttpOnly`]);
    res.setHeader('Content-Type', 'text/html');
    res.end('<!doctype html><title>Cat pictures</title><h1>Cat pictures</h1>');
  });
  await new Promise<void>((resolve) => sibling.listen(0, '127.0.0.1', resolve));
  siblingOrigin = `http://127.0.0.1:${(sibling.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await browser?.close();
  sibling?.closeAllConnections();
  await new Promise<void>((resolve) => (sibling ? sibling.close(() => resolve()) : resolve()));
});

async function shot(page: Page, mode: Mode, name: string): Promise<void> {
  await page.screenshot({ path: `${SCREENSHOTS}browser-app-isolation-${mode.replace(' ', '-')}-${name}.png`, fullPage: true });
}

async function signIn(page: Page, portalOrigin: string, email: string): Promise<void> {
  await page.goto('/');
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(DEMO_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${portalOrigin}/`);
  expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Your apps');
}

async function sessionCookies(context: BrowserContext) {
  // Every path: cookies(url) would list only those sent to that URL.
  return (await context.cookies()).filter((c) => c.name === 'atrium.sid' && c.domain === '127.0.0.1');
}

async function pathsAndValues(context: BrowserContext): Promise<string[][]> {
  return (await sessionCookies(context)).map((c) => [c.path, c.value]).sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/**
 * With a planted copy under /profile the browser sends both there, the planted one first: signed
 * out (the 401 page), never the author's account. That answer expires the copy, so the next visit
 * is the admin's own profile again (no endless trip through /login).
 */
async function expectProfileNeverTheAuthors(page: Page, context: BrowserContext, portalOrigin: string, shoot: () => Promise<void>): Promise<void> {
  const profile = await page.goto(`${portalOrigin}/profile`);
  expect(profile?.status()).toBe(401);
  await shoot();
  const body = await page.locator('body').innerText();
  expect(body).not.toContain('devel@example.com');
  expect(body).not.toContain('Dev Eloper');
  expect(await page.getByTestId('user-email').count()).toBe(0);
  expect((await sessionCookies(context)).map((c) => c.path)).toEqual(['/']);
  const again = await page.goto(`${portalOrigin}/profile`);
  expect(again?.status()).toBe(200);
  expect(await text(page.getByTestId('user-email'))).toBe('Ada Admin');
  expect(await page.locator('main').innerText()).toContain('admin@example.com');
}

/** /me as the page's own script would ask for it. */
async function me(page: Page): Promise<{ status: number; email?: string }> {
  return (await page.evaluate(`fetch('/me', { headers: { Accept: 'application/json' } }).then(async (r) => ({ status: r.status, email: r.ok ? (await r.json()).email : undefined }))`)) as {
    status: number;
    email?: string;
  };
}

describe.each(MODES)('a hostile app, with %s', (mode) => {
  let setup: ModePortal;
  beforeAll(async () => {
    setup = await startModePortal(mode, { env: { APPS_DIR: evilApps } });
  });
  afterAll(async () => {
    await setup?.stopAll();
  });

  it('cannot take the site with a service worker, nor swap the admin’s session by planting or setting cookies', { timeout: 240_000 }, async () => {
    const PORTAL = setup.origin;
    const evilHost = new URL(setup.appOrigin('ea', 'evil')).hostname;
    // The app's author has an account of their own: the session they try to put the admin in.
    const author = new Agent(PORTAL);
    await author.login('devel@example.com', DEMO_PASSWORD);
    const planted = { sid: author.cookie('atrium.sid')!.value, sig: author.cookie('atrium.sid.sig')!.value };

    browser ??= await launchChromium();
    const context = await browser.newContext({ baseURL: PORTAL, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
    const shoot = (name: string) => () => shot(page, mode, name);
    try {
      await signIn(page, PORTAL, 'admin@example.com');
      const [own] = await sessionCookies(context);
      expect(own?.path).toBe('/');

      await page.goto(setup.appUrl('ea', 'evil', `/?sid=${encodeURIComponent(planted.sid)}&sig=${encodeURIComponent(planted.sig)}`));
      await page.waitForFunction('window.__attack !== undefined', undefined, { timeout: NAVIGATION_TIMEOUT_MS });
      expect(new URL(page.url()).hostname).toBe(evilHost);
      const attack = (await page.evaluate('window.__attack')) as { siteWide: string; own: string; plant: number };
      await shoot('01-evil-page')();

      // (a) A worker of the app's (one for its own path registers: workers work here) never
      // controls a portal page. Sharing the portal's origin, the whole-site scope is refused; on its
      // own origin, "the whole site" is only the app's.
      expect(attack.own).toBe('registered');
      if (mode === 'shared origin') {
        expect(attack.siteWide).toBe('SecurityError');
        expect(await page.evaluate(`navigator.serviceWorker.getRegistrations().then((all) => all.map((r) => r.scope))`)).toEqual([]);
      } else {
        expect(attack.siteWide).toBe('registered');
        expect(await page.evaluate(`navigator.serviceWorker.getRegistrations().then((all) => all.map((r) => r.scope))`)).toEqual([`${setup.appOrigin('ea', 'evil')}/`]);
        await page.goto(`${PORTAL}/`);
        expect(await page.evaluate(`navigator.serviceWorker.getRegistrations().then((all) => all.length)`)).toBe(0);
        expect(await page.evaluate(`navigator.serviceWorker.controller === null`)).toBe(true);
      }

      // (c) The response that set the session cookie: refused in both modes, so no atrium.* cookie
      // of the author's exists anywhere; the admin's portal cookie is untouched, /me says admin.
      expect(attack.plant).toBe(200);
      const fromResponse = (await context.cookies()).filter((c) => c.httpOnly && c.name.startsWith('atrium.sid') && c.value === planted.sid);
      expect(fromResponse).toEqual([]);
      await page.goto(`${PORTAL}/`);
      expect(await me(page)).toEqual({ status: 200, email: 'admin@example.com' });

      // (b) The script's document.cookie planted the author's session under /profile: sharing the
      // portal's origin it lands beside the admin's; on its own origin it stays on the app's host.
      if (mode === 'shared origin') {
        expect(await pathsAndValues(context)).toEqual([['/', own!.value], ['/profile', planted.sid]]);
        await expectProfileNeverTheAuthors(page, context, PORTAL, shoot('02-profile-planted-by-script'));
      } else {
        expect(await pathsAndValues(context)).toEqual([['/', own!.value]]);
        expect((await context.cookies()).some((c) => c.name === 'atrium.sid' && c.domain === evilHost)).toBe(true);
        const profile = await page.goto(`${PORTAL}/profile`);
        expect(profile?.status()).toBe(200);
        expect(await text(page.getByTestId('user-email'))).toBe('Ada Admin');
      }
      // ...and the author's page on another port of the portal's host plants one by HTTP (cookies ignore ports).
      await page.goto(`${siblingOrigin}/plant?sid=${encodeURIComponent(planted.sid)}&sig=${encodeURIComponent(planted.sig)}`);
      expect(await pathsAndValues(context)).toEqual([['/', own!.value], ['/profile', planted.sid]]);
      await expectProfileNeverTheAuthors(page, context, PORTAL, shoot('03-profile-planted-by-sibling'));
      // And the launcher is the portal's, not a worker's fake page.
      await page.goto(`${PORTAL}/`);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Your apps');
      expect(await me(page)).toEqual({ status: 200, email: 'admin@example.com' });
      await shoot('04-still-admin')();
    } catch (err) {
      await shoot('failure')().catch(() => {});
      throw err;
    } finally {
      await context.close();
    }
  });
});
