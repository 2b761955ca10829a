import { createRequire } from 'node:module';
import type { AxeResults } from 'axe-core';
import { decodeJwt } from 'jose';
import type { Browser, BrowserContext, CDPSession, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../lib/free-port.ts';
import { launchChromium, NAVIGATION_TIMEOUT_MS, STEP_TIMEOUT_MS, text } from './helpers/browser.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * Issue 14 item 3, passkeys: added from /profile and used as the second step of the embedded
 * provider's sign-in, in Chromium with a virtual authenticator (DevTools WebAuthn domain). A forged
 * assertion (a flipped signature) and a replayed one (an old challenge) are refused.
 */
declare const window: any;
declare const navigator: any;
declare const axe: { run(): Promise<AxeResults> };
const AXE = createRequire(import.meta.url).resolve('axe-core');

/** axe-core's violations on the page as it is now, by rule and element, for a readable failure. */
async function violations(page: Page): Promise<string[]> {
  await page.addScriptTag({ path: AXE });
  const results = await page.evaluate(() => axe.run());
  return results.violations.flatMap((v) => v.nodes.map((n) => `${v.id}: ${n.target.join(' ')}`));
}

const PASSWORD = 'amber kettle orbit 41';
let portal: TestPortal;
let browser: Browser | undefined;
let origin: string;

beforeAll(async () => {
  // WebAuthn needs a domain as its relying party ID, not an IP address: the portal is localhost here.
  const port = await freePort();
  origin = `http://localhost:${port}`;
  portal = await startTestPortal({ port, env: { PUBLIC_URL: origin } });
  await portal.portal.admin.addLocalUser('cli:test', { email: 'keys@example.com', password: PASSWORD });
  browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  await browser?.close();
  await portal?.stopAll();
});

async function passwordSignIn(page: Page): Promise<void> {
  await page.goto('/login');
  await page.waitForURL((url) => url.pathname.startsWith('/idp/interaction/'));
  await page.getByLabel('Email').fill('keys@example.com');
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function sessionClaims(context: BrowserContext): Promise<Record<string, unknown>> {
  const sid = (await context.cookies()).find((c) => c.name === 'atrium.sid')!.value;
  const stored = await portal.portal.sessions.get(sid);
  return decodeJwt((stored!.data as { tokens: { id: string } }).tokens.id);
}

describe('passkeys in Chromium', () => {
  it('adds a passkey on /profile, signs in with it (amr hwk), and refuses forged and replayed assertions', { timeout: 300_000 }, async () => {
    const context = await browser!.newContext({ baseURL: origin });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(NAVIGATION_TIMEOUT_MS);
    const cdp: CDPSession = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });

    await passwordSignIn(page);
    await page.waitForURL(`${origin}/`);
    await page.goto('/profile');
    await page.locator('#passkey-password').fill(PASSWORD);
    await page.locator('#passkey-label').fill('Laptop key');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    // The first factor comes with recovery codes, shown once.
    const codes = await text(page.locator('[data-testid="passkey-recovery-codes"]'));
    expect(codes.split('\n')).toHaveLength(10);
    // The profile's sign-in security section and the authenticator-app set-up page pass axe-core.
    await page.goto('/profile');
    await page.locator('[data-testid="factor"]').first().waitFor();
    expect(await violations(page)).toEqual([]);
    await page.goto('/profile/factors/totp');
    expect(await violations(page)).toEqual([]);
    const stored = await portal.portal.database.db.selectFrom('user_factors').select(['kind', 'label', 'credential_id']).execute();
    expect(stored).toEqual([{ kind: 'passkey', label: 'Laptop key', credential_id: expect.stringMatching(/^[A-Za-z0-9_-]+$/) }]);

    // A new sign-in: the password, then the second step offers the passkey.
    await context.clearCookies();
    await passwordSignIn(page);
    await page.getByRole('button', { name: 'Use your passkey' }).waitFor();
    expect(await violations(page)).toEqual([]);
    const action = (await page.locator('#use-passkey').getAttribute('data-action'))!;
    const optionsUrl = (await page.locator('#use-passkey').getAttribute('data-options'))!;

    const attempts = await page.evaluate(
      async ({ optionsUrl, action }) => {
        const b64 = (s: string) => Uint8Array.from(window.atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4)), (c: string) => c.charCodeAt(0));
        const enc = (buf: ArrayBuffer | Uint8Array) => window.btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
        const post = async (url: string, body: unknown) => {
          const r = await window.fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body) });
          return { status: r.status, body: await r.json() };
        };
        const assertion = async () => {
          const options = (await post(optionsUrl, {})).body;
          const got = await navigator.credentials.get({ publicKey: { ...options, challenge: b64(options.challenge), allowCredentials: options.allowCredentials.map((c: any) => ({ ...c, id: b64(c.id) })) } });
          return {
            id: got.id,
            rawId: enc(got.rawId),
            type: got.type,
            clientExtensionResults: {},
            response: { clientDataJSON: enc(got.response.clientDataJSON), authenticatorData: enc(got.response.authenticatorData), signature: enc(got.response.signature), userHandle: got.response.userHandle ? enc(got.response.userHandle) : undefined },
          };
        };
        // A forged signature: one bit of it flipped.
        const first = await assertion();
        const signature = b64(first.response.signature);
        signature[signature.length - 1] = (signature[signature.length - 1] ?? 0) ^ 1;
        const forged = await post(action, { ...first, response: { ...first.response, signature: enc(signature) } });
        // A genuine assertion, but for a challenge already spent: a replay.
        const second = await assertion();
        await post(optionsUrl, {});
        const replayed = await post(action, second);
        // Not JSON of an assertion at all.
        await post(optionsUrl, {});
        const garbage = await post(action, { id: 42, response: 'nope' });
        return { forged, replayed, garbage };
      },
      { optionsUrl, action },
    );
    expect(attempts.forged).toMatchObject({ status: 400, body: { error: 'passkey_refused' } });
    expect(attempts.replayed).toMatchObject({ status: 400, body: { error: 'passkey_refused' } });
    expect(attempts.garbage).toMatchObject({ status: 400, body: { error: 'passkey_refused' } });
    expect((await context.cookies()).some((c) => c.name === 'atrium.sid')).toBe(false);

    // The real thing, by the page's own button.
    await page.getByRole('button', { name: 'Use your passkey' }).click();
    await page.waitForURL(`${origin}/`);
    const claims = await sessionClaims(context);
    expect(claims.amr).toEqual(['pwd', 'hwk']);
    const refusals = await portal.portal.database.db.selectFrom('audit_log').select('after').where('action', '=', 'session.second_factor_refused').where('target', '=', 'user:keys@example.com').execute();
    expect(refusals).toHaveLength(3);
    await context.close();
  });
});
