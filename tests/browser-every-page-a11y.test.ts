import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditPage } from './helpers/a11y.ts';
import { launchChromium, NAVIGATION_TIMEOUT_MS, STEP_TIMEOUT_MS, text, signInOnPage } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * WCAG 2.1 AA on every page each demo account reaches (issue 13, item 6), signed in for real in
 * Chromium: launcher, profile, 403 (with its request form, then Pending), 404, the sign-out
 * confirmation, the example apps with the portal bar, the admin console for the admin, and signed
 * out the launcher, sign-in, signed-out and 404 pages. axe-core must report nothing in light and
 * dark mode at 1280 and 390 px, and no page may scroll sideways. (The devel Inspector answers JSON,
 * which Chromium draws itself: not a page of ours.)
 */
let portal: TestPortal;
let browser: Browser | undefined;
const problems: string[] = [];
const checked: string[] = [];

beforeAll(async () => {
  portal = await startTestPortal();
});
afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

async function person(): Promise<{ context: BrowserContext; page: Page }> {
  browser ??= await launchChromium();
  // bypassCSP: axe is injected as a script of the page's own.
  const context = await browser.newContext({ baseURL: portal.origin, viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  return { context, page };
}

async function signIn(page: Page, email: string): Promise<void> {
  await signInOnPage(page, portal.origin, email);
}

/** Visits a path (expecting its status) and audits it in every variant. */
async function visit(page: Page, who: string, path: string, status = 200, name = path): Promise<void> {
  const answer = await page.goto(path);
  expect(answer?.status(), `${who} ${path}`).toBe(status);
  await audit(page, who, name);
}
async function audit(page: Page, who: string, name: string): Promise<void> {
  // The app pages draw their bar after a fetch: audit it drawn.
  if ((await page.locator('atrium-bar').count()) > 0) await page.locator('atrium-bar[data-ready]').waitFor({ state: 'attached' });
  problems.push(...(await auditPage(page, `${who} ${name}`)));
  checked.push(`${who} ${name}`);
}

describe('every page, as each demo account', () => {
  it('has no axe-core violations and fits the screen, light and dark, 1280 and 390 px', { timeout: 900_000 }, async () => {
    // First, that the audit can fail: a page with a faint text, an image without a text and a row
    // wider than a phone is reported in the variants where each shows.
    const probe = await person();
    await probe.page.setContent(
      '<!doctype html><html lang="en"><head><title>probe</title></head><body><main><h1>Probe</h1><img src="x.png">' +
        '<p style="color:#aaa;background:#fff">faint</p><div style="width:600px">wide</div></main></body></html>',
    );
    const found = await auditPage(probe.page, 'probe');
    expect(found.filter((p) => /: image-alt /.test(p))).toHaveLength(4);
    expect(found.filter((p) => /\[light (1280|390)\]: color-contrast /.test(p))).toHaveLength(2);
    expect(found.filter((p) => /scrolls sideways/.test(p)).map((p) => p.slice(0, p.indexOf(']') + 1))).toEqual(['probe [light 390]', 'probe [dark 390]']);
    await probe.context.close();

    // Signed out.
    const guest = await person();
    await visit(guest.page, 'signed out', '/');
    await visit(guest.page, 'signed out', '/nowhere', 404);
    await guest.page.goto('/apps/ea/notes/');
    await guest.page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
    await audit(guest.page, 'signed out', 'sign-in');

    // stable: its app, a 403 with the request form, the request sent from it, then Pending.
    const stable = (await person()).page;
    await signIn(stable, 'stable@example.com');
    await audit(stable, 'stable', 'launcher');
    await visit(stable, 'stable', '/profile');
    await visit(stable, 'stable', '/apps/stable/welcome/');
    await visit(stable, 'stable', '/apps/ea/notes/', 403, '403 with request form');
    await stable.getByLabel(/Ask an administrator/).fill('To read the team notes');
    await stable.getByRole('button', { name: 'Request access' }).click();
    await stable.waitForURL(`${portal.origin}/apps/ea/notes/`);
    await stable.getByTestId('request-pending').waitFor({ state: 'visible' });
    await audit(stable, 'stable', '403 pending');
    await visit(stable, 'stable', '/nowhere', 404);
    await visit(stable, 'stable', '/sign-out');

    // ea: the launcher after opening an app from it ("Recently opened", remembered by the click).
    const ea = (await person()).page;
    await signIn(ea, 'ea@example.com');
    await ea.locator('section[data-tier="ea"]').getByRole('link', { name: 'Notes' }).click();
    await ea.waitForURL(`${portal.origin}/apps/ea/notes/`);
    await audit(ea, 'ea', 'notes app');
    let recent = '';
    for (let i = 0; i < 60 && !recent; i++) {
      await ea.goto('/');
      recent = (await ea.locator('section[data-section="recent"]').count()) > 0 ? await text(ea.locator('section[data-section="recent"] .card-title')) : '';
      if (!recent) await ea.waitForTimeout(250);
    }
    expect(recent).toBe('Notes');
    await audit(ea, 'ea', 'launcher with recent apps');
    await visit(ea, 'ea', '/apps/ea/hello-python/');
    await visit(ea, 'ea', '/apps/devel/inspector/', 403);
    await visit(ea, 'ea', '/profile');

    // devel.
    const devel = (await person()).page;
    await signIn(devel, 'devel@example.com');
    await audit(devel, 'devel', 'launcher');
    await visit(devel, 'devel', '/profile');
    await visit(devel, 'devel', '/admin/users', 403);

    // nobody: no level, a form to ask for one.
    const nobody = (await person()).page;
    await signIn(nobody, 'nobody@example.com');
    await audit(nobody, 'nobody', 'launcher');
    await visit(nobody, 'nobody', '/profile');
    await visit(nobody, 'nobody', '/apps/stable/welcome/', 403);

    // admin: the console, and the request stable sent.
    const admin = (await person()).page;
    await signIn(admin, 'admin@example.com');
    await audit(admin, 'admin', 'launcher');
    const ea1 = (await portal.portal.users.byEmail('ea@example.com'))[0]!;
    for (const path of ['/admin/users', `/admin/users/${ea1.id}`, '/admin/groups', '/admin/groups/ea', '/admin/apps', '/admin/audit', '/admin/requests', '/admin/fields', '/profile']) {
      await visit(admin, 'admin', path);
    }

    // Signed out again: the signed-out page.
    await stable.getByRole('button', { name: 'Sign out' }).first().click();
    await stable.waitForURL(`${portal.origin}/signed-out`);
    await audit(stable, 'stable', 'signed-out');

    console.log(`checked ${checked.length} pages in 4 variants each`);
    expect(problems).toEqual([]);
  });
});
