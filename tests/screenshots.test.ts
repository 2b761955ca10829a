import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, NAVIGATION_TIMEOUT_MS, STEP_TIMEOUT_MS, signInOnPage } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The README's screenshots (issue 13, item 7), made here from the real portal so they never go
 * stale: `npm run screenshots` runs this file, which writes docs/screenshots/*.png. Viewport shots,
 * not full pages, so the files stay small.
 */
const OUT = fileURLToPath(new URL('../docs/screenshots/', import.meta.url));
/** Each shot, its page and viewport; the README links these names. */
const SHOTS = {
  launcher: { width: 1280, height: 720 },
  'request-access': { width: 1280, height: 720 },
  'admin-user': { width: 1280, height: 720 },
  'audit-log': { width: 1280, height: 720 },
  'app-bar-phone': { width: 390, height: 700 },
  'launcher-phone': { width: 390, height: 700 },
} as const;
type Shot = keyof typeof SHOTS;
const MAX_BYTES = 300_000;

let portal: TestPortal;
let browser: Browser | undefined;

beforeAll(async () => {
  mkdirSync(OUT, { recursive: true });
  portal = await startTestPortal();
});
afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

async function signedIn(email: string): Promise<Page> {
  browser ??= await launchChromium();
  const context = await browser.newContext({ baseURL: portal.origin, viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  await signInOnPage(page, portal.origin, email);
  return page;
}

async function shoot(page: Page, name: Shot): Promise<void> {
  const { width, height } = SHOTS[name];
  await page.setViewportSize({ width, height });
  await page.evaluate('document.fonts.ready');
  await page.screenshot({ path: `${OUT}${name}.png` });
}

/** Width and height from a PNG's IHDR chunk. */
function pngSize(file: string): { width: number; height: number } {
  const bytes = readFileSync(file);
  expect(bytes.subarray(1, 4).toString('latin1')).toBe('PNG');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

describe('README screenshots', () => {
  it('are taken from the running portal and kept small', { timeout: 300_000 }, async () => {
    const started = Date.now();
    // The launcher of someone who has opened an app from it (its Recently opened row shows).
    const ea = await signedIn('ea@example.com');
    await ea.locator('section[data-tier="ea"]').getByRole('link', { name: 'Notes' }).click();
    await ea.waitForURL(`${portal.origin}/apps/ea/notes/`);
    await ea.locator('atrium-bar[data-ready]').waitFor({ state: 'attached' });
    await ea.setViewportSize(SHOTS['app-bar-phone']);
    await shoot(ea, 'app-bar-phone');
    for (let i = 0; i < 60; i++) {
      await ea.goto('/');
      if ((await ea.locator('section[data-section="recent"]').count()) > 0) break;
      await ea.waitForTimeout(250);
    }
    await ea.locator('section[data-section="recent"]').waitFor({ state: 'visible' });
    await shoot(ea, 'launcher');
    await shoot(ea, 'launcher-phone');

    // A 403 with its request form.
    const stable = await signedIn('stable@example.com');
    expect((await stable.goto('/apps/ea/notes/'))?.status()).toBe(403);
    await stable.getByLabel(/Ask an administrator/).fill('To read the team notes');
    await shoot(stable, 'request-access');
    await stable.getByRole('button', { name: 'Request access' }).click();
    await stable.getByTestId('request-pending').waitFor({ state: 'visible' });

    // The admin console: a user's page and the audit log.
    const admin = await signedIn('admin@example.com');
    const user = (await portal.portal.users.byEmail('ea@example.com'))[0]!;
    await admin.goto(`/admin/users/${user.id}`);
    await shoot(admin, 'admin-user');
    await admin.goto('/admin/audit');
    await shoot(admin, 'audit-log');

    for (const [name, size] of Object.entries(SHOTS)) {
      const file = `${OUT}${name}.png`;
      const stat = statSync(file);
      expect(stat.mtimeMs, `${name}.png was written by this run`).toBeGreaterThanOrEqual(started - 1000);
      expect(stat.size, `${name}.png stays small`).toBeLessThan(MAX_BYTES);
      expect(pngSize(file)).toEqual(size);
    }
    // README shows every one of them.
    const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');
    for (const name of Object.keys(SHOTS)) expect(readme, name).toContain(`docs/screenshots/${name}.png`);
  });
});
