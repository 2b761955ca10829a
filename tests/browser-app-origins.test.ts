import { mkdirSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { CHROMIUM, CHROMIUM_ARGS, NAVIGATION_TIMEOUT_MS, SCREENSHOTS, STEP_TIMEOUT_MS } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * App-origin mode in Chromium: a hostile app in the ea tier, visited by an admin, runs a script that
 * tries what worked on a shared origin — read /me and the admin console, post the admin forms to
 * promote its author, plant the portal's cookie. On its own origin it gets nothing and changes nothing.
 */

let portal: TestPortal;
let browser: Browser | undefined;
let port: number;
let PORTAL: string;

const hostileApp = () => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => {
  ctx.type = 'html';
  ctx.body = \`<!doctype html><meta name=viewport content="width=device-width"><title>evil</title><pre id=out></pre><script>
(async () => {
  const portal = new URLSearchParams(location.search).get('portal');
  const results = {};
  const attempt = async (name, run) => { try { results[name] = await run(); } catch (err) { results[name] = 'blocked: ' + err.name; } };
  await attempt('me', async () => (await fetch(portal + '/me', { credentials: 'include' })).text());
  await attempt('adminUsers', async () => (await fetch(portal + '/admin/users', { credentials: 'include' })).text());
  await attempt('promote', async () => {
    const r = await fetch(portal + '/admin/groups/admin/members', { method: 'POST', credentials: 'include', mode: 'no-cors',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'user=ea%40example.com&_csrf=guessed' });
    return 'sent:' + r.type;
  });
  document.cookie = 'atrium.sid=planted; path=/';
  results.cookies = document.cookie;
  document.getElementById('out').textContent = JSON.stringify(results);
  document.title = 'done';
})();
</script>\`;
});
export default app;
`;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  port = await freePort();
  PORTAL = `http://127.0.0.1:${port}`;
  portal = await startTestPortal({ port, env: { APPS_DIR: makeAppsDir({ 'ea/evil/index.js': hostileApp() }), PUBLIC_URL: PORTAL, APP_ORIGIN: `http://{tier}-{name}.apps.localhost:${port}` } });
});
afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

describe('a hostile app on its own origin, visited by an admin', () => {
  it('reads nothing of the portal and changes nothing', { timeout: 180_000 }, async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: NAVIGATION_TIMEOUT_MS });
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const evil = `http://ea-evil.apps.localhost:${port}/?portal=${encodeURIComponent(PORTAL)}`;
    await page.goto(evil, { timeout: NAVIGATION_TIMEOUT_MS });
    // The app origin sent us through the portal to sign in.
    await page.locator('input[name="email"]').fill('admin@example.com');
    await page.locator('input[name="password"]').fill(DEMO_PASSWORD);
    await page.locator('button[type="submit"]').first().click();
    await page.waitForFunction('document.title === "done"', undefined, { timeout: NAVIGATION_TIMEOUT_MS });
    expect(new URL(page.url()).host).toBe(`ea-evil.apps.localhost:${port}`);
    await page.screenshot({ path: `${SCREENSHOTS}app-origin-hostile.png` });
    const results = JSON.parse((await page.locator('#out').textContent()) ?? '{}');

    // The browser's same-origin policy: the portal's answers are not the app's to read.
    expect(results.me).toMatch(/^blocked: TypeError/);
    expect(results.adminUsers).toMatch(/^blocked: TypeError/);
    // The cookie it can see and set is its own origin's; the portal's is elsewhere and untouched.
    expect(results.cookies).not.toContain('atrium.app');
    // The forged post reached the portal and was refused: ea is still not an admin.
    expect(results.promote).toBe('sent:opaque');
    const eaId = (await portal.portal.admin.resolveUser('ea@example.com')).id;
    expect(portal.portal.access.grantFor(eaId).level).toBe('ea');

    // And the admin's portal session is intact: /me on the portal still names the admin.
    const me = await page.goto(`${PORTAL}/me`);
    expect(await me?.json()).toMatchObject({ email: 'admin@example.com', level: 'admin' });
  });
});
