import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { createTestDatabase, type TestDatabase } from './helpers/databases.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, cookieHeader, disconnected } from './helpers/sockets.ts';

/** Two portal instances sharing MariaDB and Redis, as behind a load balancer. */
let database: TestDatabase;
let a: TestPortal;
let b: TestPortal;

const APPS = {
  'ea/room/index.js': `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = { user: ctx.state.user.email }; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.on('shout', (text) => nsp.emit('heard', text))); } };`,
};

beforeAll(async () => {
  database = await createTestDatabase('mysql');
  const env = { REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379', SESSION_SECRET: 'c'.repeat(64), APPS_DIR: makeAppsDir(APPS) };
  a = await startTestPortal({ database, env });
  b = await startTestPortal({ database, env });
});
afterAll(async () => {
  await a?.stopAll();
  await b?.stopAll();
  await database?.drop();
});

/** The same browser cookies, presented to the other instance (a load balancer's next pick). */
function onOther(agent: Agent, other: TestPortal): Agent {
  const moved = new Agent(other.origin);
  for (const [name, cookie] of agent.cookies) moved.cookies.set(name, cookie);
  return moved;
}

describe('several instances with REDIS_URL', () => {
  it('share sessions, readiness includes Redis', async () => {
    const agent = new Agent(a.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const there = onOther(agent, b);
    expect((await there.get('/me', { Accept: 'application/json' })).json()).toMatchObject({ email: 'ea@example.com', level: 'ea' });
    const ready = await (await fetch(`${b.origin}/readyz`)).json();
    expect(ready).toMatchObject({ status: 'ready', checks: { database: 'ok', redis: 'ok' } });
    expect(await database.target.kind).toBe('mysql');
  });

  it('a logout on one instance ends the session and disconnects its sockets on the other at once', async () => {
    const agent = new Agent(a.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const there = onOther(agent, b);
    expect((await there.get('/apps/ea/room/', { Accept: 'application/json' })).status).toBe(200); // cached on b now
    const socket = await connect(b.origin, '/apps/ea/room', cookieHeader(agent));
    if (!socket.ok) throw new Error(`refused: ${socket.message}`);
    // Event-driven across instances (Redis pub/sub): the deadline only bounds a failure.
    const gone = disconnected(socket.socket, 10_000);
    const csrf = await agent.csrfToken();
    expect((await agent.request('POST', '/logout', { form: { _csrf: csrf } })).status).toBe(303);
    await gone;
    expect((await there.get('/apps/ea/room/', { Accept: 'application/json' })).status).toBe(401);
  });

  it('a socket.io broadcast on one instance reaches sockets on the other', async () => {
    const agent = new Agent(a.origin);
    await agent.login('admin@example.com', DEMO_PASSWORD);
    const onA = await connect(a.origin, '/apps/ea/room', cookieHeader(agent));
    const onB = await connect(b.origin, '/apps/ea/room', cookieHeader(agent));
    if (!onA.ok || !onB.ok) throw new Error('expected both sockets');
    const heard = new Promise<string>((resolve) => onB.socket.once('heard', resolve));
    onA.socket.emit('shout', 'hello from a');
    expect(await heard).toBe('hello from a');
    onA.socket.close();
    onB.socket.close();
  });

  it('a directory change on one instance applies on the other', async () => {
    const agent = new Agent(b.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    expect((await agent.get('/apps/ea/room/', { Accept: 'application/json' })).status).toBe(403);
    await a.portal.admin.addMember('test', 'ea', 'stable@example.com');
    const started = Date.now();
    let status = 403;
    // A generous deadline on a shared machine: how soon it applies is the benchmark's business.
    while (status !== 200 && Date.now() - started < 15_000) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await agent.get('/apps/ea/room/', { Accept: 'application/json' })).status;
    }
    expect(status).toBe(200);
  });
});
