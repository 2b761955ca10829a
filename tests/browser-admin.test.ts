import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { attr, launchChromium, NAVIGATION_TIMEOUT_MS, SCREENSHOTS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * Two people in a real browser (Debian's Chromium, driven by playwright-core), each in a browser
 * context of their own: ea@ is refused a devel app; admin@ promotes them through the admin console;
 * ea@'s open session gets in at its very next request, with no new sign-in. Then the admin checks the
 * nesting tree and the audit trail. CI installs Chromium (see .ci/run); when it is missing this test
 * fails, it never skips.
 */

let portal: TestPortal;
let browser: Browser | undefined;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // Screenshots of an earlier run must not pass for this one's.
  for (const file of readdirSync(SCREENSHOTS)) if (file.startsWith('browser-admin-')) rmSync(`${SCREENSHOTS}${file}`, { force: true });
  portal = await startTestPortal();
});

afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

/** The visible text of the first match, once it is there (playwright-core has no web-first expect). */
/** The trimmed text of every cell of a table row. */
async function cells(row: Locator): Promise<string[]> {
  await row.waitFor({ state: 'visible' });
  return (await row.locator('td').allInnerTexts()).map((t) => t.trim());
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${SCREENSHOTS}browser-admin-${name}.png`, fullPage: true });
}

interface Person {
  context: BrowserContext;
  page: Page;
  scriptErrors: string[];
}

async function person(): Promise<Person> {
  const context = await browser!.newContext({ baseURL: portal.origin, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  const scriptErrors: string[] = [];
  page.on('pageerror', (err) => scriptErrors.push(err.message));
  return { context, page, scriptErrors };
}

/** Launcher → "Sign in" → the embedded provider's form → back on the launcher. */
async function signIn(page: Page, email: string, screenshot: string): Promise<void> {
  await page.goto('/');
  await page.getByRole('link', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
  expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Sign in to Atrium');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(DEMO_PASSWORD);
  await shot(page, screenshot);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${portal.origin}/`);
  expect(await text(page.getByRole('heading', { level: 1 }))).toBe('Your apps');
}

async function sessionCookie(context: BrowserContext): Promise<string | undefined> {
  return (await context.cookies(portal.origin)).find((c) => c.name === 'atrium.sid')?.value;
}

/** The admin console's nesting tree as nested [name, level, children] tuples, read from the DOM. */
type TreeNode = [name: string, level: string | null, children: TreeNode[]];
/** The little of the DOM readTree uses (tsconfig has no "dom" lib: this code runs in the page). */
interface DomElement {
  tagName: string;
  children: ArrayLike<DomElement>;
  textContent: string | null;
  querySelector(selector: string): DomElement | null;
}
async function readTree(tree: Locator): Promise<TreeNode[]> {
  await tree.waitFor({ state: 'visible' });
  return tree.evaluate((root) => {
    const read = (list: DomElement): TreeNode[] =>
      Array.from(list.children)
        .filter((li) => li.tagName === 'LI')
        .map((li) => {
          const name = li.querySelector(':scope > a')?.textContent?.trim() ?? '';
          const level = li.querySelector(':scope > .badge')?.textContent?.trim() ?? null;
          const sub = li.querySelector(':scope > ul');
          return [name, level, sub ? read(sub) : []] as TreeNode;
        });
    return read(root as unknown as DomElement);
  });
}

describe('the admin console in a real browser', () => {
  it('an admin adds ea@ to devel; ea@ gets in on the next request without signing in again', { timeout: 360_000 }, async () => {
    browser = await launchChromium();
    const ea = await person();
    const admin = await person();
    const a = ea.page;
    const b = admin.page;

    try {
      // 1. ea@ signs in and is refused the devel app: 403 naming the level needed and theirs.
      await signIn(a, 'ea@example.com', '01-ea-sign-in');
      expect(await text(a.getByTestId('user-level'))).toBe('ea');
      expect(await a.locator('header.bar').getByRole('link', { name: 'Admin', exact: true }).count()).toBe(0);
      const lockedInspector = a.locator('section[data-tier="devel"] li.card', { hasText: 'Inspector' });
      expect(await attr(lockedInspector, 'class')).toMatch(/\blocked\b/);
      expect(await lockedInspector.getByRole('link').count()).toBe(0);
      await shot(a, '02-ea-launcher');
      const sessionBefore = await sessionCookie(ea.context);
      expect(sessionBefore).toBeTruthy();

      const refused = await a.goto('/apps/devel/inspector/');
      expect(refused?.status()).toBe(403);
      expect(await text(a.getByRole('heading', { level: 1 }))).toBe('You do not have access');
      const facts = a.locator('section.error dl.facts');
      await facts.waitFor({ state: 'visible' });
      expect((await facts.locator('dt').allInnerTexts()).map((t) => t.trim())).toEqual(['This app needs', 'Your level']);
      expect(await text(facts.locator('dd').nth(0))).toBe('devel');
      expect(await text(facts.locator('dd').nth(1))).toBe('ea');
      await shot(a, '03-ea-inspector-403');

      // 2. admin@ signs in (a second person: another context, its own cookies) and reaches the
      //    console through the header's "Admin" link.
      await signIn(b, 'admin@example.com', '04-admin-sign-in');
      expect(await text(b.getByTestId('user-level'))).toBe('admin');
      await b.locator('header.bar').getByRole('link', { name: 'Admin', exact: true }).click();
      await b.waitForURL(`${portal.origin}/admin/users`);
      const tabs = b.getByRole('navigation', { name: 'Admin' });
      expect(await text(tabs.locator('[aria-current="page"]'))).toBe('Users');
      expect(await text(b.getByRole('heading', { level: 1 }))).toMatch(/^Users\s+\d+$/); // the heading counts the users
      await shot(b, '05-admin-users');

      // Search for ea@: one row, at level ea.
      await b.getByLabel('Search users').fill('ea@example.com');
      await b.getByRole('button', { name: 'Search' }).click();
      await b.waitForURL((url) => url.pathname === '/admin/users' && url.searchParams.get('q') === 'ea@example.com');
      expect(await b.getByLabel('Search users').inputValue()).toBe('ea@example.com');
      const rows = b.locator('table.grid tbody tr');
      await rows.first().waitFor({ state: 'visible' });
      expect(await rows.count()).toBe(1);
      const [email, name, level, lastLogin, logins] = await cells(rows.first());
      expect({ email, name, level }).toEqual({ email: 'ea@example.com', name: 'Early Adopter', level: 'ea' });
      expect(lastLogin).toMatch(/^\d{4}-\d{2}-\d{2}/);
      expect(Number(logins)).toBeGreaterThanOrEqual(1);
      await shot(b, '06-admin-users-search');

      // That user's page: effective level ea; add to devel.
      await rows.first().getByRole('link', { name: 'ea@example.com' }).click();
      await b.waitForURL((url) => /^\/admin\/users\/\d+$/.test(url.pathname));
      const userPage = b.url();
      expect(await text(b.getByRole('heading', { level: 1 }))).toContain('Early Adopter');
      expect(await text(b.getByTestId('effective-level'))).toBe('ea');
      expect(await b.getByTestId('flash').count()).toBe(0);
      const addTo = b.getByRole('combobox', { name: 'Group', exact: true });
      // Only groups ea@ is not directly in are offered.
      expect((await addTo.locator('option').allInnerTexts()).map((t) => t.trim())).toEqual(expect.arrayContaining(['devel (devel)', 'admin (admin)']));
      expect(await addTo.locator('option[value="ea"]').count()).toBe(0);
      await addTo.selectOption('devel');
      await shot(b, '07-admin-user-before');
      await b.getByRole('button', { name: 'Add to group' }).click();
      // POST → 303 → the same user page, with the flash message and the new effective level.
      await b.getByTestId('flash').waitFor({ state: 'visible' });
      expect(b.url()).toBe(userPage);
      expect(await text(b.getByTestId('flash'))).toBe('Added to devel.');
      expect(await text(b.getByTestId('effective-level'))).toBe('devel');
      const develRow = b.locator('table.grid tbody tr', { has: b.getByRole('link', { name: 'devel', exact: true }) });
      expect((await cells(develRow)).slice(0, 3)).toEqual(['devel', 'devel', 'direct member']);
      expect(await b.getByRole('combobox', { name: 'Group', exact: true }).locator('option[value="devel"]').count()).toBe(0);
      await shot(b, '08-admin-user-added-to-devel');

      // 3. Back to ea@, same session (no sign-out, no new sign-in): the devel app opens now.
      const opened = await a.goto('/apps/devel/inspector/');
      expect(opened?.status()).toBe(200);
      expect(a.url()).toBe(`${portal.origin}/apps/devel/inspector/`);
      expect(opened?.headers()['content-type']).toMatch(/^application\/json/);
      const body = (await opened!.json()) as { user: { email: string; level: string; groups: string[] }; path: string };
      expect(body.user).toMatchObject({ email: 'ea@example.com', level: 'devel' });
      expect(body.user.groups).toEqual(expect.arrayContaining(['devel', 'ea', 'stable']));
      expect(body.path).toBe('/');
      expect(await text(a.locator('body'))).toMatch(/"level":\s*"devel"/); // what the person sees, not only the wire
      await shot(a, '09-ea-inspector-open');
      expect(await sessionCookie(ea.context)).toBe(sessionBefore);

      // The launcher now links the Inspector, and the header shows the new level.
      await a.goto('/');
      expect(await text(a.getByTestId('user-level'))).toBe('devel');
      const inspector = a.locator('section[data-tier="devel"]').getByRole('link', { name: 'Inspector' });
      expect(await attr(inspector, 'href')).toBe('/apps/devel/inspector/');
      expect(await attr(a.locator('section[data-tier="devel"] li.card', { hasText: 'Inspector' }), 'class')).not.toMatch(/\blocked\b/);
      await shot(a, '10-ea-launcher-devel');
      await inspector.click();
      await a.waitForURL(`${portal.origin}/apps/devel/inspector/`);
      expect(await text(a.locator('body'))).toMatch(/"email":\s*"ea@example\.com"/);
      expect(await sessionCookie(ea.context)).toBe(sessionBefore);

      // 4. The admin checks the nesting tree: stable ⊃ ea ⊃ devel ⊃ admin, each with its level.
      await tabs.getByRole('link', { name: 'Groups' }).click();
      await b.waitForURL(`${portal.origin}/admin/groups`);
      expect(await text(b.getByRole('heading', { level: 1 }))).toBe('Groups');
      expect(await readTree(b.getByTestId('group-tree'))).toEqual([
        ['stable', 'stable', [['ea', 'ea', [['devel', 'devel', [['admin', 'admin', []]]]]]]],
      ]);
      await shot(b, '11-admin-groups');

      // …and the audit log: admin@ added ea@ to devel.
      await tabs.getByRole('link', { name: 'Audit log' }).click();
      await b.waitForURL(`${portal.origin}/admin/audit`);
      expect(await text(b.getByRole('heading', { level: 1 }))).toMatch(/^Audit log\s+\d+$/); // the heading counts the entries
      const entries = b.locator('table.audit tbody tr', { has: b.locator('code', { hasText: /^member\.add$/ }) });
      await entries.first().waitFor({ state: 'visible' });
      expect(await entries.count()).toBe(1);
      const [when, actor, action, target, change] = await cells(entries.first());
      expect({ actor, action, target }).toEqual({ actor: 'admin@example.com', action: 'member.add', target: 'user:ea@example.com' });
      expect(change).toBe('group: devel'); // a readable line, not raw JSON
      const stamp = (await entries.first().locator('time').getAttribute('datetime')) ?? when!;
      expect(Date.now() - Date.parse(stamp)).toBeLessThan(10 * 60_000);
      await shot(b, '12-admin-audit');

      expect(ea.scriptErrors).toEqual([]);
      expect(admin.scriptErrors).toEqual([]);
    } catch (err) {
      // Whatever each person saw when it went wrong is the best clue in a CI log.
      await shot(a, 'failure-ea').catch(() => {});
      await shot(b, 'failure-admin').catch(() => {});
      throw err;
    }
  });
});
