import { Redis } from 'ioredis';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { ServiceUnavailableError } from '../lib/errors.ts';
import { createLogger } from '../lib/log.ts';
import { OutageGraceStore } from '../lib/sessions/outage-grace.ts';
import type { SessionStore, StoredSession } from '../lib/sessions/store.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { createTestDatabase, type TestDatabase } from './helpers/databases.ts';
import { loopRequests, pollUntil, summary, withinDeadline, type Load } from './helpers/load.ts';
import { startPersistentRedis, type PersistentRedis } from './helpers/persistent-redis.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, cookieHeader } from './helpers/sockets.ts';
import { startEchoUpstream } from './helpers/upstream.ts';

/**
 * Redis going away under two instances that share it (as behind a balancer), with users working:
 * no request gets a 500 or waits on Redis, signed-in users carry on from their last good sessions,
 * what truly needs Redis (a new sign-in) answers 503, /readyz says Redis is failing. When Redis is
 * back (it persists, as production's must) everything resumes by itself: readiness, broadcasts
 * between the instances on the sockets that stayed connected, and the session writes made during
 * the outage (an idle touch, a sign-out) reach Redis.
 */
const REQUEST_DEADLINE_MS = 10_000;
const EVENT_DEADLINE_MS = 30_000;

const APPS = {
  'ea/room/index.js': `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { user: ctx.state.user.email }; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.on('shout', (text) => nsp.emit('heard', text))); } };`,
};

let redis: PersistentRedis;
let database: TestDatabase;
let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
let a: TestPortal;
let b: TestPortal;
let probe: Redis;
const sockets: Socket[] = [];
const unhandled: unknown[] = [];
const noteUnhandled = (reason: unknown) => unhandled.push(reason);

beforeAll(async () => {
  process.on('unhandledRejection', noteUnhandled);
  redis = await startPersistentRedis();
  database = await createTestDatabase('mysql');
  upstream = await startEchoUpstream();
  const apps = makeAppsDir({ ...APPS, 'ea/echo/app.json': JSON.stringify({ upstream: upstream.url }) });
  // An idle timeout of 30 s touches a session every 3 s: there are session writes during the outage.
  const env = { REDIS_URL: redis.url, SESSION_SECRET: 'r'.repeat(64), APPS_DIR: apps, SESSION_IDLE_TIMEOUT: '30' };
  a = await startTestPortal({ database, env });
  b = await startTestPortal({ database, env });
  probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  process.off('unhandledRejection', noteUnhandled);
  for (const socket of sockets) socket.close();
  probe?.disconnect();
  await a?.stopAll();
  await b?.stopAll();
  await upstream?.close();
  await database?.drop();
  await redis?.destroy();
});

/** The same browser cookies, presented to the other instance (a balancer's next pick). */
function onOther(agent: Agent, other: TestPortal): Agent {
  const moved = new Agent(other.origin);
  for (const [name, cookie] of agent.cookies) moved.cookies.set(name, cookie);
  return moved;
}

async function signedIn(portal: TestPortal, email: string): Promise<Agent> {
  const agent = new Agent(portal.origin);
  const landed = await agent.login(email, DEMO_PASSWORD);
  if (landed.status !== 200) throw new Error(`sign-in failed: ${landed.status}`);
  return agent;
}

async function readiness(portal: TestPortal): Promise<{ status: number; redis: string }> {
  const response = await withinDeadline(fetch(`${portal.origin}/readyz`), 5_000, `${portal.origin}/readyz`);
  return { status: response.status, redis: ((await response.json()) as { checks: Record<string, string> }).checks.redis ?? '' };
}

async function socketIn(portal: TestPortal, agent: Agent): Promise<Socket> {
  const result = await connect(portal.origin, '/apps/ea/room', cookieHeader(agent));
  if (!result.ok) throw new Error(`socket refused: ${result.message}`);
  sockets.push(result.socket);
  return result.socket;
}

/** Shouts on `from` until `to` hears it (a broadcast through Redis), or the deadline passes. */
async function heardAcross(from: Socket, to: Socket, text: string): Promise<boolean> {
  let heard = false;
  const listener = (said: string) => (heard ||= said.startsWith(text));
  to.on('heard', listener);
  try {
    for (let i = 0, until = Date.now() + EVENT_DEADLINE_MS; !heard && Date.now() < until; i++) {
      from.emit('shout', `${text} #${i}`);
      await new Promise((r) => setTimeout(r, 300));
    }
    return heard;
  } finally {
    to.off('heard', listener);
  }
}

const sessionKey = (agent: Agent) => `atrium:sess:${agent.cookie('atrium.sid')!.value}`;
const PATHS = ['/apps/ea/room/', '/apps/ea/echo/', '/me'];

describe('Redis goes away under two instances', () => {
  it('no 500 and no waiting while it is away; everything resumes by itself once it is back', { timeout: 180_000 }, async () => {
    const ea = await signedIn(a, 'ea@example.com');
    const devel = await signedIn(b, 'devel@example.com');
    const leaver = await signedIn(a, 'stable@example.com');
    const users = [
      { name: 'ea@a', agent: ea, paths: PATHS },
      { name: 'ea@b', agent: onOther(ea, b), paths: PATHS },
      { name: 'devel@b', agent: devel, paths: PATHS },
      { name: 'devel@a', agent: onOther(devel, a), paths: PATHS },
    ];
    // Both instances have seen the leaver's session before the outage.
    const leaverOnB = onOther(leaver, b);
    const leaverKey = sessionKey(leaver);
    expect((await leaverOnB.get('/me', { Accept: 'application/json' })).status).toBe(200);

    const onA = await socketIn(a, ea);
    const onB = await socketIn(b, ea);
    expect(await heardAcross(onA, onB, 'before')).toBe(true);

    let load: Load = loopRequests(users, REQUEST_DEADLINE_MS);
    const loads = [load];
    try {
      // Each instance has read each session before the outage (one it never saw, it cannot vouch for).
      const warm = () => new Set(load.answers.filter((x) => x.status === 200).map((x) => x.agent)).size;
      expect(await pollUntil(async () => warm(), (n) => n === users.length, EVENT_DEADLINE_MS)).toBe(users.length);
      const stoppedAt = Date.now();
      await redis.stop();
      for (const portal of [a, b]) expect(await pollUntil(() => readiness(portal), (r) => r.status === 503, EVENT_DEADLINE_MS)).toEqual({ status: 503, redis: 'failing' });

      // Long enough for every cached session to age out (5 s) and for idle touches to be written (3 s).
      const late = () => load.answers.filter((x) => x.at > stoppedAt + 8_000);
      await pollUntil(async () => late().length, (n) => n >= 3 * users.length * PATHS.length, EVENT_DEADLINE_MS);
      expect(late().length).toBeGreaterThanOrEqual(3 * users.length * PATHS.length);

      // A new sign-in truly needs Redis: 503, not 500.
      const newcomer = await withinDeadline(new Agent(a.origin).login('admin@example.com', DEMO_PASSWORD), REQUEST_DEADLINE_MS * 3, 'sign-in during the outage');
      expect(newcomer.status).toBe(503);
      expect(newcomer.headers.get('retry-after')).toMatch(/^\d+$/);
      // A sign-out works at once here, and reaches Redis (the other instance) when it is back.
      const csrf = await leaver.csrfToken();
      expect((await leaver.request('POST', '/logout', { form: { _csrf: csrf } })).status).toBe(303);
      expect((await leaver.get('/me', { Accept: 'application/json' })).status).toBe(401);
      // The sockets stay connected, and this instance's own still hear its broadcasts.
      expect(onA.connected && onB.connected).toBe(true);
      expect(await heardAcross(onA, onA, 'during')).toBe(true);

      // No requests while Redis comes back, so what reaches it first is what was kept meanwhile.
      await load.stop();
      await redis.start();
      for (const portal of [a, b]) expect(await pollUntil(() => readiness(portal), (r) => r.status === 200, EVENT_DEADLINE_MS)).toEqual({ status: 200, redis: 'ok' });

      await probe.connect();
      const touched = await pollUntil(
        async () => JSON.parse((await probe.get(sessionKey(ea))) ?? '{"data":{}}') as { data: { seenAt?: number } },
        (stored) => (stored.data.seenAt ?? 0) > stoppedAt,
        EVENT_DEADLINE_MS,
      );
      expect(touched.data.seenAt).toBeGreaterThan(stoppedAt);
      expect(await pollUntil(() => probe.exists(leaverKey), (n) => n === 0, EVENT_DEADLINE_MS)).toBe(0);
      expect((await pollUntil(() => leaverOnB.get('/me', { Accept: 'application/json' }), (r) => r.status === 401, EVENT_DEADLINE_MS)).status).toBe(401);

      // Broadcasts between the instances flow again, on the sockets that stayed connected.
      expect(await heardAcross(onA, onB, 'after')).toBe(true);
      expect(await heardAcross(onB, onA, 'back')).toBe(true);

      // And the users go on, their sessions read from Redis again.
      load = loopRequests(users, REQUEST_DEADLINE_MS);
      loads.push(load);
      await pollUntil(async () => load.answers.length, (n) => n >= 2 * users.length * PATHS.length, EVENT_DEADLINE_MS);
    } finally {
      for (const l of loads) await l.stop();
    }
    const answers = loads.flatMap((l) => l.answers);
    console.info('redis stopped:', JSON.stringify(summary(answers)));
    expect(loads.flatMap((l) => l.hung)).toEqual([]);
    expect(answers.filter((x) => x.status !== 200)).toEqual([]);
    expect(unhandled).toEqual([]);
  });

  it('a Redis that hangs (accepts, never answers) holds no request either', { timeout: 180_000 }, async () => {
    const ea = await signedIn(a, 'ea@example.com');
    const devel = await signedIn(b, 'devel@example.com');
    const users = [
      { name: 'ea@a', agent: ea, paths: PATHS },
      { name: 'ea@b', agent: onOther(ea, b), paths: PATHS },
      { name: 'devel@b', agent: devel, paths: PATHS },
      { name: 'devel@a', agent: onOther(devel, a), paths: PATHS },
    ];
    const load = loopRequests(users, REQUEST_DEADLINE_MS);
    try {
      const warm = () => new Set(load.answers.filter((x) => x.status === 200).map((x) => x.agent)).size;
      expect(await pollUntil(async () => warm(), (n) => n === users.length, EVENT_DEADLINE_MS)).toBe(users.length);
      const frozenAt = Date.now();
      redis.freeze();
      try {
        for (const portal of [a, b]) expect(await pollUntil(() => readiness(portal), (r) => r.status === 503, EVENT_DEADLINE_MS)).toEqual({ status: 503, redis: 'failing' });
        const late = () => load.answers.filter((x) => x.at > frozenAt + 8_000);
        await pollUntil(async () => late().length, (n) => n >= 3 * users.length * PATHS.length, EVENT_DEADLINE_MS);
        expect(late().length).toBeGreaterThanOrEqual(3 * users.length * PATHS.length);
        const newcomer = await withinDeadline(new Agent(b.origin).login('admin@example.com', DEMO_PASSWORD), REQUEST_DEADLINE_MS * 3, 'sign-in during the outage');
        expect(newcomer.status).toBe(503);
      } finally {
        redis.thaw();
      }
      for (const portal of [a, b]) expect(await pollUntil(() => readiness(portal), (r) => r.status === 200, EVENT_DEADLINE_MS)).toEqual({ status: 200, redis: 'ok' });
      const thawedAt = Date.now();
      await pollUntil(async () => load.answers.filter((x) => x.at > thawedAt).length, (n) => n >= 2 * users.length * PATHS.length, EVENT_DEADLINE_MS);
    } finally {
      await load.stop();
    }
    console.info('redis frozen:', JSON.stringify(summary(load.answers)));
    expect(load.hung).toEqual([]);
    expect(load.answers.filter((x) => x.status !== 200)).toEqual([]);
    expect(unhandled).toEqual([]);
  });
});

describe('the last good session while the store is away', () => {
  /** A store that answers until told to fail, as Redis does when it goes. */
  const flakyStore = () => {
    const sessions = new Map<string, StoredSession>();
    let down = false;
    const guard = async <T>(work: () => T): Promise<T> => {
      if (down) throw new Error('Connection is closed.');
      return work();
    };
    const store = {
      get: (id: string) => guard(() => sessions.get(id)),
      set: (id: string, data: StoredSession['data'], ttlMs: number) => guard(() => void sessions.set(id, { data, expiresAt: Date.now() + ttlMs })),
      update: (id: string, data: StoredSession['data'], ttlMs: number) => guard(() => sessions.has(id) && !!sessions.set(id, { data, expiresAt: Date.now() + ttlMs })),
      destroy: (id: string) => guard(() => void sessions.delete(id)),
      take: (id: string) => guard(() => sessions.get(id)),
      destroyBySubject: () => guard(() => 0),
      idsBySubject: () => guard(() => []),
      idsByIdpSession: () => guard(() => []),
      sweep: async () => 0,
    } satisfies SessionStore;
    return { store, sessions, fail: (value: boolean) => (down = value) };
  };
  const GRACE_MS = 60_000;
  const index = { subject: 'sub' };

  it('serves the last good copy within the grace, and a 503 with Retry-After past it', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const redis = flakyStore();
      const grace = new OutageGraceStore(redis.store, createLogger('silent', false), GRACE_MS);
      await grace.set('s1', { sub: 'sub' }, 600_000, index);
      redis.fail(true);
      expect((await grace.get('s1'))?.data).toEqual({ sub: 'sub' });
      vi.setSystemTime(Date.now() + GRACE_MS + 1_000);
      const refused = await grace.get('s1').catch((err: unknown) => err);
      expect(refused).toBeInstanceOf(ServiceUnavailableError);
      expect((refused as ServiceUnavailableError).headers['Retry-After']).toMatch(/^\d+$/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses at once what truly needs the store: a new session, a single-use record, a revocation', async () => {
    const redis = flakyStore();
    const grace = new OutageGraceStore(redis.store, createLogger('silent', false), GRACE_MS);
    redis.fail(true);
    await expect(grace.set('s2', { sub: 'sub' }, 600_000, index)).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(grace.take('handoff')).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(grace.destroyBySubject('sub')).rejects.toBeInstanceOf(ServiceUnavailableError);
    await expect(grace.get('never-seen')).rejects.toBeInstanceOf(ServiceUnavailableError);
  });

  it('keeps edits and sign-outs made meanwhile and replays them when the store is back', async () => {
    const redis = flakyStore();
    const grace = new OutageGraceStore(redis.store, createLogger('silent', false), GRACE_MS);
    await grace.set('kept', { sub: 'sub', seenAt: 1 }, 600_000, index);
    await grace.set('ended', { sub: 'sub' }, 600_000, index);
    redis.fail(true);
    expect(await grace.update('kept', { sub: 'sub', seenAt: 2 }, 600_000, index)).toBe(true);
    await grace.destroy('ended');
    expect((await grace.get('kept'))?.data).toEqual({ sub: 'sub', seenAt: 2 });
    expect(await grace.get('ended')).toBeUndefined();
    redis.fail(false);
    await grace.flushPending();
    expect(redis.sessions.get('kept')?.data).toEqual({ sub: 'sub', seenAt: 2 });
    expect(redis.sessions.has('ended')).toBe(false);
  });
});
