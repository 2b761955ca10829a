import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { rawRequest } from './helpers/raw-http.ts';
import { startTlsProxy, type TlsProxy } from './helpers/tls-proxy.ts';

/**
 * Production's shape: TLS ends at a proxy, the portal listens on plain http, PUBLIC_URL is https.
 * Every cookie the portal and its embedded provider set on the way through a real sign-in must
 * then be Secure, though the hop to the portal is http. (tests/app-responses.test.ts covers the
 * same with an external provider; here the embedded one, whose https issuer needs real TLS.)
 *
 * The proxy's certificate is self-signed and made for this file, so this worker process (vitest
 * runs each file in its own) accepts unverified certificates: the portal's own calls to its
 * issuer and the test's requests both go through the proxy.
 */
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

let proxy: TlsProxy;
let portal: TestPortal;

beforeAll(async () => {
  const portalPort = await freePort();
  proxy = await startTlsProxy({ port: await freePort(), target: `http://127.0.0.1:${portalPort}` });
  portal = await startTestPortal({ port: portalPort, env: { PUBLIC_URL: proxy.origin } });
});
afterAll(async () => {
  await portal?.stopAll();
  await proxy?.close();
});

/** Signs in through the proxy as a browser would, keeping every response on the way. */
async function signInCollecting(agent: Agent, email: string): Promise<AgentResponse[]> {
  const seen = await agent.follow('/login?returnTo=/me', { Accept: 'text/html' });
  const action = /<form method="post" action="([^"]+)"/.exec(seen.at(-1)!.text)?.[1];
  if (!action) throw new Error(`no sign-in form: ${seen.at(-1)!.status} ${seen.at(-1)!.text.slice(0, 300)}`);
  const posted = await agent.request('POST', action.replace(/&amp;/g, '&'), { form: { email, password: DEMO_PASSWORD } });
  seen.push(posted);
  if (posted.location) seen.push(...(await agent.follow(posted.location)));
  return seen;
}

const attributes = (line: string) =>
  line
    .split(';')
    .slice(1)
    .map((a) => a.trim().toLowerCase());

describe('under an https PUBLIC_URL behind a TLS proxy', () => {
  // Secure by PUBLIC_URL, not by what the proxy says: some proxies send no X-Forwarded-Proto.
  for (const forwardsProto of [true, false]) {
    it(`marks every cookie of a real sign-in Secure, the session cookie __Host- (X-Forwarded-Proto ${forwardsProto ? 'sent' : 'not sent'})`, async () => {
      proxy.forwardsProto = forwardsProto;
      const agent = new Agent(proxy.origin);
      const responses = await signInCollecting(agent, 'ea@example.com');
      expect(responses.at(-1)!.url).toBe(`${proxy.origin}/me`);
      expect(responses.at(-1)!.json()).toMatchObject({ email: 'ea@example.com', level: 'ea' });

      const lines = responses.flatMap((r) => r.headers.getSetCookie());
      const names = new Set(lines.map((line) => line.slice(0, line.indexOf('='))));
      // Not vacuous: the portal's session and login transaction and the provider's own cookies are all here.
      for (const name of ['__Host-atrium.sid', '__Host-atrium.sid.sig', 'atrium.idp', 'atrium.idp.interaction']) expect(names, name).toContain(name);
      expect([...names].some((n) => n.startsWith('__Secure-atrium.auth.'))).toBe(true);
      for (const line of lines) expect(attributes(line), line).toContain('secure');
      expect([...names].filter((n) => n === 'atrium.sid')).toEqual([]);
    });
  }

  // Behind the proxy Koa believes X-Forwarded-Host (app.proxy): a signed-in app request naming
  // another host there is refused as any other, on the fast lane's way in too (portal/apps/fast-lane.ts).
  it('refuses a signed-in app request whose X-Forwarded-Host names a host it does not serve (421)', async () => {
    proxy.forwardsProto = true;
    const agent = new Agent(proxy.origin);
    await signInCollecting(agent, 'stable@example.com');
    const cookie = ['__Host-atrium.sid', '__Host-atrium.sid.sig'].map((name) => `${name}=${agent.cookie(name)?.value}`).join('; ');
    const direct = (headers: Record<string, string>) =>
      rawRequest(Number(new URL(portal.origin).port), '/apps/stable/welcome/', { headers: { host: new URL(proxy.origin).host, cookie, accept: 'application/json', ...headers } });
    expect((await direct({})).status).toBe(200);
    const res = await direct({ 'x-forwarded-host': 'evil.example' });
    expect(res.status).toBe(421);
    expect(res.json()).toMatchObject({ error: 'misdirected_request' });
  });
});
