import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { DEMO_PASSWORD } from '../../lib/directory/demo.ts';
import { expect } from 'vitest';

/**
 * Debian's Chromium driven by playwright-core, as the browser tests use it. CI installs Chromium
 * (.ci/run); when it is missing the test fails, it never skips.
 */
export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
  // App origins in tests are *.apps.localhost names on the portal's loopback port.
  '--host-resolver-rules=MAP *.localhost 127.0.0.1',
];
export const SCREENSHOTS = fileURLToPath(new URL('../screenshots/', import.meta.url));
// Two shared cores: a cold Chromium plus the provider's scrypt can be slow.
export const STEP_TIMEOUT_MS = 30_000;
export const NAVIGATION_TIMEOUT_MS = 60_000;

/** Launches Chromium (playwright-core makes and removes a fresh profile itself). */
export async function launchChromium(): Promise<Browser> {
  expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: install it with "apt-get install -y chromium" (CI does, in .ci/run)`).toBe(true);
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: NAVIGATION_TIMEOUT_MS });
}

/** The trimmed text of the first match, once it is visible. */
export async function text(locator: Locator): Promise<string> {
  await locator.first().waitFor({ state: 'visible' });
  return (await locator.first().innerText()).trim();
}

export async function attr(locator: Locator, name: string): Promise<string | null> {
  await locator.first().waitFor({ state: 'attached' });
  return locator.first().getAttribute(name);
}

/** Signs a page in through the embedded provider's form, as a person does; it lands on the launcher. */
export async function signInOnPage(page: Page, origin: string, email: string, password = DEMO_PASSWORD): Promise<void> {
  await page.goto('/login');
  await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${origin}/`);
}
