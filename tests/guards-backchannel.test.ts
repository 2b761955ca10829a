import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../lib/free-port.ts';
import { Agent } from './helpers/agent.ts';
import { EXTERNAL_AUDIENCE, startExternalIdp, type ExternalIdp } from './helpers/external-idp.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * OpenID Back-Channel Logout from an external provider: a logout token naming only a user (`sub`)
 * ends every portal session of that user and no one else's; a token issued too long ago is
 * refused. The tokens are made by the provider itself (oidc-provider's own logout-token model,
 * signed with its own keys), never by the portal's code, so only the claim under test differs
 * from what a real provider sends.
 */
const JSON_ACCEPT = { Accept: 'application/json' };
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
let idp: ExternalIdp;
let portal: TestPortal;

beforeAll(async () => {
  const port = await freePort();
  idp = await startExternalIdp('generic', `http://127.0.0.1:${port}`);
  portal = await startTestPortal({
    port,
    env: {
      OIDC_ISSUER: idp.issuer,
      OIDC_CLIENT_ID: idp.clientId,
      OIDC_CLIENT_SECRET: idp.clientSecret,
      OIDC_AUDIENCE: EXTERNAL_AUDIENCE,
      OIDC_SCOPE: 'openid profile email offline_access access:stable access:ea',
    },
  });
});
afterAll(async () => {
  await portal?.stopAll();
  await idp?.close();
});

/** A browser signed in at the portal as one of the external provider's people. */
async function signedIn(account: string): Promise<Agent> {
  const agent = new Agent(portal.origin);
  const idpAgent = new Agent(new URL(idp.issuer).origin);
  const start = await agent.get('/login?returnTo=/me');
  const authorize = new URL(start.location!);
  authorize.searchParams.set('login_hint', account);
  let next: string | undefined = authorize.href;
  for (let hops = 0; next && hops < 15; hops++) {
    const answer = await (new URL(next).origin === portal.origin ? agent : idpAgent).get(next, { Accept: 'application/json, text/html' });
    next = answer.status >= 300 && answer.status < 400 ? answer.location : undefined;
  }
  expect(await isSignedIn(agent)).toBe(true);
  return agent;
}
const isSignedIn = async (agent: Agent) => (await agent.get('/me', JSON_ACCEPT)).status === 200;

/** A logout token for `sub` alone (no `sid`), made and signed by the external provider. */
async function logoutToken(sub: string, options: { issuedAt?: number } = {}): Promise<string> {
  const client = await idp.provider.Client.find(idp.clientId);
  if (!client) throw new Error('the external provider does not know the portal as a client');
  const token = new idp.provider.IdToken({ sub }, { client });
  Object.assign(token, { mask: { sub: null } }); // as the provider's own back-channel sender does
  token.set('events', { [BACKCHANNEL_EVENT]: {} });
  token.set('jti', randomUUID());
  if (options.issuedAt !== undefined) token.set('iat', options.issuedAt);
  return token.issue({ use: 'logout' });
}
const deliver = async (token: string) =>
  (await fetch(`${portal.origin}/auth/backchannel-logout`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ logout_token: token }) })).status;

describe('back-channel logout from an external provider', () => {
  it('a token naming only the user ends all of that user’s sessions and no one else’s', async () => {
    const laptop = await signedIn('ext-ea');
    const phone = await signedIn('ext-ea');
    const colleague = await signedIn('ext-devel');
    expect(await deliver(await logoutToken('ext-ea'))).toBe(200);
    expect(await isSignedIn(laptop)).toBe(false);
    expect(await isSignedIn(phone)).toBe(false);
    expect(await isSignedIn(colleague)).toBe(true);
  });

  it('refuses a token issued too long ago, and the session lives on', async () => {
    const agent = await signedIn('ext-ea');
    const tenMinutesAgo = Math.floor(Date.now() / 1000) - 600;
    expect(await deliver(await logoutToken('ext-ea', { issuedAt: tenMinutesAgo }))).toBe(400);
    expect(await isSignedIn(agent)).toBe(true);
    // The same token made now is accepted: only its age was wrong.
    expect(await deliver(await logoutToken('ext-ea'))).toBe(200);
    expect(await isSignedIn(agent)).toBe(false);
  });
});
