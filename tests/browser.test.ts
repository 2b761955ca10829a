import { mkdirSync, rmSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { attr, launchChromium, NAVIGATION_TIMEOUT_MS, SCREENSHOTS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The whole journey in a real browser (Debian's Chromium, driven by playwright-core): sign in through
 * the embedded provider, use the launcher, open an allowed app, hit a locked one, sign out. CI
 * installs Chromium (see .ci/run); when it is missing this test fails, it never skips.
 */

let portal: TestPortal;
let browser: Browser | undefined;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  rmSync(`${SCREENSHOTS}browser-failure.png`, { force: true });
  portal = await startTestPortal();
});

afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

/** The visible text of the first match, once it is there (playwright-core has no web-first expect). */
async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${SCREENSHOTS}browser-${name}.png`, fullPage: true });
}

describe('the portal in a real browser', () => {
  it('signs in as ea, opens an allowed app, is refused a devel app, and signs out', { timeout: 240_000 }, async () => {
    // playwright refuses --user-data-dir in launch(): it gives every launch() a fresh temporary
    // profile of its own (playwright_chromiumdev_profile-*) and deletes it on close.
    browser = await launchChromium();
    const context = await browser.newContext({ baseURL: portal.origin, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
    const scriptErrors: string[] = [];
    page.on('pageerror', (err) => scriptErrors.push(err.message));
    const visited: string[] = [];
    // Every document request of the tab, redirect hops included (framenavigated sees only the last).
    page.on('request', (request) => {
      if (request.isNavigationRequest() && request.frame() === page.mainFrame()) visited.push(request.url());
    });
    const home = `${portal.origin}/`;

    try {
      // 1. Signed out: the launcher offers only a way in.
      const first = await page.goto('/');
      expect(first?.status()).toBe(200);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('One sign-in, every internal app.');
      expect(await page.getByTestId('user-level').count()).toBe(0);
      await shot(page, '01-signed-out');

      // 2. Sign in: /login → the embedded provider's form.
      await page.getByRole('link', { name: 'Sign in' }).click();
      await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Sign in to Atrium');
      await page.getByLabel('Email').fill('ea@example.com');
      await page.getByLabel('Password').fill(DEMO_PASSWORD);
      await shot(page, '02-sign-in-form');
      await page.getByRole('button', { name: 'Sign in' }).click();

      // 3. Back on the launcher, signed in as ea.
      await page.waitForURL(home);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Your apps');
      expect(visited.some((url) => new URL(url).pathname === '/auth/callback')).toBe(true);
      expect(await text(page.getByTestId('user-email'))).toBe('Early Adopter');
      expect(await text(page.getByTestId('user-level'))).toBe('ea');
      const notes = page.locator('section[data-tier="ea"]').getByRole('link', { name: 'Notes' });
      expect(await attr(notes, 'href')).toBe('/apps/ea/notes/');
      expect(await attr(page.locator('section[data-tier="stable"]').getByRole('link', { name: 'Welcome' }), 'href')).toBe('/apps/stable/welcome/');
      const inspector = page.locator('section[data-tier="devel"] li.card', { hasText: 'Inspector' });
      expect(await attr(inspector, 'class')).toMatch(/\blocked\b/);
      expect(await text(inspector.locator('.badge.lock'))).toMatch(/needs devel/);
      expect(await inspector.getByRole('link').count()).toBe(0);
      expect(await page.locator('a[href^="/apps/devel/"]').count()).toBe(0);
      await shot(page, '03-launcher-ea');

      // 4. The allowed app opens, and knows who the user is.
      await notes.click();
      await page.waitForURL(`${portal.origin}/apps/ea/notes/`);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Notes (early access)');
      expect(await text(page.locator('main'))).toContain('0 note(s) for ea@example.com.');
      await shot(page, '04-notes-app');

      // 5. A devel app by URL: 403 naming the level needed and the user's level.
      const refused = await page.goto('/apps/devel/inspector/');
      expect(refused?.status()).toBe(403);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('You do not have access');
      const facts = page.locator('section.error dl.facts');
      await facts.waitFor({ state: 'visible' });
      expect((await facts.locator('dt').allInnerTexts()).map((t) => t.trim())).toEqual(['This app needs', 'Your level']);
      expect(await text(facts.locator('dd').nth(0))).toBe('devel');
      expect(await text(facts.locator('dd').nth(1))).toBe('ea');
      expect(await page.content()).not.toContain('mountPath'); // nothing of the app leaked through
      await shot(page, '05-inspector-403');

      // 6. Sign out from the launcher: the portal's session ends, then the provider's logout page
      //    submits its own form with a script and sends the browser back to the portal, which says
      //    so on a "signed out" page (once: the launcher is the next page at /).
      await page.goto('/');
      expect(await text(page.getByTestId('user-level'))).toBe('ea');
      const beforeSignOut = visited.length;
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.waitForURL(`${portal.origin}/signed-out`, { timeout: NAVIGATION_TIMEOUT_MS });
      expect(visited.slice(beforeSignOut).some((url) => new URL(url).pathname.startsWith('/idp/session/end'))).toBe(true);
      expect(visited.slice(beforeSignOut).some((url) => url === home)).toBe(true);
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('You are signed out');
      expect(await attr(page.getByRole('link', { name: 'Sign in again' }), 'href')).toBe('/login');
      expect(await page.getByTestId('user-level').count()).toBe(0);
      expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(0);
      await shot(page, '06-signed-out-again');
      await page.goto('/');
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('One sign-in, every internal app.');

      // 7. Signed out for real, here and at the provider: /me refuses, and an app asks for a new sign-in.
      const me = await page.request.get('/me', { headers: { Accept: 'application/json' } });
      expect(me.status()).toBe(401);
      await page.goto('/apps/ea/notes/');
      await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
      expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Sign in to Atrium');
      // This browser signed in here before: it is told where the sign-in leads.
      expect(await text(page.getByTestId('continue-to'))).toBe('to continue to Notes');
      await shot(page, '07-app-asks-to-sign-in');

      expect(scriptErrors).toEqual([]);
    } catch (err) {
      // Whatever the page showed when it went wrong is the best clue in a CI log.
      await shot(page, 'failure').catch(() => {});
      throw err;
    }
  });
});
