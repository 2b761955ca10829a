import { X509Certificate, randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { io, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { createTestDatabase, type TestDatabase } from './helpers/databases.ts';
import { requestsByArea, startInProcessInstance, startProcessInstance, untilReady, type Instance } from './helpers/instances.ts';
import { startNginx, writeNginxSite, type NginxSite, type RunningNginx } from './helpers/nginx.ts';
import { startPrivateRedis, type PrivateRedis } from './helpers/private-redis.ts';
import { disconnected } from './helpers/sockets.ts';

/**
 * Several instances behind a real balancer: Debian's nginx running deploy/nginx/atrium.conf (rendered
 * by tests/helpers/nginx.ts: loopback ports, a throwaway self-signed certificate, an upstream file
 * naming the instances) in front of three portal instances that share one MariaDB database and one
 * Redis (a private redis-server: socket.io's and the session events' pub/sub channels are server-wide,
 * so a shared server would mix them with other test files'). Instances a and b run in this process
 * (their internals at hand), c in a process of its own, which is SIGKILLed at the end.
 *
 * Which instance answered is read from the instances themselves: the test's app reports the port
 * its request came in on (the instance's), its socket.io namespace does the same, and each
 * instance's /metrics counts its requests. PUBLIC_URL is nginx's https origin, as in production.
 *
 * The certificate is self-signed and made for this file: this worker process (vitest runs each file
 * in its own) accepts unverified certificates, for the test's requests and for instances a and b
 * calling their issuer through nginx; process c trusts the certificate itself (NODE_EXTRA_CA_CERTS).
 *
 * Every wait is for an event or a state, with a generous deadline that only bounds a failure.
 */
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

const DEADLINE_MS = 30_000;
const ROOM = '/apps/stable/room';
const COUNTER = '/apps/ea/counter';

const APPS = {
  // In-process: answers with the user and the port its request arrived on, i.e. which instance.
  'stable/room/index.js': `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { user: ctx.state.user?.email ?? null, instance: ctx.req.socket.localPort }; });
export default {
  app,
  realtime(nsp) {
    nsp.on('connection', (socket) => {
      const instance = socket.request.socket.localPort;
      socket.on('whoami', (ack) => ack({ instance, transport: socket.conn.transport.name, user: socket.data.user?.email }));
      socket.on('shout', (text) => nsp.emit('heard', { text, from: instance }));
    });
  },
};
`,
  // A command app: every instance starts its own copy on a port of its own (upstream port 0).
  'ea/counter/app.json': JSON.stringify({ title: 'Counter', upstream: 'http://127.0.0.1:0', command: 'node server.mjs' }),
  'ea/counter/server.mjs': `import { createServer } from 'node:http';
let served = 0;
createServer((req, res) => {
  served += 1;
  if (req.url.startsWith('/accel')) {
    // What an untrusted app could try behind nginx: have the balancer fetch another URL instead.
    res.writeHead(200, { 'Content-Type': 'text/plain', 'X-Accel-Redirect': '/me' });
    res.end('the app answered');
    return;
  }
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({
    pid: process.pid,
    port: Number(process.env.PORT),
    served,
    user: req.headers['x-atrium-email'],
    forwarded: { proto: req.headers['x-forwarded-proto'], host: req.headers['x-forwarded-host'] },
  }));
}).listen(Number(process.env.PORT), '127.0.0.1');
`,
};

let database: TestDatabase | undefined;
let redis: PrivateRedis | undefined;
let site: NginxSite | undefined;
let nginx: RunningNginx | undefined;
let appsDir: string | undefined;
const instances: Instance[] = [];
const sockets: Socket[] = [];
/** The app copy of the SIGKILLed instance: it should end by itself; if not, afterAll ends it (by pid). */
const copiesOfKilled: number[] = [];
let a: Instance;
let b: Instance;
let c: Instance;
let origin: string;
let httpsPort: number;
let httpPort: number;

/** Distinct free ports (the OS could hand the same one out twice in a row). */
async function distinctPorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

beforeAll(async () => {
  const [https, http, ...ports] = await distinctPorts(5);
  httpsPort = https as number;
  httpPort = http as number;
  origin = `https://127.0.0.1:${httpsPort}`;
  redis = await startPrivateRedis();
  database = await createTestDatabase('mysql');
  site = writeNginxSite({ httpsPort, httpPort, upstreams: ports.map((p) => `127.0.0.1:${p}`) });
  nginx = await startNginx(site, httpsPort);
  appsDir = makeAppsDir(APPS);
  const env = { PUBLIC_URL: origin, DATABASE_URL: database.url, REDIS_URL: redis.url, SESSION_SECRET: 'm'.repeat(64), APPS_DIR: appsDir };
  // The first instance migrates the database and seeds the demo accounts; the others find them.
  a = await startInProcessInstance('a', ports[0] as number, env);
  instances.push(a);
  await untilReady(a);
  b = await startInProcessInstance('b', ports[1] as number, env);
  instances.push(b);
  c = await startProcessInstance('c', ports[2] as number, { ...env, NODE_EXTRA_CA_CERTS: site.certificate.cert });
  instances.push(c);
  await untilReady(b);
  await untilReady(c);
}, 240_000);

afterAll(async () => {
  for (const socket of sockets) socket.close();
  await Promise.allSettled(instances.map((i) => i.stop()));
  for (const pid of copiesOfKilled) if (alive(pid) && isCounterCopy(pid)) process.kill(pid, 'SIGKILL');
  await nginx?.stop();
  site?.remove();
  await redis?.stop();
  await database?.drop();
  if (appsDir) rmSync(appsDir, { recursive: true, force: true });
}, 120_000);

async function signedIn(email: string): Promise<Agent> {
  const agent = new Agent(origin);
  const landed = await agent.login(email, DEMO_PASSWORD);
  if (landed.status !== 200) throw new Error(`signing in ${email} through nginx ended with ${landed.status} at ${landed.url}: ${landed.text.slice(0, 300)}`);
  return agent;
}

/** The agent's cookies with the socket.io routing cookie set to `route` (another browser's, as it were). */
function cookiesWithRoute(agent: Agent, route: string): string {
  const pairs = [...agent.cookies.values()].filter((c) => c.name !== 'atrium_route').map((c) => `${c.name}=${c.value}`);
  return [...pairs, `atrium_route=${route}`].join('; ');
}

type Transport = 'websocket' | 'polling';

/** A socket.io client on the room's namespace through nginx; resolves once connected. */
function openSocket(cookie: string, transports: Transport[], reconnection = false): Promise<Socket> {
  const socket = io(`${origin}${ROOM}`, {
    path: '/socket.io/',
    transports,
    reconnection,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1_000,
    forceNew: true,
    timeout: 10_000,
    rejectUnauthorized: false,
    extraHeaders: { Cookie: cookie },
  });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => {
      socket.close();
      reject(new Error(`socket.io through nginx refused: ${err.message}`));
    });
  });
}

interface WhoAmI {
  instance: number;
  transport: Transport;
  user: string;
}

const whoami = (socket: Socket): Promise<WhoAmI> => socket.timeout(DEADLINE_MS).emitWithAck('whoami') as Promise<WhoAmI>;

/** Routing cookie values found so far, by the instance they reach. */
const routes = new Map<number, string>();

/**
 * A routing cookie value that nginx sends to `instance`: random values are tried (a new browser
 * each) and what each reached is remembered. A third of them reach each instance, about.
 */
async function routeTo(instance: Instance, agent: Agent): Promise<string> {
  for (let tries = 0; !routes.has(instance.port); tries++) {
    if (tries === 100) throw new Error(`no routing cookie reached instance ${instance.name} in 100 tries`);
    const route = randomBytes(8).toString('hex');
    const socket = await openSocket(cookiesWithRoute(agent, route), ['websocket']);
    const { instance: port } = await whoami(socket);
    socket.close();
    if (!routes.has(port)) routes.set(port, route);
  }
  return routes.get(instance.port) as string;
}

/** A socket on the given instance (through nginx), confirmed by the instance itself. */
async function socketOn(instance: Instance, agent: Agent, transports: Transport[], reconnection = false): Promise<Socket> {
  const socket = await openSocket(cookiesWithRoute(agent, await routeTo(instance, agent)), transports, reconnection);
  expect((await whoami(socket)).instance).toBe(instance.port);
  return socket;
}

/** Repeats `probe` until `done` says so (at most `limit` times); returns every result. */
async function repeatUntil<T>(probe: () => Promise<T>, done: (results: T[]) => boolean, limit: number): Promise<T[]> {
  const results: T[] = [];
  while (results.length < limit && !done(results)) results.push(await probe());
  return results;
}

const json = { Accept: 'application/json' };

/** Six requests for the room's page in a row: with three instances, two on each. */
const sixRoomStatuses = (agent: Agent) => repeatUntil(async () => (await agent.get(`${ROOM}/`, json)).status, () => false, 6);

/** An https POST from a loopback address of our choosing (nginx then sees a client other than itself). */
function postFrom(localAddress: string, url: string, cookie: string, form: Record<string, string>, headers: Record<string, string>): Promise<number> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: 'POST',
        localAddress,
        rejectUnauthorized: false,
        headers: { ...headers, Cookie: cookie, Accept: 'text/html', 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// Generous per test: two shared cores, three portals, nginx and the services.
describe('nginx (deploy/nginx/atrium.conf) in front of three instances', { timeout: 120_000 }, () => {
  it('terminates TLS with its certificate, redirects http to https, and gives each browser a routing cookie once', async () => {
    const presented = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: httpsPort, rejectUnauthorized: false }, () => {
        resolve(socket.getPeerX509Certificate()?.fingerprint256 ?? '');
        socket.end();
      });
      socket.on('error', reject);
    });
    expect(presented).toBe(new X509Certificate(readFileSync(site!.certificate.cert)).fingerprint256);

    const plain = await fetch(`http://127.0.0.1:${httpPort}/login?returnTo=%2F`, { redirect: 'manual' });
    expect(plain.status).toBe(308);
    // $host carries no port: in production the https side is on 443.
    expect(plain.headers.get('location')).toBe('https://127.0.0.1/login?returnTo=%2F');

    const first = await fetch(`${origin}/healthz`);
    expect(first.status).toBe(200);
    expect(first.headers.get('strict-transport-security')).toMatch(/max-age=\d+/);
    const routeCookie = first.headers.getSetCookie().find((line) => line.startsWith('atrium_route='));
    expect(routeCookie).toMatch(/^atrium_route=[0-9a-f]{32}; Path=\/; Secure; HttpOnly; SameSite=Lax$/);
    const again = await fetch(`${origin}/healthz`, { headers: { Cookie: (routeCookie as string).split(';')[0] as string } });
    expect(again.headers.getSetCookie().filter((line) => line.startsWith('atrium_route='))).toEqual([]);

    const ready = await fetch(`${origin}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { database: 'ok', redis: 'ok', provider: 'ok' } });
  });

  it('forwards the client address it saw, which the portal counts sign-in attempts by; a client’s own X-Forwarded-For is not believed', async () => {
    const agent = new Agent(origin);
    const form = (await agent.follow('/login?returnTo=/')).at(-1)!;
    const action = /<form method="post" action="([^"]+)"/.exec(form.text)?.[1];
    if (!action) throw new Error(`no sign-in form: ${form.status} ${form.text.slice(0, 300)}`);
    const cookie = [...agent.cookies.values()].map((k) => `${k.name}=${k.value}`).join('; ');
    const status = await postFrom('127.0.0.2', new URL(action.replace(/&amp;/g, '&'), origin).href, cookie, { email: 'nobody@example.com', password: 'not the password' }, { 'X-Forwarded-For': '203.0.113.7' });
    expect(status).toBeLessThan(500);
    // The per-address allowance is kept in the shared Redis under the address (rate-limiter-flexible's key).
    const { Redis } = await import('ioredis');
    const client = new Redis(redis!.url);
    try {
      const keys = await client.keys('atrium:login-address*');
      expect(keys.some((k) => k.endsWith('127.0.0.2'))).toBe(true);
      expect(keys.filter((k) => k.includes('203.0.113.7'))).toEqual([]);
    } finally {
      await client.quit();
    }
  });

  it('a sign-in through nginx is a session on every instance: its requests land on all three', async () => {
    const before = await Promise.all(instances.map(requestsByArea));
    const agent = await signedIn('ea@example.com');
    const signInCounts = await Promise.all(instances.map(requestsByArea));
    // The sign-in itself (login, provider, callback) was spread over the instances.
    const tookPart = instances.filter((_, i) => (signInCounts[i]!.auth ?? 0) + (signInCounts[i]!.idp ?? 0) > (before[i]!.auth ?? 0) + (before[i]!.idp ?? 0));
    expect(tookPart.length).toBeGreaterThanOrEqual(2);

    const answers = await repeatUntil(
      async () => {
        const r = await agent.get(`${ROOM}/`, json);
        return { status: r.status, ...(r.json() as { user: string; instance: number }) };
      },
      (seen) => new Set(seen.map((s) => s.instance)).size === 3,
      30,
    );
    expect(new Set(answers.map((s) => s.instance))).toEqual(new Set(instances.map((i) => i.port)));
    for (const answer of answers) expect(answer).toMatchObject({ status: 200, user: 'ea@example.com' });

    // The instances' own metrics say the same of the portal's pages. (Reading /metrics is itself a
    // request of the portal's area, counted by the next reading: one of the difference is that.)
    const beforeMe = await Promise.all(instances.map(requestsByArea));
    for (let i = 0; i < 6; i++) expect((await agent.get('/me', json)).json()).toMatchObject({ email: 'ea@example.com', level: 'ea' });
    const afterMe = await Promise.all(instances.map(requestsByArea));
    for (const [i, instance] of instances.entries()) expect((afterMe[i]!.portal ?? 0) - (beforeMe[i]!.portal ?? 0), `instance ${instance.name}`).toBeGreaterThanOrEqual(2);
  });

  it('socket.io works through nginx over websocket, over long-polling and upgraded from polling, on every instance; a broadcast reaches all three', async () => {
    const agent = await signedIn('stable@example.com');
    for (const instance of instances) {
      const overWebsocket = await socketOn(instance, agent, ['websocket']);
      expect(await whoami(overWebsocket)).toEqual({ instance: instance.port, transport: 'websocket', user: 'stable@example.com' });
      overWebsocket.close();

      // Long-polling is a request per message: every one of them must reach the same instance.
      const overPolling = await socketOn(instance, agent, ['polling']);
      for (let i = 0; i < 5; i++) expect(await whoami(overPolling)).toEqual({ instance: instance.port, transport: 'polling', user: 'stable@example.com' });
      overPolling.close();

      // A browser's default: polling first, then the upgrade, which must reach the same instance too.
      const upgraded = await socketOn(instance, agent, ['polling', 'websocket']);
      if (upgraded.io.engine.transport.name !== 'websocket') {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no upgrade to websocket')), DEADLINE_MS);
          upgraded.io.engine.once('upgrade', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
      expect(await whoami(upgraded)).toEqual({ instance: instance.port, transport: 'websocket', user: 'stable@example.com' });
      upgraded.close();
    }

    const [onA, onB, onC] = [await socketOn(a, agent, ['websocket']), await socketOn(b, agent, ['polling']), await socketOn(c, agent, ['websocket'])];
    const heard = [onA, onB, onC].map((s) => new Promise<{ text: string; from: number }>((resolve) => s.once('heard', resolve)));
    onB.emit('shout', 'hello from b');
    for (const message of await Promise.all(heard)) expect(message).toEqual({ text: 'hello from b', from: b.port });
    for (const s of [onA, onB, onC]) s.close();
  });

  it('a logout on one instance ends the session on all three and disconnects its sockets on all three', async () => {
    const agent = await signedIn('stable@example.com');
    const session = [...agent.cookies.values()].filter((k) => k.name !== 'atrium_route').map((k) => `${k.name}=${k.value}`).join('; ');
    const open = [await socketOn(a, agent, ['websocket']), await socketOn(b, agent, ['websocket']), await socketOn(c, agent, ['polling'])];
    const gone = open.map((s) => disconnected(s, DEADLINE_MS));
    const csrf = await agent.csrfToken();
    expect((await agent.request('POST', '/logout', { form: { _csrf: csrf } })).status).toBe(303);
    await Promise.all(gone);
    // The old cookie, replayed, is signed out wherever it lands.
    const replays = await repeatUntil(async () => {
      const r = await fetch(`${origin}${ROOM}/`, { headers: { ...json, Cookie: session } });
      return r.status;
    }, () => false, 6);
    expect(replays).toEqual([401, 401, 401, 401, 401, 401]);
  });

  it('a demotion on one instance disconnects the user’s sockets on all three', async () => {
    const agent = await signedIn('devel@example.com');
    const open = [await socketOn(a, agent, ['websocket']), await socketOn(b, agent, ['polling']), await socketOn(c, agent, ['websocket'])];
    const gone = open.map((s) => disconnected(s, DEADLINE_MS));
    await a.portal!.admin.removeMember('test', 'devel', 'devel@example.com');
    await Promise.all(gone);
    // Still signed in, no longer allowed, wherever the request lands (the directory reaches c by its poll).
    const deadline = Date.now() + DEADLINE_MS;
    let statuses = await sixRoomStatuses(agent);
    while (statuses.some((s) => s !== 403) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      statuses = await sixRoomStatuses(agent);
    }
    expect(statuses).toEqual([403, 403, 403, 403, 403, 403]);
    expect((await agent.get('/me', json)).json()).toMatchObject({ email: 'devel@example.com' });
    const refused = await openSocket(cookiesWithRoute(agent, await routeTo(c, agent)), ['websocket']).then(
      () => 'connected',
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/forbidden/);
  });

  it('command apps: each instance runs its own copy, on a port of its own, with state of its own', async () => {
    const agent = await signedIn('ea@example.com');
    const copies = await copiesOfCounter(agent);
    expect([...copies.keys()].sort()).toEqual(['a', 'b', 'c']);
    expect(new Set([...copies.values()].map((copy) => copy.port)).size).toBe(3);
    for (const copy of copies.values()) {
      expect(copy.user).toBe('ea@example.com');
      // The portal tells its upstream the public origin: PUBLIC_URL, nginx's https origin.
      expect(copy.forwarded).toEqual({ proto: 'https', host: `127.0.0.1:${httpsPort}` });
    }
    // In-memory state is per copy: each request was counted by the one copy that served it.
    const answers = await repeatUntil(async () => (await agent.get(`${COUNTER}/`, json)).json() as CounterAnswer, () => false, 9);
    const last = new Map(answers.map((answer) => [answer.pid, answer.served]));
    expect(last.size).toBe(3);
    const before = [...copies.values()].reduce((sum, copy) => sum + copy.served, 0);
    expect([...last.values()].reduce((sum, n) => sum + n, 0)).toBe(before + 9);
  });

  it('an app cannot make nginx fetch another URL for the visitor (X-Accel-Redirect is ignored)', async () => {
    const agent = await signedIn('ea@example.com');
    for (let i = 0; i < 3; i++) {
      const r = await agent.get(`${COUNTER}/accel`, { Accept: 'text/plain' });
      expect(r.status).toBe(200);
      expect(r.text).toBe('the app answered');
      expect(r.headers.get('x-accel-redirect')).toBeNull();
    }
  });

  it('an instance SIGKILLed under load loses no session; its sockets reconnect to another instance; its app copy goes with it', async () => {
    const emails = ['admin@example.com', 'ea@example.com', 'stable@example.com', 'nobody@example.com'];
    const agents = await Promise.all(emails.map(signedIn));
    const admin = agents[0] as Agent;
    const copyOnC = (await copiesOfCounter(agents[1] as Agent)).get('c') as CounterAnswer;
    copiesOfKilled.push(copyOnC.pid);
    const onC = [await socketOn(c, admin, ['websocket'], true), await socketOn(c, admin, ['polling'], true)];
    const back = onC.map(
      (socket) =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('the socket did not reconnect')), 60_000);
          socket.once('disconnect', () =>
            socket.once('connect', () => {
              clearTimeout(timer);
              resolve();
            }),
          );
        }),
    );

    // The load: every browser asks who it is, one request after another, until told to stop.
    let stop = false;
    const done = { beforeKill: 0, afterKill: 0 };
    let killed = false;
    const statuses = new Map<string, number[]>(emails.map((e) => [e, []]));
    const load = agents.map(async (agent, i) => {
      const email = emails[i] as string;
      while (!stop) {
        const r = await agent.get('/me', json);
        statuses.get(email)!.push(r.status);
        if (r.status === 200) expect(r.json()).toMatchObject({ email });
        if (killed) done.afterKill++;
        else done.beforeKill++;
      }
    });
    const until = async (what: string | (() => string), condition: () => boolean) => {
      const deadline = Date.now() + 60_000;
      while (!condition()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await until('load before the kill', () => done.beforeKill >= 4 * agents.length);
      const exited = new Promise((resolve) => c.child!.once('exit', resolve));
      c.child!.kill('SIGKILL');
      await exited;
      killed = true;
      await Promise.all(back);
      await until('load after the kill', () => done.afterKill >= 6 * agents.length);
    } finally {
      stop = true;
      await Promise.all(load);
    }

    // No session lost: nobody was ever signed out. nginx retries a request the dead instance never
    // answered (GETs are idempotent), so at most the one request each browser had in flight at the
    // kill can have failed, with a 502, never a 401.
    for (const [email, seen] of statuses) {
      expect(seen.filter((s) => s === 401 || s === 403), email).toEqual([]);
      expect(seen.filter((s) => s !== 200).length, `${email}: ${seen.join(' ')}`).toBeLessThanOrEqual(1);
      expect(seen.at(-1), email).toBe(200);
    }
    for (const [i, agent] of agents.entries()) {
      for (let k = 0; k < 3; k++) expect((await agent.get('/me', json)).json()).toMatchObject({ email: emails[i] });
    }

    // The sockets that were on c are on a or b now, the same user, and they still hear broadcasts.
    for (const socket of onC) {
      const who = await whoami(socket);
      expect([a.port, b.port]).toContain(who.instance);
      expect(who.user).toBe('admin@example.com');
    }
    const heard = new Promise<{ text: string }>((resolve) => onC[1]!.once('heard', resolve));
    onC[0]!.emit('shout', 'still here');
    expect((await heard).text).toBe('still here');

    // c's copy of the command app did not outlive it (parent-death signal, see portal/apps/supervisor.ts).
    await until(() => `c’s app copy ${copyOnC.pid} to end (${describeProcess(copyOnC.pid)})`, () => !alive(copyOnC.pid));
    const answers = await repeatUntil(async () => (await agents[1]!.get(`${COUNTER}/`, json)).json() as CounterAnswer, () => false, 6);
    expect(new Set(answers.map((answer) => answer.pid)).size).toBe(2);
    expect(answers.map((answer) => answer.pid)).not.toContain(copyOnC.pid);
  }, 240_000);
});

interface CounterAnswer {
  pid: number;
  port: number;
  served: number;
  user: string;
  forwarded: { proto: string; host: string };
}

/** The counter's copies, by the instance that started each: requests through nginx until three answered. */
async function copiesOfCounter(agent: Agent): Promise<Map<string, CounterAnswer>> {
  const answers = await repeatUntil(
    async () => {
      const r = await agent.get(`${COUNTER}/`, json);
      if (r.status !== 200) throw new Error(`the counter answered ${r.status}: ${r.text.slice(0, 200)}`);
      return r.json() as CounterAnswer;
    },
    (seen) => new Set(seen.map((s) => s.pid)).size === instances.filter(running).length,
    30,
  );
  const byInstance = new Map<string, CounterAnswer>();
  for (const answer of answers) {
    const owner = ownerOf(answer.pid);
    if (!owner) throw new Error(`the counter copy ${answer.pid} belongs to no instance`);
    byInstance.set(owner.name, answer);
  }
  return byInstance;
}

const running = (instance: Instance) => !instance.child || (instance.child.exitCode === null && instance.child.signalCode === null);

/**
 * The instance whose supervisor started process `pid`: the app's shell is the supervised process
 * (in-process instances name it, `supervisor.pid`), and a process instance is its parent.
 */
function ownerOf(pid: number): Instance | undefined {
  const ancestors = new Set<number>();
  for (let p = pid; p > 1 && !ancestors.has(p); p = parentOf(p)) ancestors.add(p);
  return instances.find((instance) => (instance.portal ? ancestors.has(instance.portal.supervisor.pid(COUNTER) ?? -1) : ancestors.has(instance.pid)));
}

function parentOf(pid: number): number {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, so read after the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** For a failure's message: the process's group, parent and signal state, as /proc has them. */
function describeProcess(pid: number): string {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const fields = status.split('\n').filter((line) => /^(State|PPid|NSpgid|NSsid|SigPnd|ShdPnd|SigBlk|SigIgn|SigCgt):/.test(line));
    return `${fields.join(', ')}; stat: ${readFileSync(`/proc/${pid}/stat`, 'utf8').trim()}`;
  } catch {
    return 'gone';
  }
}

/** Whether `pid` is still a copy of the test's command app (not a process that took the number since). */
function isCounterCopy(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('server.mjs');
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
