import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AxeResults } from 'axe-core';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { launchChromium, NAVIGATION_TIMEOUT_MS, SCREENSHOTS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * WCAG 2.1 AA on the admin console and the sign-in pages, in a real browser (issue 13, item 6):
 * an admin and a non-admin sign in for real, and every page they reach is checked by axe-core in
 * light and dark mode, at desktop (1280×800) and phone (390×844) width; it must report no
 * violation and the page must not scroll sideways. axe does not judge non-text contrast, so the
 * focus ring and field borders are measured here against the colours around them (3:1).
 * Screenshots of every page and variant go to tests/screenshots/a11y-*.png.
 */

const AXE = createRequire(import.meta.url).resolve('axe-core');
/** axe-core's global in the page, once injected (this code runs in the browser). */
declare const axe: { run(): Promise<AxeResults> };

const VARIANTS = [
  { scheme: 'light', width: 1280, height: 800 },
  { scheme: 'dark', width: 1280, height: 800 },
  { scheme: 'light', width: 390, height: 844 },
  { scheme: 'dark', width: 390, height: 844 },
] as const;

let portal: TestPortal;
let browser: Browser | undefined;
const problems: string[] = [];
const checked: string[] = [];

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  for (const file of readdirSync(SCREENSHOTS)) if (file.startsWith('a11y-')) rmSync(`${SCREENSHOTS}${file}`, { force: true });
  portal = await startTestPortal();
  // Somebody to be locked out, so no account another step signs in with is.
  await portal.portal.admin.addLocalUser('test', { email: 'locked@example.com', password: 'a long enough password' });
});

afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

async function person(): Promise<{ context: BrowserContext; page: Page }> {
  // bypassCSP: axe is injected as a script of the page's own, whatever policy the portal sends.
  const context = await browser!.newContext({ baseURL: portal.origin, viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  return { context, page };
}

/** The sign-in form, filled and sent (the page must already be showing it); the answer's status. */
async function submitSignIn(page: Page, email: string, password: string): Promise<number> {
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/idp/interaction/')),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  await page.waitForLoadState('load');
  return answer.status();
}

async function signIn(page: Page, email: string): Promise<void> {
  await page.goto('/login');
  await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
  await submitSignIn(page, email, DEMO_PASSWORD);
  await page.waitForURL(`${portal.origin}/`);
}

/** Relative luminance and contrast ratio (WCAG 2.1) of `rgb(…)`/`rgba(…)` colours. */
function contrast(a: string, b: string): number {
  const lum = (css: string) => {
    const [r, g, bl] = (css.match(/[\d.]+/g) ?? []).slice(0, 3).map((v) => Number(v) / 255).map((v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

/** The little of the DOM these checks read (tsconfig has no "dom" lib: this code runs in the page). */
interface DomElement {
  matches(selector: string): boolean;
  closest(selector: string): DomElement | null;
  parentElement: DomElement | null;
}
declare const document: { documentElement: { scrollWidth: number; clientWidth: number }; activeElement: DomElement | null; querySelectorAll(s: string): ArrayLike<DomElement>; body: DomElement };
declare function getComputedStyle(element: DomElement): { outlineStyle: string; outlineWidth: string; outlineColor: string; backgroundColor: string; borderTopColor: string; borderTopWidth: string };

/** The first opaque background behind an element, walking up (the page's own when none is set). */
const backgroundBehind = (selector: string) => `(() => {
  let el = document.querySelector(${JSON.stringify(selector)});
  while (el && /rgba\\(0, 0, 0, 0\\)|transparent/.test(getComputedStyle(el).backgroundColor)) el = el.parentElement;
  return el ? getComputedStyle(el).backgroundColor : 'rgb(255, 255, 255)';
})()`;

/** axe-core on the page as it is now (injected once per document). */
async function runAxe(page: Page): Promise<AxeResults> {
  if (!(await page.evaluate(() => typeof (globalThis as { axe?: unknown }).axe !== 'undefined'))) await page.addScriptTag({ path: AXE });
  return page.evaluate(() => axe.run());
}

/**
 * Checks the page as it is now in each variant: axe-core's violations, sideways scrolling, and
 * the field borders' contrast against what is behind them.
 */
async function check(page: Page, name: string): Promise<void> {
  await page.waitForLoadState('load');
  for (const v of VARIANTS) {
    const label = `${name} [${v.scheme} ${v.width}]`;
    await page.setViewportSize({ width: v.width, height: v.height });
    await page.emulateMedia({ colorScheme: v.scheme });
    const results = await runAxe(page);
    for (const violation of results.violations) {
      problems.push(`${label}: ${violation.id} (${violation.impact}) ${violation.help}: ${violation.nodes.slice(0, 3).map((n) => `${n.target.join(' ')} ${n.failureSummary ?? ''}`.replace(/\s+/g, ' ')).join(' | ')}`);
    }
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    if (overflow > 1) problems.push(`${label}: the page scrolls sideways by ${overflow}px`);
    const fields = await page.evaluate(`Array.from(document.querySelectorAll('input:not([type=hidden]):not([type=checkbox]), select, textarea')).map((el, i) => { el.setAttribute('data-a11y-field', String(i)); const s = getComputedStyle(el); return { i, border: s.borderTopColor, width: s.borderTopWidth }; })`) as { i: number; border: string; width: string }[];
    for (const f of fields) {
      const behind = (await page.evaluate(backgroundBehind(`[data-a11y-field="${f.i}"]`))) as string;
      const parentBehind = (await page.evaluate(`(() => { let el = document.querySelector('[data-a11y-field="${f.i}"]').parentElement; while (el && /rgba\\(0, 0, 0, 0\\)|transparent/.test(getComputedStyle(el).backgroundColor)) el = el.parentElement; return el ? getComputedStyle(el).backgroundColor : 'rgb(255, 255, 255)'; })()`)) as string;
      const worst = Math.min(contrast(f.border, behind), contrast(f.border, parentBehind));
      if (worst < 3) problems.push(`${label}: field ${f.i} border ${f.border} has ${worst.toFixed(2)}:1 against ${behind} / ${parentBehind}`);
    }
    await page.screenshot({ path: `${SCREENSHOTS}a11y-${name}-${v.scheme}-${v.width}.png`, fullPage: true });
    checked.push(label);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });
}

/**
 * Tabs to the first element matching `selector` and measures its focus ring: drawn (not the
 * browser's default), 2px or more, and 3:1 against the element's own background and the page's.
 */
async function checkFocusRing(page: Page, selector: string, name: string): Promise<void> {
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.evaluate(() => (document.activeElement as unknown as { blur?: () => void } | null)?.blur?.());
    let found = false;
    for (let i = 0; i < 60 && !found; i++) {
      await page.keyboard.press('Tab');
      found = await page.evaluate((s) => !!document.activeElement?.matches(s), selector);
    }
    if (!found) {
      problems.push(`${name} [${scheme}]: could not reach ${selector} with Tab`);
      continue;
    }
    const ring = await page.evaluate(() => {
      const el = document.activeElement as DomElement;
      const s = getComputedStyle(el);
      return { visible: el.matches(':focus-visible'), style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor, own: s.backgroundColor };
    });
    const page_ = (await page.evaluate(backgroundBehind(':focus'))) as string;
    const parent = (await page.evaluate(`(() => { let el = document.activeElement.parentElement; while (el && /rgba\\(0, 0, 0, 0\\)|transparent/.test(getComputedStyle(el).backgroundColor)) el = el.parentElement; return el ? getComputedStyle(el).backgroundColor : 'rgb(255, 255, 255)'; })()`)) as string;
    if (!ring.visible || ring.style !== 'solid' || ring.width < 2) problems.push(`${name} [${scheme}]: ${selector} has no drawn focus ring (${JSON.stringify(ring)})`);
    const own = /rgba\(0, 0, 0, 0\)|transparent/.test(ring.own) ? page_ : ring.own;
    for (const [what, against] of [['the element', own], ['the page', parent]] as const) {
      const ratio = contrast(ring.color, against);
      if (ratio < 3) problems.push(`${name} [${scheme}]: focus ring ${ring.color} on ${selector} has ${ratio.toFixed(2)}:1 against ${what} (${against})`);
    }
    checked.push(`${name} focus [${scheme}]`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

describe('accessibility of the admin console and the sign-in pages', () => {
  it('has no axe-core violations in light and dark mode, at desktop and phone width', { timeout: 600_000 }, async () => {
    browser = await launchChromium();
    const admin = await person();
    const member = await person();
    const guest = await person();
    const a = admin.page;
    try {
      // First, that these checks can fail: a page with the faults users reported (the old white on
      // amber badge, a faint field border) and an image without a text must not pass.
      const probe = await person();
      await probe.page.setContent(
        '<!doctype html><html lang="en"><head><title>probe</title></head><body><main><h1>Probe</h1><img src="x.png">' +
          '<p><span style="color:#fff;background:#b26a00;font-size:13px">ea</span></p>' +
          '<label>Name <input style="border:1px solid #dde1e7;background:#f6f7f9"></label><button class="button">Go</button></main></body></html>',
      );
      expect((await runAxe(probe.page)).violations.map((v) => v.id).sort()).toEqual(['color-contrast', 'image-alt']);
      const before = problems.length;
      await check(probe.page, 'probe');
      expect(problems.slice(before).filter((p) => /field 0 border/.test(p))).toHaveLength(VARIANTS.length);
      await checkFocusRing(probe.page, 'button', 'probe'); // the browser's own ring: not a drawn one
      expect(problems.slice(before).filter((p) => /probe \[(light|dark)\]: button has no drawn focus ring/.test(p))).toHaveLength(2);
      problems.splice(before);
      checked.length = 0;
      await probe.context.close();

      // The admin, signed in for real through the embedded provider's form.
      await signIn(a, 'admin@example.com');
      const ea = (await portal.portal.users.byEmail('ea@example.com'))[0]!;
      await a.goto('/admin/users');
      await check(a, 'admin-users');
      await checkFocusRing(a, 'button.button', 'admin-users search button');
      await a.goto(`/admin/users/${ea.id}`);
      await check(a, 'admin-user');
      await checkFocusRing(a, 'a.button.danger', 'admin-user disable button');
      await a.goto('/admin/groups');
      await check(a, 'admin-groups');
      await a.goto('/admin/groups/devel');
      await check(a, 'admin-group');
      // A refusal drawn next to its form (an unknown user), focusable and announced.
      await a.getByLabel('User', { exact: true }).fill('ghost@example.com');
      await a.getByRole('button', { name: 'Add member' }).click();
      await a.getByTestId('form-error').waitFor({ state: 'visible' });
      expect(await text(a.getByTestId('form-error'))).toBe('There is no user "ghost@example.com".');
      expect(await a.getByLabel('User', { exact: true }).inputValue()).toBe('ghost@example.com');
      await check(a, 'admin-group-refusal');
      await a.goto('/admin/apps');
      await check(a, 'admin-apps');
      await a.goto('/admin/audit?action=session.&from=2020-01-01');
      expect(await a.locator('table.audit tbody tr').count()).toBeGreaterThan(0);
      await check(a, 'admin-audit-filtered');
      await checkFocusRing(a, '.scroll[role="region"]', 'admin-audit scrolling table');
      await a.goto(`/admin/groups/ea/members/remove?user=${ea.id}`);
      expect(await text(a.getByRole('heading', { level: 1 }))).toBe('Remove ea@example.com from ea?');
      await check(a, 'admin-confirm');
      await checkFocusRing(a, 'button.button.danger', 'admin-confirm danger button');

      // A non-admin: the launcher, and the console's refusal.
      await signIn(member.page, 'ea@example.com');
      await check(member.page, 'member-launcher');
      const refused = await member.page.goto('/admin/users');
      expect(refused?.status()).toBe(403);
      await check(member.page, 'member-admin-403');

      // A guest: signs in, signs out (the signed-out page), comes back for an app (the sign-in page,
      // "to continue to"), cancels (the cancelled page), gets the password wrong, is locked out.
      const g = guest.page;
      await signIn(g, 'nobody@example.com');
      await g.getByRole('button', { name: 'Sign out' }).click();
      await g.waitForURL(`${portal.origin}/signed-out`);
      await check(g, 'signed-out');
      await g.goto('/apps/ea/notes/');
      await g.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
      expect(await text(g.getByTestId('continue-to'))).toBe('to continue to Notes');
      await check(g, 'sign-in');
      await checkFocusRing(g, 'button.button', 'sign-in button');
      await g.getByRole('link', { name: 'Cancel' }).click();
      await g.waitForURL((url) => url.pathname === '/auth/callback');
      expect(await text(g.getByRole('heading', { level: 1 }))).toBe('Sign-in cancelled');
      await check(g, 'sign-in-cancelled');
      await g.getByRole('link', { name: 'Sign in again' }).click();
      await g.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
      await submitSignIn(g, 'nobody@example.com', 'not the password');
      await g.getByRole('alert').waitFor({ state: 'visible' });
      expect(await g.evaluate(() => (document.activeElement as unknown as { name?: string } | null)?.name)).toBe('password');
      await check(g, 'sign-in-wrong-password');
      // Ten wrong passwords an account may have in 15 minutes; the next one is refused unchecked.
      let status = 0;
      for (let i = 0; i < 15 && status !== 429; i++) status = await submitSignIn(g, 'locked@example.com', 'not the password');
      expect(status).toBe(429);
      expect(await text(g.getByRole('alert'))).toMatch(/^Too many failed attempts\. Try again in 1[45] minutes\.$/);
      await check(g, 'sign-in-locked-out');

      console.log(`checked ${checked.length} page variants`);
      expect(problems).toEqual([]);
    } catch (err) {
      for (const [name, p] of [['admin', a], ['member', member.page], ['guest', guest.page]] as const) await p.screenshot({ path: `${SCREENSHOTS}a11y-failure-${name}.png`, fullPage: true }).catch(() => {});
      throw err;
    }
  });
});
