import { createServer } from 'node:http';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import WebSocket, { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AtriumUser } from '../lib/app-kit.ts';
import { DirectoryAdmin } from '../lib/directory/admin.ts';
import { AuditLog } from '../lib/directory/audit.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { IDENTITY_BUDGET, UpstreamIdentities, upstreamIdentity } from '../portal/apps/identity-headers.ts';
import { Agent } from './helpers/agent.ts';
import { makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { cookieHeader } from './helpers/sockets.ts';
import { listenOnLoopback, startEchoUpstream } from './helpers/upstream.ts';

/**
 * What an upstream app learns about its user, and only that: the portal's X-Atrium-* headers
 * (exact when they can be, bounded however many groups the user is in) and its own forwarding
 * headers, never another proxy's identity headers a client made up.
 */

/** An upstream that echoes the headers it got, over HTTP and as a websocket's first message. */
async function startHeaderEcho() {
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(req.headers));
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket, req) => socket.send(JSON.stringify(req.headers)));
  return listenOnLoopback(server, wss);
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

/** Another proxy's identity, forwarding and rewrite headers, in the spellings servers fold together. */
const FOREIGN = {
  'X-Forwarded-User': 'admin',
  X_Forwarded_User: 'admin',
  'x.forwarded.user': 'admin',
  'X-FORWARDED-EMAIL': 'admin@example.com',
  'X-Forwarded-Groups': 'admin',
  'X-Forwarded-Preferred-Username': 'admin',
  'X-Forwarded-Access-Token': 'token',
  'X-Forwarded-Server': 'evil',
  'X-Forwarded-Port': '1',
  'X-Forwarded-Ssl': 'on',
  'X-Forwarded-Uri': '/admin',
  X_Forwarded_Host: 'evil.example',
  'x.forwarded.proto': 'gopher',
  'X-Forwarded-Prefix': '/evil',
  'X-Auth-Request-User': 'admin',
  X_Auth_Request_Email: 'admin@example.com',
  'X-Auth-Request-Groups': 'admin',
  'x.auth.request.preferred.username': 'admin',
  'Remote-User': 'admin',
  Remote_Groups: 'admin',
  'X-Remote-User': 'admin',
  'X-WEBAUTH-USER': 'admin',
  'X-Original-URL': '/admin',
  X_Original_URL: '/admin',
  'X-Original-Uri': '/admin',
  'X-Rewrite-URL': '/admin',
  'x.rewrite.url': '/admin',
  'X-Real-IP': '6.6.6.6',
  'X-Client-IP': '6.6.6.6',
  'True-Client-IP': '6.6.6.6',
  'CF-Connecting-IP': '6.6.6.6',
  Forwarded: 'for=6.6.6.6;host=evil.example',
  'Cf-Access-Authenticated-User-Email': 'admin@example.com',
  'X-Goog-Authenticated-User-Email': 'accounts.google.com:admin@example.com',
  'X-Amzn-Oidc-Identity': 'admin',
  'X-Ms-Client-Principal-Name': 'admin',
  'Gap-Auth': 'admin',
  'Proxy-Authorization': 'Basic YWRtaW46YWRtaW4=',
  'X-Atrium-Level': 'admin',
  'X.Atrium.Groups': 'admin',
  x_atrium_user: 'admin-sub',
};
/** Headers of no proxy's: they pass. */
const HARMLESS = { 'X-Request-Id': 'req-1', 'X-Forwarded': 'not a prefix', 'X-Custom-User-Agent-Hint': 'ok' };

const canonical = (name: string) => name.toLowerCase().replace(/[_.]/g, '-');
const FOREIGN_NAMES = new Set(Object.keys(FOREIGN).map(canonical));
/** What the portal itself sets under those names, and the values it sets. */
const portalForwarding = () => ({ 'x-forwarded-for': '127.0.0.1', 'x-forwarded-host': new URL(portal.origin).host, 'x-forwarded-proto': 'http' });

function expectNoForeignHeaders(received: Record<string, string>, what: string): void {
  const own = portalForwarding();
  for (const [name, value] of Object.entries(received)) {
    const key = canonical(name);
    if (key in own) expect(value, `${what}: ${name}`).toBe(own[key as keyof typeof own]);
    else if (key === 'x-forwarded-prefix') expect(value, `${what}: ${name}`).toBe('/apps/ea/headers');
    else if (key === 'x-atrium-level') expect(value, what).toBe('ea');
    else if (key === 'x-atrium-groups') expect(value, what).toBe('ea,stable');
    else if (key === 'x-atrium-user') expect(value, what).not.toBe('admin-sub');
    else expect(FOREIGN_NAMES.has(key), `${what}: ${name} reached the upstream`).toBe(false);
  }
  for (const name of Object.keys(HARMLESS)) expect(received[name.toLowerCase()], `${what}: ${name}`).toBeDefined();
  // Each of the portal's own arrives once, under its own spelling only.
  for (const name of ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-atrium-level']) {
    expect(Object.keys(received).filter((k) => canonical(k) === name), `${what}: ${name}`).toEqual([name]);
  }
}

describe('other proxies’ identity headers', () => {
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
    // '%' is visible ASCII: exact, and unmarked, so nobody decodes it.
    expect(upstreamIdentity(user({ email: 'a%40b@example.com' }), []).headers).toMatchObject({ 'x-atrium-email': 'a%40b@example.com' });
    const unicode = upstreamIdentity(user({ email: 'jörg@exämple.com', sub: 'with space' }), []).headers;
    expect(unicode).toMatchObject({ 'x-atrium-email': 'j%C3%B6rg%40ex%C3%A4mple.com', 'x-atrium-user': 'with%20space', 'x-atrium-encoded': 'user, email' });
    // A line break is never a header injection: it is encoded like anything else a header cannot hold.
    expect(upstreamIdentity(user({ sub: 'x\r\nX-Atrium-Level: admin' }), []).headers['x-atrium-user']).toBe('x%0D%0AX-Atrium-Level%3A%20admin');
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
    expect(identities.of(user({ groups, profile }), '/apps/ea/echo', Object.freeze(['stable'])).headers['x-atrium-groups']).toBe('ea,stable');
  });

  it('leave out what would not fit a header, and name it in X-Atrium-Omitted', () => {
    const big = upstreamIdentity(user({ name: 'N'.repeat(5_000), profile: { notes: 'x'.repeat(10_000) } }), []);
    expect(big.headers['x-atrium-name']).toBeUndefined();
    expect(big.headers['x-atrium-profile']).toBeUndefined();
    expect(big.headers['x-atrium-omitted']).toBe('name, profile');
    expect(big.claims.name).toBeUndefined();
    expect(big.headers['x-atrium-email']).toBe('devel@example.com');
  });
});

describe(`a user in ${GROUP_COUNT} groups`, () => {
  let many: Agent;
  let groupCount: number;

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
    groupCount = portal.portal.access.grantFor(member.id).groups.length;
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
    // The level groups come first; the rest in order, as many as fit.
    expect(listed).toEqual(expect.arrayContaining(['ea', 'stable', teamGroup(1)]));
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
    expect(headers['x-atrium-groups']!.split(',')).toContain(MANIFEST_GROUP);
    const { payload } = await jwtVerify(headers['x-atrium-assertion']!, await jwks(), { issuer: portal.origin, audience: `${portal.origin}/apps/ea/team` });
    expect(payload.groups).toContain(MANIFEST_GROUP);
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
