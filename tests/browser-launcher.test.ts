import { createRequire } from 'node:module';
import type { AxeResults } from 'axe-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, NAVIGATION_TIMEOUT_MS, STEP_TIMEOUT_MS, text, signInOnPage } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The launcher in a real browser (issue 13, item 1): Tab reaches "Request access" on a locked card,
 * the search box filters as the user types, and axe-core finds no violation in light and dark mode
 * at desktop and phone width, with nothing scrolling sideways.
 */
const AXE = createRequire(import.meta.url).resolve('axe-core');
declare const axe: { run(): Promise<AxeResults> };
declare const document: { documentElement: { scrollWidth: number; clientWidth: number }; activeElement: { textContent: string | null; tagName: string } | null };

let portal: TestPortal;
let browser: Browser | undefined;

beforeAll(async () => {
  portal = await startTestPortal();
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

async function signedIn(email: string): Promise<Page> {
  const context = await browser!.newContext({ baseURL: portal.origin, viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  await signInOnPage(page, portal.origin, email);
  return page;
}

describe('launcher in a browser', () => {
  it('Tab reaches Request access; the search filters as you type', { timeout: 300_000 }, async () => {
    const page = await signedIn('stable@example.com');
    let reached = false;
    for (let i = 0; i < 40 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.activeElement?.tagName === 'BUTTON' && (document.activeElement.textContent ?? '').trim() === 'Request access');
    }
    expect(reached).toBe(true);
    // The cards are links named by their titles.
    expect(await page.getByRole('link', { name: 'Welcome', exact: true }).count()).toBe(1);

    const cards = page.locator('li.card');
    const all = await cards.count();
    expect(all).toBeGreaterThan(1);
    await page.getByLabel('Find an app').pressSequentially('welc');
    await expect.poll(() => page.locator('li.card:visible').count(), { timeout: STEP_TIMEOUT_MS }).toBe(1);
    expect(await text(page.locator('li.card:visible'))).toContain('Welcome');
    expect(await text(page.locator('#search-status'))).toMatch(/^1 of \d+ apps match\.$/);
    await page.getByLabel('Find an app').fill('');
    await page.getByLabel('Find an app').dispatchEvent('input');
    await expect.poll(() => page.locator('li.card:visible').count(), { timeout: STEP_TIMEOUT_MS }).toBe(all);
    await page.context().close();
  });

  it('has no axe-core violations in light and dark mode, at desktop and phone width', { timeout: 600_000 }, async () => {
    const problems: string[] = [];
    for (const email of ['stable@example.com', 'nobody@example.com']) {
      const page = await signedIn(email);
      for (const v of [
        { scheme: 'light', width: 1280, height: 800 },
        { scheme: 'dark', width: 1280, height: 800 },
        { scheme: 'light', width: 390, height: 844 },
        { scheme: 'dark', width: 390, height: 844 },
      ] as const) {
        await page.setViewportSize({ width: v.width, height: v.height });
        await page.emulateMedia({ colorScheme: v.scheme });
        if (!(await page.evaluate(() => typeof (globalThis as { axe?: unknown }).axe !== 'undefined'))) await page.addScriptTag({ path: AXE });
        const results = await page.evaluate(() => axe.run());
        for (const violation of results.violations) problems.push(`${email} ${v.scheme} ${v.width}: ${violation.id} ${violation.nodes.map((n) => n.target.join(' ')).join(', ')}`);
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        if (overflow > 0) problems.push(`${email} ${v.scheme} ${v.width}: scrolls sideways by ${overflow}px`);
      }
      await page.context().close();
    }
    expect(problems).toEqual([]);
  });
});
