import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { waitInWords } from '../portal/idp/interactions.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { openSignInForm } from './helpers/sign-in-form.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * What a person sees around signing in and out (issue 13): a cancelled sign-in is not an access
 * refusal, a sign-out says so, a returning browser is told which app it signs in to, a wrong password
 * puts the cursor back in the password field, and a lockout says how long in plain words.
 */

let portal: TestPortal;

beforeAll(async () => {
  portal = await startTestPortal();
});
afterAll(async () => {
  await portal?.stopAll();
});

/** /login?returnTo=… followed to the embedded provider's sign-in page. */
async function signInPage(agent: Agent, returnTo: string): Promise<AgentResponse> {
  const page = (await agent.follow(`/login?returnTo=${encodeURIComponent(returnTo)}`)).at(-1)!;
  expect(page.status).toBe(200);
  expect(page.url).toContain('/idp/interaction/');
  return page;
}

/** POST /logout, then the provider's own confirmation form, as its page's script would submit it. */
async function signOut(agent: Agent): Promise<AgentResponse[]> {
  const out = await agent.request('POST', '/logout', { form: { _csrf: await agent.csrfToken() }, headers: { Origin: portal.origin } });
  expect(out.status).toBe(303);
  const confirm = await agent.get(out.location!);
  const xsrf = /name="xsrf" value="([^"]+)"/.exec(confirm.text)![1]!;
  const action = /action="([^"]+)"/.exec(confirm.text)![1]!;
  const done = await agent.request('POST', action, { form: { xsrf, logout: 'yes' } });
  expect(done.status).toBe(303);
  return agent.follow(done.location!);
}

describe('signing in and out', () => {
  it('cancelling at the sign-in page is a "sign-in cancelled" page with "Sign in again", not a 403', async () => {
    const agent = new Agent(portal.origin);
    const page = await signInPage(agent, '/apps/ea/notes/');
    const abort = /<a href="([^"]+\/abort)">Cancel<\/a>/.exec(page.text)![1]!;
    const cancelled = (await agent.follow(abort)).at(-1)!;
    expect(new URL(cancelled.url).pathname).toBe('/auth/callback');
    expect(cancelled.status).toBe(200);
    expect(cancelled.text).toContain('<h1>Sign-in cancelled</h1>');
    expect(cancelled.text).not.toContain('You do not have access');
    expect(cancelled.text).toContain(`<a class="button" href="/login?returnTo=${encodeURIComponent('/apps/ea/notes/')}">Sign in again</a>`);
    // "Sign in again" starts a fresh sign-in that lands where the first one was going.
    const again = await signInPage(agent, '/apps/ea/notes/');
    expect(again.text).toContain('<h1>Sign in to Atrium</h1>');
  });

  it('signing out ends on a "signed out" page, once', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const hops = await signOut(agent);
    expect(hops.map((h) => new URL(h.url).pathname)).toEqual(['/', '/signed-out']);
    const last = hops.at(-1)!;
    expect(last.status).toBe(200);
    expect(last.text).toContain('<h1>You are signed out</h1>');
    expect(last.text).toContain('<a class="button" href="/login">Sign in again</a>');
    // The next visit to / is the launcher again.
    const home = await agent.get('/');
    expect(home.status).toBe(200);
    expect(home.text).toContain('One sign-in, every internal app.');
  });

  it('a browser that signed in before is told which app it is signing in to; a stranger is not', async () => {
    const returning = new Agent(portal.origin);
    await returning.login('ea@example.com', DEMO_PASSWORD);
    await signOut(returning);
    const page = await signInPage(returning, '/apps/ea/notes/some/page');
    expect(page.text).toContain('<p class="continue" data-testid="continue-to">to continue to <strong>Notes</strong></p>');
    expect(page.text).toContain('<title>Sign in to continue to Notes · Atrium</title>');
    // Not for a path that names no app, nor for the launcher.
    expect((await signInPage(returning, '/apps/ea/no-such-app/')).text).not.toContain('to continue to');
    expect((await signInPage(returning, '/')).text).not.toContain('to continue to');

    const stranger = new Agent(portal.origin);
    expect((await signInPage(stranger, '/apps/ea/notes/')).text).not.toContain('to continue to');
  });

  it('after a wrong password the password field has the focus, the email kept', async () => {
    const agent = new Agent(portal.origin);
    const first = await signInPage(agent, '/');
    expect(first.text).toMatch(/<input type="email" name="email" value="" required autocomplete="username" autofocus>/);
    const form = await openSignInForm(agent);
    expect(await form.submit('ea@example.com', 'not the password')).toBe('refused');
    const page = form.last!.text;
    expect(page).toContain('That email and password do not match an active account.');
    expect(page).toMatch(/<input type="email" name="email" value="ea@example.com" required autocomplete="username">/);
    expect(page).toMatch(/<input type="password" name="password" required autocomplete="current-password" autofocus aria-describedby="signin-error">/);
  });

  it('a lockout says how long in plain words', async () => {
    const agent = new Agent(portal.origin);
    const form = await openSignInForm(agent);
    let outcome = await form.submit('stable@example.com', 'wrong');
    for (let i = 0; i < 20 && outcome !== 'throttled'; i++) outcome = await form.submit('stable@example.com', 'wrong');
    expect(outcome).toBe('throttled');
    expect(form.last!.text).toContain('Too many failed attempts. Try again in 15 minutes.');
    expect(form.last!.text).not.toContain('minute(s)');
  });

  it('words a wait in seconds or minutes, singular and plural', () => {
    expect(waitInWords(840)).toBe('14 minutes');
    expect(waitInWords(839)).toBe('14 minutes');
    expect(waitInWords(61)).toBe('2 minutes');
    expect(waitInWords(60)).toBe('1 minute');
    expect(waitInWords(59)).toBe('59 seconds');
    expect(waitInWords(1)).toBe('1 second');
    expect(waitInWords(0.2)).toBe('1 second');
  });

  it('serves a favicon at /assets/favicon.svg and /favicon.ico, linked from every page', async () => {
    const agent = new Agent(portal.origin);
    for (const path of ['/assets/favicon.svg', '/favicon.ico']) {
      const icon = await agent.get(path);
      expect(icon.status, path).toBe(200);
      expect(icon.headers.get('content-type'), path).toBe('image/svg+xml');
      expect(icon.text, path).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    }
    expect((await agent.get('/')).text).toContain('<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">');
    expect((await signInPage(agent, '/')).text).toContain('<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">');
  });
});
