import { createRequire } from 'node:module';
import type { AxeResults } from 'axe-core';
import type { Page } from 'playwright-core';

/** axe-core 4 (the devDependency), injected into pages as a script of their own. */
export const AXE = createRequire(import.meta.url).resolve('axe-core');
declare const axe: { run(): Promise<AxeResults> };

/** Light and dark, desktop (1280×800) and phone (390×844): every page is checked in each. */
export const VARIANTS = [
  { scheme: 'light', width: 1280, height: 800 },
  { scheme: 'dark', width: 1280, height: 800 },
  { scheme: 'light', width: 390, height: 844 },
  { scheme: 'dark', width: 390, height: 844 },
] as const;
export type Variant = (typeof VARIANTS)[number];

/** axe-core's violations on the page as it is now, as one line each (injected once per document). */
export async function axeViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => typeof (globalThis as { axe?: unknown }).axe !== 'undefined'))) await page.addScriptTag({ path: AXE });
  const results = await page.evaluate(() => axe.run());
  return results.violations.map(
    (v) => `${v.id} (${v.impact}) ${v.help}: ${v.nodes.slice(0, 3).map((n) => `${JSON.stringify(n.target)} ${n.failureSummary ?? ''}`.replace(/\s+/g, ' ')).join(' | ')}`,
  );
}

/** How far the page scrolls sideways (0: it fits its viewport). */
export function sidewaysOverflow(page: Page): Promise<number> {
  return page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth') as Promise<number>;
}

/** Sets the viewport and colour scheme of one variant. */
export async function apply(page: Page, v: Variant): Promise<void> {
  await page.setViewportSize({ width: v.width, height: v.height });
  await page.emulateMedia({ colorScheme: v.scheme });
}

/**
 * Every variant of the page as it is now: axe's violations and sideways scrolling, each as a line
 * naming the page and variant; `[]` when it is clean. Leaves the page at light 1280.
 */
export async function auditPage(page: Page, name: string): Promise<string[]> {
  await page.waitForLoadState('load');
  const problems: string[] = [];
  for (const v of VARIANTS) {
    await apply(page, v);
    const label = `${name} [${v.scheme} ${v.width}]`;
    for (const line of await axeViolations(page)) problems.push(`${label}: ${line}`);
    const overflow = await sidewaysOverflow(page);
    if (overflow > 1) problems.push(`${label}: the page scrolls sideways by ${overflow}px`);
  }
  await apply(page, VARIANTS[0]);
  return problems;
}
