import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { AxeResults } from 'axe-core';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { launchChromium, NAVIGATION_TIMEOUT_MS, SCREENSHOTS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { EXTERNAL_AUDIENCE, startExternalIdp, type ExternalIdp } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * The sign-in chooser in Chromium: with the corporate provider (Keycloak-shaped, on its own port,
 * signing in its `ext-ea` without a form) and local accounts side by side, a visitor who opens an
 * app is asked how to sign in, on a page axe-core finds nothing wrong with, and either way ends up
 * in the app, with JavaScript off.
 */
const AXE = createRequire(import.meta.url).resolve('axe-core');
declare const axe: { run(): Promise<AxeResults> };

let portal: TestPortal;
let idp: ExternalIdp;
let browser: Browser | undefined;

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const port = await freePort();
  idp = await startExternalIdp('keycloak', `http://127.0.0.1:${port}`);
  const providers = [
    { id: 'corp', title: 'Corporate SSO', issuer: idp.issuer, clientId: idp.clientId, clientSecret: idp.clientSecret, audience: EXTERNAL_AUDIENCE, accessClaim: 'realm_access.roles' },
    { id: 'local', title: 'Local account', embedded: true },
  ];
  portal = await startTestPortal({ port, env: { APPS_DIR: makeAppsDir({ 'ea/notes/index.js': koaAppSource('notes') }), PROVIDERS: JSON.stringify(providers) } });
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
  await idp?.close();
});

async function page(javaScriptEnabled: boolean) {
  const context = await browser!.newContext({ baseURL: portal.origin, javaScriptEnabled, bypassCSP: true });
  const p = await context.newPage();
  p.setDefaultTimeout(STEP_TIMEOUT_MS);
  p.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
  return { context, page: p };
}

describe('the sign-in chooser in Chromium', () => {
  it('is accessible: one heading, a link per provider named by it, no axe violation', async () => {
    const { context, page: p } = await page(true);
    try {
      await p.goto('/apps/ea/notes/');
      expect(new URL(p.url()).pathname).toBe('/login');
      expect(await text(p.getByRole('heading', { level: 1 }))).toBe('Sign in to Atrium');
      await expect(p.getByRole('link', { name: 'Sign in with Corporate SSO' }).count()).resolves.toBe(1);
      await expect(p.getByRole('link', { name: 'Sign in with Local account' }).count()).resolves.toBe(1);
      await p.addScriptTag({ path: AXE });
      const results = await p.evaluate(() => axe.run());
      expect(results.violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
      // The keyboard reaches the first choice right after the skip link and the brand's home link.
      for (let i = 0; i < 3; i++) await p.keyboard.press('Tab');
      expect(await text(p.locator(':focus'))).toBe('Sign in with Corporate SSO');
      await p.screenshot({ path: `${SCREENSHOTS}provider-chooser.png`, fullPage: true });
    } finally {
      await context.close();
    }
  });

  it('signs in with the external provider, without JavaScript, and lands in the app', async () => {
    const { context, page: p } = await page(false);
    try {
      await p.goto('/apps/ea/notes/');
      await p.getByRole('link', { name: 'Sign in with Corporate SSO' }).click();
      await p.waitForURL(`${portal.origin}/apps/ea/notes/`);
      expect(JSON.parse(await p.locator('body').innerText())).toMatchObject({ app: 'notes', user: 'ext.ea@corp.example' });
    } finally {
      await context.close();
    }
  });

  it('signs in with a local account through the same chooser, without JavaScript', async () => {
    const { context, page: p } = await page(false);
    try {
      await p.goto('/apps/ea/notes/');
      await p.getByRole('link', { name: 'Sign in with Local account' }).click();
      await p.getByLabel('Email').fill('ea@example.com');
      await p.getByLabel('Password').fill(DEMO_PASSWORD);
      await p.getByRole('button', { name: /sign in/i }).click();
      await p.waitForURL(`${portal.origin}/apps/ea/notes/`);
      expect(JSON.parse(await p.locator('body').innerText())).toMatchObject({ app: 'notes', user: 'ea@example.com' });
    } finally {
      await context.close();
    }
  });
});
