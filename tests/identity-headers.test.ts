import { createServer } from 'node:http';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import WebSocket, { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AtriumUser } from '../lib/app-kit.ts';
import { DirectoryAdmin } from '../lib/directory/admin.ts';
import { AuditLog } from '../lib/directory/audit.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { clientMayNotSend } from '../portal/apps/client-headers.ts';
import { IDENTITY_BUDGET, SUBJECT_TOO_LONG, UpstreamIdentities, upstreamIdentity } from '../portal/apps/identity-headers.ts';
import { Agent } from './helpers/agent.ts';
import { makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { rawRequest, rawUpgrade } from './helpers/raw-http.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { listenOnLoopback, startEchoUpstream } from './helpers/upstream.ts';

/**
 * What an upstream app learns about its user, and only that: the portal's X-Atrium-* headers
 * (exact when they can be, bounded however many groups the user is in) and its own forwarding
 * headers, never another proxy's identity headers a client made up.
 */

/** An upstream that echoes the headers it got, over HTTP and as a websocket's first message; it keeps each upgrade's headers. */
async function startHeaderEcho() {
  const upgrades: Record<string, string | string[] | undefined>[] = [];
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket, req) => {
    upgrades.push(req.headers);
    socket.send(JSON.stringify(req.headers));
  });
  return { ...(await listenOnLoopback(server, wss)), upgrades };
}

const JSON_ACCEPT = { Accept: 'application/json' };
/** Group names of the length the issue saw: 17 characters, ~440 of them fill 8 KB. */
const teamGroup = (i: number) => `team-${String(i).padStart(4, '0')}-members`;
const GROUP_COUNT = 1_000;
const MANIFEST_GROUP = teamGroup(500);
const MANY_PASSWORD = 'many-groups-password';

let echo: Awaited<ReturnType<typeof startEchoUpstream>>;
let headerEcho: Awaited<ReturnType<typeof startHeaderEcho>>;
let portal: TestPortal;
let ea: Agent;

beforeAll(async () => {
  echo = await startEchoUpstream();
  headerEcho = await startHeaderEcho();
  const apps = makeAppsDir({
    'ea/echo/app.json': JSON.stringify({ title: 'Echo', upstream: echo.url }),
    'ea/team/app.json': JSON.stringify({ title: 'Team', upstream: echo.url, groups: [MANIFEST_GROUP] }),
    'ea/headers/app.json': JSON.stringify({ title: 'Headers', upstream: headerEcho.url }),
    'stable/plain/app.json': JSON.stringify({ title: 'Plain', upstream: echo.url }),
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  ea = new Agent(portal.origin);
  await ea.login('ea@example.com', DEMO_PASSWORD);
});
afterAll(async () => {
  await portal?.stopAll();
  await echo?.close();
  await headerEcho?.close();
});

/**
 * Headers other proxies set for the app behind them, which that app believes: identities, groups,
 * tokens, client addresses and certificates, rewritten URLs. Written from each proxy's own
 * documentation (not from portal/apps/client-headers.ts), so a name the portal forgets shows up here.
 */
const PROXIES_SET: Record<string, readonly string[]> = {
  // oauth2-proxy: --pass-user-headers, --pass-access-token, --set-xauthrequest; GAP-Auth.
  'oauth2-proxy': ['X-Forwarded-User', 'X-Forwarded-Email', 'X-Forwarded-Groups', 'X-Forwarded-Preferred-Username', 'X-Forwarded-Access-Token', 'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Auth-Request-Groups', 'X-Auth-Request-Preferred-Username', 'X-Auth-Request-Access-Token', 'GAP-Auth'],
  Authelia: ['Remote-User', 'Remote-Groups', 'Remote-Email', 'Remote-Name'],
  'Apache and CGI set-ups': ['X-Remote-User', 'X-Remote-Group'],
  'Grafana auth proxy': ['X-WEBAUTH-USER', 'X-WEBAUTH-EMAIL', 'X-WEBAUTH-NAME', 'X-WEBAUTH-ROLE'],
  authentik: ['X-authentik-username', 'X-authentik-groups', 'X-authentik-email', 'X-authentik-name', 'X-authentik-uid', 'X-authentik-jwt'],
  Pomerium: ['X-Pomerium-Jwt-Assertion', 'X-Pomerium-Claim-Email', 'X-Pomerium-Claim-Groups'],
  'Cloudflare Access': ['Cf-Access-Authenticated-User-Email', 'Cf-Access-Jwt-Assertion', 'CF-Connecting-IP'],
  'Google IAP': ['X-Goog-Authenticated-User-Email', 'X-Goog-Authenticated-User-Id', 'X-Goog-IAP-JWT-Assertion'],
  'AWS ALB': ['X-Amzn-Oidc-Accesstoken', 'X-Amzn-Oidc-Identity', 'X-Amzn-Oidc-Data', 'X-Amzn-Mtls-Clientcert', 'X-Amzn-Mtls-Clientcert-Subject', 'X-Amzn-Mtls-Clientcert-Issuer', 'X-Amzn-Mtls-Clientcert-Serial-Number', 'X-Amzn-Mtls-Clientcert-Validity', 'X-Amzn-Mtls-Clientcert-Leaf'],
  'Azure App Service': ['X-MS-CLIENT-PRINCIPAL', 'X-MS-CLIENT-PRINCIPAL-ID', 'X-MS-CLIENT-PRINCIPAL-NAME', 'X-MS-CLIENT-PRINCIPAL-IDP', 'X-MS-TOKEN-AAD-ACCESS-TOKEN', 'X-MS-TOKEN-AAD-ID-TOKEN', 'X-ARR-ClientCert'],
  'Keycloak Gatekeeper / Louketo Proxy': ['X-Auth-Username', 'X-Auth-Email', 'X-Auth-Groups', 'X-Auth-Roles', 'X-Auth-Subject', 'X-Auth-Userid', 'X-Auth-Token', 'X-Auth-ExpiresIn'],
  Kong: ['X-Consumer-ID', 'X-Consumer-Custom-ID', 'X-Consumer-Username', 'X-Consumer-Groups', 'X-Credential-Identifier', 'X-Credential-Username', 'X-Anonymous-Consumer', 'X-Authenticated-Scope', 'X-Authenticated-Userid', 'X-Authenticated-Groups', 'X-Userinfo', 'X-Access-Token', 'X-ID-Token'],
  'Vouch Proxy': ['X-Vouch-User', 'X-Vouch-Success', 'X-Vouch-IdP-Claims-Email', 'X-Vouch-IdP-Claims-Groups', 'X-Vouch-IdP-AccessToken', 'X-Vouch-IdP-IdToken'],
  'Squid and ICAP': ['X-Authenticated-User'],
  'nginx auth_request and forward-auth examples': ['X-User', 'X-Email', 'X-Username'],
  mod_auth_openidc: ['OIDC_CLAIM_email', 'OIDC_CLAIM_sub', 'OIDC_access_token', 'OIDC_id_token'],
  // nginx ($ssl_client_*), HAProxy, Apache (SSL_CLIENT_*), Envoy (XFCC), Traefik, Google Cloud load balancing.
  'mutual TLS': ['X-SSL-Client-Cert', 'X-SSL-Client-Verify', 'X-SSL-Client-S-DN', 'X-SSL-Client-DN', 'X-SSL-Client-CN', 'X-SSL', 'X-Client-Cert', 'X-Client-Verify', 'X-Client-DN', 'SSL-Client-Cert', 'SSL_CLIENT_S_DN', 'SSL_CLIENT_VERIFY', 'X-Forwarded-Client-Cert', 'X-Forwarded-Tls-Client-Cert', 'X-Forwarded-Tls-Client-Cert-Info', 'X-Client-Cert-Present', 'X-Client-Cert-Chain-Verified', 'X-Client-Cert-Hash'],
  'addresses and forwarding': ['Forwarded', 'X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'X-Forwarded-Port', 'X-Forwarded-Prefix', 'X-Forwarded-Server', 'X-Forwarded-Ssl', 'X-Forwarded-Uri', 'X-Real-IP', 'X-Client-IP', 'True-Client-IP', 'X-Cluster-Client-IP'],
  // IIS and ASP.NET rewrites: they would route the app to another path than the gate saw.
  rewrites: ['X-Original-URL', 'X-Original-URI', 'X-Original-Host', 'X-Original-Method', 'X-Rewrite-URL'],
  credentials: ['Authorization', 'Proxy-Authorization'],
  'the portal’s own': ['X-Atrium-User', 'X-Atrium-Email', 'X-Atrium-Name', 'X-Atrium-Level', 'X-Atrium-Groups', 'X-Atrium-Groups-Omitted', 'X-Atrium-Profile', 'X-Atrium-Encoded', 'X-Atrium-Omitted', 'X-Atrium-Assertion', 'X-Atrium-Anything'],
};
const ALL_NAMES = Object.values(PROXIES_SET).flat();
/** What a client writes in each of them: never in anything the upstream receives. */
const SPOOF = 'spoofed-by-the-client';
/** Servers fold `X_Forwarded_User` and `X.Forwarded.User` into `X-Forwarded-User` (CGI, WSGI, Rack). */
const spell = (name: string, i: number) => [name, name.replace(/-/g, '_'), name.replace(/-/g, '.')][i % 3] as string;
/** Every name once, in turn in each spelling. (Authorization would make the request a bearer call: it is checked below, not sent.) */
const FOREIGN: Record<string, string> = Object.fromEntries(ALL_NAMES.filter((n) => n !== 'Authorization').map((name, i) => [spell(name, i), SPOOF]));
/** Headers of no proxy's: they pass. */
const HARMLESS = { 'X-Request-Id': 'req-1', 'X-Forwarded': 'not a prefix', 'X-Custom-User-Agent-Hint': 'ok', 'X-Email-Client': 'ok', 'X-Users-Online': 'ok' };

const canonical = (name: string) => name.toLowerCase().replace(/[_.]/g, '-');
const FOREIGN_NAMES = new Set(ALL_NAMES.map(canonical));
/** What the portal itself sets under those names, and the values it sets. */
const portalForwarding = () => ({ 'x-forwarded-for': '127.0.0.1', 'x-forwarded-host': new URL(portal.origin).host, 'x-forwarded-proto': 'http', 'x-forwarded-prefix': '/apps/ea/headers' });

function expectNoForeignHeaders(received: Record<string, string>, what: string): void {
  const own = portalForwarding();
  for (const [name, value] of Object.entries(received)) {
    expect(value, `${what}: ${name} carries the client's value`).not.toContain(SPOOF);
    const key = canonical(name);
    if (key in own) expect(value, `${what}: ${name}`).toBe(own[key as keyof typeof own]);
    else if (key === 'x-atrium-level') expect(value, what).toBe('ea');
    else if (key === 'x-atrium-groups') expect(value, what).toBe('ea,stable');
    else if (key.startsWith('x-atrium-')) expect(name, `${what}: the portal's own, under its own spelling`).toBe(key);
    else expect(FOREIGN_NAMES.has(key), `${what}: ${name} reached the upstream`).toBe(false);
  }
  for (const name of Object.keys(HARMLESS)) expect(received[name.toLowerCase()], `${what}: ${name}`).toBeDefined();
  // Each of the portal's own arrives once, under its own spelling only.
  for (const name of ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-atrium-level', 'x-atrium-user', 'x-atrium-assertion']) {
    expect(Object.keys(received).filter((k) => canonical(k) === name), `${what}: ${name}`).toEqual([name]);
  }
}

describe('other proxies’ identity headers', () => {
  it('are all refused by name, in every spelling', () => {
    const missed = ALL_NAMES.flatMap((name) => [0, 1, 2].map((i) => spell(name, i).toLowerCase())).filter((name) => !clientMayNotSend(name));
    expect(missed).toEqual([]);
    for (const name of Object.keys(HARMLESS)) expect(clientMayNotSend(name.toLowerCase()), name).toBe(false);
  });

  it('never reach an upstream over HTTP, in any spelling', async () => {
    const r = await ea.get('/apps/ea/headers/', { ...JSON_ACCEPT, ...FOREIGN, ...HARMLESS });
    expect(r.status).toBe(200);
    expectNoForeignHeaders(r.json(), 'HTTP');
  });

  it('never reach an upstream through a websocket upgrade either', async () => {
    const ws = new WebSocket(`${portal.origin.replace('http', 'ws')}/apps/ea/headers/socket`, { headers: { Cookie: cookieHeader(ea), ...FOREIGN, ...HARMLESS } });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (data) => resolve(data.toString()));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    ws.close();
    expectNoForeignHeaders(JSON.parse(first), 'websocket');
  });
});

describe('identity header values', () => {
  it('arrive exactly as they are when they are visible ASCII: e-mail and subject unencoded', async () => {
    // A subject in Auth0's shape, and a name that needs encoding, on a real account.
    const { db } = portal.portal.database;
    await db.updateTable('users').set({ sub: 'auth0|abc', name: 'Zoë Ünïcode' }).where('email', '=', 'devel@example.com').execute();
    await portal.portal.watcher.refresh();
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    const { headers } = (await agent.get('/apps/ea/echo/', JSON_ACCEPT)).json();
    expect(headers['x-atrium-user']).toBe('auth0|abc');
    expect(headers['x-atrium-email']).toBe('devel@example.com');
    // Names stay percent-encoded, as the README has always said.
    expect(headers['x-atrium-name']).toBe('Zo%C3%AB%20%C3%9Cn%C3%AFcode');
    expect(headers['x-atrium-encoded']).toBeUndefined();
    // The same for the demo account the issue saw.
    const mine = (await ea.get('/apps/ea/echo/', JSON_ACCEPT)).json().headers;
    expect(mine['x-atrium-email']).toBe('ea@example.com');
  });

  const user = (changes: Partial<AtriumUser>): AtriumUser => ({ sub: 'auth0|abc', email: 'devel@example.com', name: 'Devel', picture: null, level: 'devel', groups: ['devel', 'ea', 'stable'], profile: {}, ...changes });

  it('encode only what a header cannot carry as is, and say so in X-Atrium-Encoded', () => {
    const plain = upstreamIdentity(user({}), []).headers;
    expect(plain).toMatchObject({ 'x-atrium-user': 'auth0|abc', 'x-atrium-email': 'devel@example.com', 'x-atrium-name': 'Devel', 'x-atrium-groups': 'devel,ea,stable' });
    expect(plain['x-atrium-encoded']).toBeUndefined();
    // '%' is visible ASCII, but a value sent as is never holds one: it is encoded, and marked.
    expect(upstreamIdentity(user({ email: 'a%40b@example.com' }), []).headers).toMatchObject({ 'x-atrium-email': 'a%2540b%40example.com', 'x-atrium-encoded': 'email' });
    expect(upstreamIdentity(user({ sub: 'auth0|100%' }), []).headers).toMatchObject({ 'x-atrium-user': 'auth0%7C100%25', 'x-atrium-encoded': 'user' });
    const unicode = upstreamIdentity(user({ email: 'jörg@exämple.com', sub: 'with space' }), []).headers;
    expect(unicode).toMatchObject({ 'x-atrium-email': 'j%C3%B6rg%40ex%C3%A4mple.com', 'x-atrium-user': 'with%20space', 'x-atrium-encoded': 'user, email' });
    // A line break is never a header injection: it is encoded like anything else a header cannot hold.
    expect(upstreamIdentity(user({ sub: 'x\r\nX-Atrium-Level: admin' }), []).headers['x-atrium-user']).toBe('x%0D%0AX-Atrium-Level%3A%20admin');
  });

  it('read right by an upstream that decodes every value (the old contract) as by one that decodes what X-Atrium-Encoded names', () => {
    // `alice%40corp.example@evil.example` sent as is would read `alice@corp.example@evil.example` to the first.
    const values = ['alice%40corp.example@evil.example', 'a%40b@example.com', '100%', '%zz@example.com', 'plain@example.com', 'auth0|abc', 'jörg@exämple.com', 'with space'];
    for (const value of values) {
      const { headers } = upstreamIdentity(user({ sub: value, email: value }), []);
      const named = new Set((headers['x-atrium-encoded'] ?? '').split(',').map((s) => s.trim()));
      for (const [field, header] of [['user', 'x-atrium-user'], ['email', 'x-atrium-email']] as const) {
        const sent = headers[header] as string;
        expect(decodeURIComponent(sent), `${value}: ${field} decoded always`).toBe(value);
        expect(named.has(field) ? decodeURIComponent(sent) : sent, `${value}: ${field} decoded when named`).toBe(value);
        if (!named.has(field)) expect(sent, `${value}: ${field} sent as is`).not.toContain('%');
      }
    }
  });

  it('always carry the subject, in the headers and the assertion; one no header can carry refuses the request', () => {
    const longest = 'a'.repeat(IDENTITY_BUDGET.scalarBytes);
    const kept = upstreamIdentity(user({ sub: longest }), []);
    expect(kept.headers['x-atrium-user']).toBe(longest);
    expect(kept.claims.sub).toBe(longest);
    expect(kept.headers['x-atrium-omitted']).toBeUndefined();
    // Its JSON is longer than its header (control characters): still in the assertion.
    const controls = '\u0001'.repeat(IDENTITY_BUDGET.scalarBytes / 3);
    expect(upstreamIdentity(user({ sub: controls }), []).claims.sub).toBe(controls);
    for (const sub of ['a'.repeat(IDENTITY_BUDGET.scalarBytes + 1), 'ü'.repeat(IDENTITY_BUDGET.scalarBytes / 4)]) {
      expect(() => upstreamIdentity(user({ sub }), [])).toThrow(expect.objectContaining({ status: 400, code: SUBJECT_TOO_LONG }));
      expect(() => new UpstreamIdentities().of(user({ sub }), '/apps/ea/echo', [])).toThrow(expect.objectContaining({ status: 400, code: SUBJECT_TOO_LONG }));
    }
  });

  it('list the manifest’s groups first, then the level groups, then the rest, each in the user’s order', () => {
    const groups = ['zeta', 'stable', 'team-b', 'ea', 'team-a', 'alpha'];
    expect(upstreamIdentity(user({ groups }), ['team-a', 'team-b']).headers['x-atrium-groups']).toBe('team-b,team-a,stable,ea,zeta,alpha');
    expect(upstreamIdentity(user({ groups }), []).claims.groups).toEqual(['stable', 'ea', 'zeta', 'team-b', 'team-a', 'alpha']);
    // A manifest group the user is not in is not invented.
    expect(upstreamIdentity(user({ groups }), ['other']).headers['x-atrium-groups']).toBe('stable,ea,zeta,team-b,team-a,alpha');
  });

  it('are computed once per user and app, not per request', () => {
    const identities = new UpstreamIdentities();
    // The directory's frozen groups array, the profile cache's object, the app's manifest list.
    const groups = Object.freeze(['ea', 'stable']);
    const profile = Object.freeze({});
    const manifest = Object.freeze([]);
    const first = identities.of(user({ groups, profile }), '/apps/ea/echo', manifest);
    // A new request brings a new user object, holding the same groups array and profile.
    expect(identities.of(user({ groups, profile }), '/apps/ea/echo', manifest)).toBe(first);
    // Anything that changes (a group, a name, the manifest) is seen at the next request.
    const regrouped = identities.of(user({ groups: Object.freeze(['ea']), profile }), '/apps/ea/echo', manifest);
    expect(regrouped).not.toBe(first);
    expect(regrouped.headers['x-atrium-groups']).toBe('ea');
    expect(identities.of(user({ groups, profile, name: 'Renamed' }), '/apps/ea/echo', manifest).headers['x-atrium-name']).toBe('Renamed');
    // The manifest's groups come first.
    expect(identities.of(user({ groups, profile }), '/apps/ea/echo', Object.freeze(['stable'])).headers['x-atrium-groups']).toBe('stable,ea');
  });

  it('stay the same for a profile that is a new object with the same content, and change with the content', () => {
    const identities = new UpstreamIdentities();
    const groups = Object.freeze(['ea', 'stable']);
    const manifest = Object.freeze([]);
    const first = identities.of(user({ groups, profile: { team: 'blue' } }), '/apps/ea/echo', manifest);
    // A bearer request's profile, the profile cache's re-read row, a session's own copy: equal, not identical.
    expect(identities.of(user({ groups, profile: { team: 'blue' } }), '/apps/ea/echo', manifest)).toBe(first);
    expect(identities.of(user({ groups, profile: {} }), '/apps/ea/echo', manifest)).not.toBe(first);
    const renamed = identities.of(user({ groups, profile: { team: 'red' } }), '/apps/ea/echo', manifest);
    expect(JSON.parse(Buffer.from(renamed.headers['x-atrium-profile'] as string, 'base64url').toString())).toEqual({ team: 'red' });
  });

  it('leave out what would not fit a header, and name it in X-Atrium-Omitted', () => {
    const big = upstreamIdentity(user({ name: 'N'.repeat(5_000), profile: { notes: 'x'.repeat(10_000) } }), []);
    expect(big.headers['x-atrium-name']).toBeUndefined();
    expect(big.headers['x-atrium-profile']).toBeUndefined();
    expect(big.headers['x-atrium-omitted']).toBe('name, profile');
    expect(big.claims.name).toBeUndefined();
    expect(big.headers['x-atrium-email']).toBe('devel@example.com');
    expect(big.claims.sub).toBe('auth0|abc');
  });
});

const port = () => Number(new URL(portal.origin).port);
const assertionOf = (r: { json(): any }) => (r.json().headers as Record<string, string>)['x-atrium-assertion'] as string;

describe('a subject longer than a header can carry', () => {
  it('refuses the request to an upstream (400 subject_too_long), over HTTP and websockets, rather than send nobody', async () => {
    const { db } = portal.portal.database;
    const longSub = 'ü'.repeat(200); // 1,200 bytes percent-encoded
    await db.updateTable('users').set({ sub: longSub }).where('email', '=', 'admin@example.com').execute();
    await portal.portal.watcher.refresh();
    const agent = new Agent(portal.origin);
    await agent.login('admin@example.com', DEMO_PASSWORD);
    const r = await agent.get('/apps/ea/echo/', JSON_ACCEPT);
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ error: SUBJECT_TOO_LONG });
    const upgrade = await rawUpgrade(port(), '/apps/ea/headers/socket', { Cookie: cookieHeader(agent) });
    expect(upgrade.status).toBe(400);
    expect(upgrade.json()).toMatchObject({ error: SUBJECT_TOO_LONG });
    // The portal itself still serves such a user.
    expect((await agent.get('/me', JSON_ACCEPT)).status).toBeLessThan(400);
  });
});

describe('the client’s Connection header', () => {
  const LISTING = 'Upgrade, X-Atrium-Assertion, X-Atrium-Encoded, X-Atrium-Groups-Omitted, X-Atrium-User, Keep-Alive, X-Request-Id';

  it('cannot make a websocket upgrade carry more than `Connection: Upgrade`, nor take the identity headers with it', async () => {
    const before = headerEcho.upgrades.length;
    const r = await rawUpgrade(port(), '/apps/ea/headers/socket', { Cookie: cookieHeader(ea), Connection: LISTING, 'Keep-Alive': 'timeout=5', 'X-Request-Id': 'req-1' });
    expect(r.status).toBe(101);
    const received = headerEcho.upgrades[before] as Record<string, string>;
    expect(received.connection).toBe('Upgrade');
    expect(received.upgrade).toBe('websocket');
    expect(received['x-atrium-assertion']).toMatch(/^eyJ/);
    expect(received['x-atrium-user']).toEqual(expect.stringMatching(/.+/));
    expect(received).toMatchObject({ 'x-atrium-level': 'ea', 'x-atrium-email': 'ea@example.com' });
    // What the client named is its own hop's: gone, as Keep-Alive.
    expect(received['x-request-id']).toBeUndefined();
    expect(received['keep-alive']).toBeUndefined();
  });

  it('is not passed on over HTTP either, nor what it names', async () => {
    const r = await rawRequest(port(), '/apps/ea/headers/', { headers: { Cookie: cookieHeader(ea), ...JSON_ACCEPT, Connection: LISTING, 'X-Request-Id': 'req-1' } });
    expect(r.status).toBe(200);
    const received = r.json() as Record<string, string>;
    // The portal's own hop: a kept-alive upstream connection, whatever the client's said.
    expect(received.connection).toBe('keep-alive');
    expect(received['x-atrium-assertion']).toMatch(/^eyJ/);
    expect(received['x-atrium-level']).toBe('ea');
    expect(received['x-request-id']).toBeUndefined();
    expect(received['keep-alive']).toBeUndefined();
  });
});

describe('the assertion an upstream gets', () => {
  /** The embedded provider's access token behind a browser's session, used as a bearer token. */
  const bearerOf = async (agent: Agent): Promise<string> => {
    const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', agent.cookie('atrium.sid')!.value).executeTakeFirstOrThrow();
    return (JSON.parse(row.data) as { tokens: { access: string } }).tokens.access;
  };
  const viaBearer = (token: string) => rawRequest(port(), '/apps/stable/plain/', { headers: { Authorization: `Bearer ${token}`, ...JSON_ACCEPT } });

  it('is signed once and reused while it lives, for bearer calls as for cookie sessions; a demotion changes it at once', async () => {
    const cookieAssertions = new Set<string>();
    for (let i = 0; i < 5; i++) cookieAssertions.add(assertionOf(await ea.get('/apps/stable/plain/', JSON_ACCEPT)));
    expect(cookieAssertions.size).toBe(1);

    const token = await bearerOf(ea);
    const bearerAssertions: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await viaBearer(token);
      expect(r.status).toBe(200);
      bearerAssertions.push(assertionOf(r));
    }
    expect(new Set(bearerAssertions).size).toBe(1);
    expect(decodeJwt(bearerAssertions[0] as string)).toMatchObject({ sub: expect.any(String), level: 'ea' });

    const { admin } = portal.portal;
    await admin.addMember('test', 'stable', 'ea@example.com');
    await admin.removeMember('test', 'ea', 'ea@example.com');
    try {
      const demoted = await viaBearer(token);
      expect(demoted.status).toBe(200);
      expect(demoted.json().headers['x-atrium-level']).toBe('stable');
      expect(assertionOf(demoted)).not.toBe(bearerAssertions[0]);
      expect(decodeJwt(assertionOf(demoted))).toMatchObject({ level: 'stable', groups: ['stable'] });
    } finally {
      await admin.addMember('test', 'ea', 'ea@example.com');
      await admin.removeMember('test', 'stable', 'ea@example.com');
    }
  });
});

describe(`a user in ${GROUP_COUNT} groups`, () => {
  let many: Agent;
  let groupCount: number;
  /** The user's groups as the directory holds them, in its order. */
  let userGroups: readonly string[];

  beforeAll(async () => {
    const { database, users, groups, sessions } = portal.portal;
    // The directory's write path, without a directory reload after each of the 2,000 writes: one at the end.
    const admin = new DirectoryAdmin({ database, users, groups, audit: new AuditLog(database), sessions });
    const member = await admin.addLocalUser('test', { email: 'many@example.com', name: 'Many Groups', password: MANY_PASSWORD });
    await admin.addMember('test', 'ea', member.id);
    for (let i = 1; i <= GROUP_COUNT; i++) {
      await admin.createGroup('test', { name: teamGroup(i) });
      await admin.addMember('test', teamGroup(i), member.id);
    }
    await portal.portal.watcher.refresh();
    userGroups = portal.portal.access.grantFor(member.id).groups;
    groupCount = userGroups.length;
    expect(groupCount).toBe(GROUP_COUNT + 2); // and ea, stable
    many = new Agent(portal.origin);
    await many.login('many@example.com', MANY_PASSWORD);
  }, 120_000);

  const jwks = async () => createLocalJWKSet((await (await fetch(`${portal.origin}/.well-known/atrium/jwks.json`)).json()) as JSONWebKeySet);

  it('reaches a Node upstream with every header and the assertion within 8 KB, and says how many groups were left out', async () => {
    const r = await many.get('/apps/ea/echo/', JSON_ACCEPT);
    expect(r.status).toBe(200);
    const { headers } = r.json() as { headers: Record<string, string> };
    for (const [name, value] of Object.entries(headers)) expect(Buffer.byteLength(value), name).toBeLessThanOrEqual(8 * 1024);
    const listed = headers['x-atrium-groups']!.split(',');
    expect(Buffer.byteLength(headers['x-atrium-groups']!)).toBeLessThanOrEqual(IDENTITY_BUDGET.groupsBytes);
    // The level groups come first (in the user's order); then the rest in the user's order, as many as fit.
    const levels: readonly string[] = userGroups.filter((g) => g === 'ea' || g === 'stable');
    expect(listed.slice(0, 2)).toEqual(levels);
    expect(listed.slice(2)).toEqual(userGroups.filter((g) => !levels.includes(g)).slice(0, listed.length - 2));
    expect(Number(headers['x-atrium-groups-omitted'])).toBe(groupCount - listed.length);
    expect(listed.length).toBeGreaterThan(50);

    // The assertion says the same, within the same bound.
    const assertion = headers['x-atrium-assertion']!;
    expect(assertion.length).toBeLessThanOrEqual(8 * 1024);
    const { payload } = await jwtVerify(assertion, await jwks(), { issuer: portal.origin, audience: `${portal.origin}/apps/ea/echo` });
    expect(payload.groups).toEqual(listed);
    expect(payload.groups_omitted).toBe(groupCount - listed.length);
  });

  it('always tells an app the groups its manifest names, however far down the list', async () => {
    const r = await many.get('/apps/ea/team/', JSON_ACCEPT);
    expect(r.status).toBe(200);
    const { headers } = r.json() as { headers: Record<string, string> };
    // First, as the README promises: then the level groups, then the rest.
    const listed = headers['x-atrium-groups']!.split(',');
    expect(listed.slice(0, 3)).toEqual([MANIFEST_GROUP, ...userGroups.filter((g) => g === 'ea' || g === 'stable')]);
    const { payload } = await jwtVerify(headers['x-atrium-assertion']!, await jwks(), { issuer: portal.origin, audience: `${portal.origin}/apps/ea/team` });
    expect(payload.groups).toEqual(listed);
  });

  it('opens a proxied websocket to a Node upstream too', async () => {
    const ws = new WebSocket(`${portal.origin.replace('http', 'ws')}/apps/ea/team/socket`, { headers: { Cookie: cookieHeader(many) } });
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (data) => resolve(data.toString()));
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
    ws.close();
    expect(JSON.parse(first)).toMatchObject({ hello: 'many@example.com', level: 'ea' });
  });
});
