import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { escapeHtml, html, page } from '../lib/app-kit.ts';
import { DEMO_ACCOUNTS, DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { auditPage, sidewaysOverflow } from './helpers/a11y.ts';
import { launchChromium, NAVIGATION_TIMEOUT_MS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { MODES, startModePortal, type ModePortal } from './helpers/modes.ts';

/**
 * The portal bar (`<atrium-bar>`, issue 13 item 5) in Chromium at phone width, in both hosting
 * modes, on the example apps (an in-process Koa app through lib/app-kit.ts's page(), and the Python
 * upstream app): it names the signed-in user and level, leads back to the launcher, signs out through
 * the portal's confirmation form, survives hostile app CSS, and the page fits 390 px with no axe
 * violation.
 */
/** Runs in the page (tsconfig has no "dom" lib). */
declare function getComputedStyle(element: unknown): { fontSize: string };

let browser: Browser | undefined;
const portals: ModePortal[] = [];

afterAll(async () => {
  await browser?.close();
  for (const p of portals) await p.stopAll();
});

const BAR_INFO = '/.well-known/atrium/bar.json';
const nameOf = (email: string) => DEMO_ACCOUNTS.find((a) => a.email === email)!.name;

async function phone(): Promise<{ context: BrowserContext; page: Page }> {
  browser ??= await launchChromium();
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  return { context, page };
}

/** Opens an app page as a person would: the app sends them to sign in, and they come back to it. */
async function openSignedIn(setup: ModePortal, page: Page, email: string, tier: string, name: string): Promise<void> {
  const target = setup.appUrl(tier, name, '/');
  await page.goto(target);
  await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(DEMO_PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(target);
}

/** The bar once it has drawn the user (its data came from the page's own origin). */
async function readyBar(page: Page) {
  const bar = page.locator('atrium-bar[data-ready]');
  await bar.waitFor({ state: 'attached' });
  return bar;
}

for (const mode of MODES) {
  describe(`the portal bar (${mode})`, () => {
    it('shows who you are, leads back to the launcher and signs out through a form, at 390 px', { timeout: 300_000 }, async () => {
      const setup = await startModePortal(mode);
      portals.push(setup);
      const { context, page } = await phone();
      const problems: string[] = [];

      await openSignedIn(setup, page, 'ea@example.com', 'stable', 'welcome');
      const bar = await readyBar(page);
      expect(await text(bar.locator('[data-part="name"]'))).toBe(nameOf('ea@example.com'));
      expect(await text(bar.locator('[data-part="level"]'))).toBe('Early access');
      const home = bar.getByRole('link', { name: 'All apps' });
      const out = bar.getByRole('link', { name: 'Sign out' });
      expect(await home.getAttribute('href')).toBe(mode === 'app origins' ? `${setup.origin}/` : '/');
      expect(await out.getAttribute('href')).toBe(mode === 'app origins' ? `${setup.origin}/sign-out` : '/sign-out');
      // Visible and inside the phone's width, as is the whole page.
      for (const part of [home, out, bar.locator('[data-part="name"]')]) {
        const box = await part.boundingBox();
        expect(box).not.toBeNull();
        expect(box!.x).toBeGreaterThanOrEqual(0);
        expect(box!.x + box!.width).toBeLessThanOrEqual(390);
      }
      expect(await sidewaysOverflow(page)).toBe(0);
      expect(await page.locator('meta[name="viewport"]').getAttribute('content')).toBe('width=device-width, initial-scale=1');
      problems.push(...(await auditPage(page, `${mode} welcome`)));

      // The bar's data is the user's, never a token: nothing an app page could act with.
      const info = await page.evaluate(async () => {
        const r = await fetch('/.well-known/atrium/bar.json', { headers: { Accept: 'application/json' } });
        return { status: r.status, cache: r.headers.get('cache-control'), body: await r.text() };
      });
      expect(info.status).toBe(200);
      expect(info.cache).toBe('no-store');
      expect(Object.keys(JSON.parse(info.body)).sort()).toEqual(['email', 'launcher', 'level', 'levelLabel', 'name', 'signOut']);

      // The app's CSS cannot reach into the bar (shadow DOM): the links stay visible and readable.
      await page.addStyleTag({ content: 'nav, a, span { display: none !important; } * { font-size: 0 !important; color: transparent !important; }' });
      expect(await home.isVisible()).toBe(true);
      expect(await out.isVisible()).toBe(true);
      expect(await out.evaluate((el) => getComputedStyle(el).fontSize)).not.toBe('0px');

      // Back to the launcher (on the portal's origin).
      await home.click();
      await page.waitForURL(`${setup.origin}/`);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Your apps');

      // The Python app (proxied, another process) shows the same bar.
      await page.goto(setup.appUrl('ea', 'hello-python', '/'));
      const pyBar = await readyBar(page);
      expect(await text(pyBar.locator('[data-part="name"]'))).toBe(nameOf('ea@example.com'));
      expect(await sidewaysOverflow(page)).toBe(0);
      expect(await page.locator('meta[name="viewport"]').getAttribute('content')).toBe('width=device-width, initial-scale=1');
      problems.push(...(await auditPage(page, `${mode} hello-python`)));

      // Sign out: the bar's link is a confirmation page; only its form (POST, CSRF token) signs out.
      await pyBar.getByRole('link', { name: 'Sign out' }).click();
      await page.waitForURL(`${setup.origin}/sign-out`);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Sign out of Atrium?');
      expect(await page.request.get(`${setup.origin}/me`, { headers: { Accept: 'application/json' } }).then((r) => r.status())).toBe(200);
      problems.push(...(await auditPage(page, `${mode} sign-out confirmation`)));
      const barUrl = mode === 'app origins' ? setup.appUrl('stable', 'welcome', BAR_INFO) : `${setup.origin}${BAR_INFO}`;
      const cookies = (await context.cookies(barUrl)).map((c) => `${c.name}=${c.value}`).join('; ');
      expect(cookies).toContain(setup.appSessionCookie);
      expect((await setup.browser().request('GET', barUrl, { headers: { Accept: 'application/json', Cookie: cookies }, cookies: false })).status).toBe(200);
      await page.locator('main').getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(`${setup.origin}/signed-out`);
      expect(await page.request.get(`${setup.origin}/me`, { headers: { Accept: 'application/json' } }).then((r) => r.status())).toBe(401);
      // The app's page now asks for a sign-in, and its bar's data is refused.
      // (Asked with the cookies the app's page held before signing out: the session behind them is over.)
      const barInfo = await setup.browser().request('GET', barUrl, { headers: { Accept: 'application/json', Cookie: cookies }, cookies: false });
      expect(barInfo.status).toBe(401);
      await page.goto(setup.appUrl('stable', 'welcome', '/'));
      await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));

      await context.close();
      expect(problems).toEqual([]);
    });
  });
}

describe('the sign-out confirmation page', () => {
  it('signs nobody out by being visited, and sends a signed-out visitor to the signed-out page', { timeout: 120_000 }, async () => {
    const setup = portals[0] ?? (await startModePortal('shared origin'));
    if (!portals.includes(setup)) portals.push(setup);
    const agent = await setup.signedIn('stable@example.com');
    const confirm = await agent.get(`${setup.origin}/sign-out`);
    expect(confirm.status).toBe(200);
    expect(confirm.text).toMatch(/<form method="post" action="\/logout"[\s\S]*name="_csrf" value="[^"]+"/);
    expect((await agent.get(`${setup.origin}/me`, { Accept: 'application/json' })).status).toBe(200);
    const stranger = setup.browser();
    const away = await stranger.get(`${setup.origin}/sign-out`);
    expect(away.status).toBe(302);
    expect(away.headers.location).toBe('/signed-out');
  });
});

describe('the bar on an app origin', () => {
  it('tells only a user the gate lets into the app who they are, and nobody else', { timeout: 120_000 }, async () => {
    const setup = await startModePortal('app origins');
    portals.push(setup);
    const ea = await setup.signedIn('ea@example.com');
    expect((await ea.visit('ea', 'notes')).status).toBe(200);
    const ask = () => ea.call('ea', 'notes', BAR_INFO);
    const mine = await ask();
    expect(mine.status).toBe(200);
    expect(JSON.parse(mine.text)).toEqual({
      name: nameOf('ea@example.com'),
      email: 'ea@example.com',
      level: 'ea',
      levelLabel: 'Early access',
      launcher: `${setup.origin}/`,
      signOut: `${setup.origin}/sign-out`,
    });
    // Without this origin's session: a 401, and no redirect to sign in (it is a script's question).
    expect((await setup.browser().get(setup.appUrl('ea', 'notes', BAR_INFO), { Accept: 'application/json' })).status).toBe(401);
    // The portal origin's answer needs the portal's own session.
    expect((await setup.browser().get(`${setup.origin}${BAR_INFO}`, { Accept: 'application/json' })).status).toBe(401);
    // Taken out of the group that let them in: the app's session still exists, but the bar says nothing.
    await setup.portal.portal.admin.removeMember('test', 'ea', 'ea@example.com');
    let status = mine.status;
    for (let i = 0; i < 60 && status === 200; i++) {
      status = (await ask()).status;
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(status).toBe(401);
    expect((await ea.call('ea', 'notes', '/')).status).toBe(403);
  });
});

describe('page() and html from lib/app-kit.ts', () => {
  it('escapes the title and every interpolated value, and keeps html fragments as they are', () => {
    const hostile = '<script>alert("x")</script>';
    const out = page({ title: `Notes & ${hostile}`, body: html`<h1>Hello, ${hostile}</h1>${html`<b>kept</b>`}<ul>${['<i>', html`<li>ok</li>`]}</ul>'${"'"}` });
    expect(out).toContain('<title>Notes &amp; &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</title>');
    expect(out).toContain('<h1>Hello, &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</h1><b>kept</b><ul>&lt;i&gt;<li>ok</li></ul>\'&#39;');
    expect(out).not.toContain(hostile);
    expect(out).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(out).toContain('<script src="/.well-known/atrium/bar.js" defer></script>');
    expect(out).toContain('<body>\n<atrium-bar></atrium-bar>\n<main id="main">');
    const bare = page({ title: 'x', body: html`y`, bar: false, lang: 'de"' });
    expect(bare).not.toContain('atrium-bar');
    expect(bare).not.toContain('bar.js');
    expect(bare).toContain('<html lang="de&quot;">');
    expect(escapeHtml(null)).toBe('');
  });
});
