import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent, signInEveryDemoAccount } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { connect, cookieHeader, disconnected } from './helpers/sockets.ts';

/** A realtime app: greets each socket with who the portal says it is, and echoes. */
const realtimeApp = (name: string) => `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use((ctx) => { ctx.body = ${JSON.stringify(name)}; });
export default {
  app,
  realtime(nsp) {
    nsp.on('connection', (socket) => {
      socket.on('whoami', (ack) => ack({ app: ${JSON.stringify(name)}, user: socket.data.user }));
      socket.on('echo', (value, ack) => ack(value));
      socket.on('parse', (text) => JSON.parse(text)); // a bug: throws on bad input
      socket.on('reject', async () => { throw new Error('async bug'); });
    });
  },
};
`;
const APP_KIT = fileURLToPath(new URL('../lib/app-kit.ts', import.meta.url));

let portal: TestPortal;
let agents = new Map<string, Agent>();
const NAMESPACES = { stable: '/apps/stable/lobby', ea: '/apps/ea/chat', devel: '/apps/devel/lab' } as const;
const ALLOWED: Record<string, (keyof typeof NAMESPACES)[]> = {
  'admin@example.com': ['stable', 'ea', 'devel'],
  'devel@example.com': ['stable', 'ea', 'devel'],
  'ea@example.com': ['stable', 'ea'],
  'stable@example.com': ['stable'],
  'nobody@example.com': [],
};

beforeAll(async () => {
  const apps = makeAppsDir({
    'stable/lobby/index.js': realtimeApp('lobby'),
    'ea/chat/index.js': realtimeApp('chat'),
    'devel/lab/index.js': realtimeApp('lab'),
    'stable/vault/index.js': realtimeApp('vault'),
    'stable/vault/app.json': JSON.stringify({ groups: ['vault-keepers'] }),
    // defineApp(...) and the plain object behave the same.
    'ea/typed/index.js': `import Koa from ${JSON.stringify(KOA)}; import { defineApp } from ${JSON.stringify(APP_KIT)};
export default defineApp({ app: new Koa(), realtime(nsp) { nsp.on('connection', (s) => s.on('whoami', (ack) => ack({ app: 'typed', user: s.data.user }))); } });`,
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  agents = await signInEveryDemoAccount(portal.origin);
});
afterAll(async () => {
  await portal?.stopAll();
});

describe('socket.io namespaces behind the gate', () => {
  for (const [email, allowed] of Object.entries(ALLOWED)) {
    for (const [tier, namespace] of Object.entries(NAMESPACES) as [keyof typeof NAMESPACES, string][]) {
      const open = allowed.includes(tier);
      it(`${email} ${open ? 'connects to' : 'is refused'} ${namespace}`, async () => {
        const result = await connect(portal.origin, namespace, cookieHeader(agents.get(email)!));
        if (!open) {
          expect(result).toEqual({ ok: false, message: 'forbidden' });
          return;
        }
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        const hello = (await result.socket.timeout(2000).emitWithAck('whoami')) as { app: string; user: { email: string } };
        expect(hello.user.email).toBe(email);
        expect(await result.socket.timeout(2000).emitWithAck('echo', 'ping')).toBe('ping');
        result.socket.close();
      });
    }
  }

  it('works the same over HTTP long-polling', async () => {
    const result = await connect(portal.origin, NAMESPACES.ea, cookieHeader(agents.get('ea@example.com')!), ['polling']);
    expect(result.ok).toBe(true);
    if (result.ok) result.socket.close();
    expect(await connect(portal.origin, NAMESPACES.devel, cookieHeader(agents.get('ea@example.com')!), ['polling'])).toEqual({ ok: false, message: 'forbidden' });
  });

  it('treats defineApp(...) like the plain object', async () => {
    const result = await connect(portal.origin, '/apps/ea/typed', cookieHeader(agents.get('ea@example.com')!));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(((await result.socket.timeout(2000).emitWithAck('whoami')) as { app: string }).app).toBe('typed');
    result.socket.close();
  });

  it('applies per-app groups to sockets too', async () => {
    expect(await connect(portal.origin, '/apps/stable/vault', cookieHeader(agents.get('devel@example.com')!))).toEqual({ ok: false, message: 'forbidden' });
    const admin = await connect(portal.origin, '/apps/stable/vault', cookieHeader(agents.get('admin@example.com')!));
    expect(admin.ok).toBe(true);
    if (admin.ok) admin.socket.close();
  });
});

describe('hostile handshakes', () => {
  it('refuses a handshake without a cookie, with a forged or unsigned one, and an ended session', async () => {
    expect(await connect(portal.origin, NAMESPACES.stable)).toEqual({ ok: false, message: 'unauthenticated' });
    const real = agents.get('admin@example.com')!;
    const sid = real.cookie('atrium.sid')!.value;
    expect(await connect(portal.origin, NAMESPACES.stable, `atrium.sid=${sid}`)).toEqual({ ok: false, message: 'unauthenticated' });
    expect(await connect(portal.origin, NAMESPACES.stable, `atrium.sid=${sid}; atrium.sid.sig=forgedforgedforgedforgedfo`)).toEqual({ ok: false, message: 'unauthenticated' });
    expect(await connect(portal.origin, NAMESPACES.stable, 'atrium.sid=%00%ff; atrium.sid.sig=x'.repeat(50))).toEqual({ ok: false, message: 'unauthenticated' });
    // An expired session: the store still has it, but its expiry has passed.
    const ended = new Agent(portal.origin);
    await ended.login('stable@example.com', DEMO_PASSWORD);
    const endedSid = ended.cookie('atrium.sid')!.value;
    const row = await portal.portal.database.db.selectFrom('sessions').select('data').where('id', '=', endedSid).executeTakeFirstOrThrow();
    const data = { ...JSON.parse(row.data), _expire: Date.now() - 1000 };
    await portal.portal.sessions.set(endedSid, data, 60_000, { subject: data.sub });
    expect(await connect(portal.origin, NAMESPACES.stable, cookieHeader(ended))).toEqual({ ok: false, message: 'unauthenticated' });
  });

  it('refuses a handshake from a page on another origin, accepts one from the portal’s', async () => {
    const cookie = cookieHeader(agents.get('ea@example.com')!);
    expect(await connect(portal.origin, NAMESPACES.ea, cookie, ['websocket'], { Origin: 'https://evil.example' })).toEqual({ ok: false, message: 'forbidden' });
    const own = await connect(portal.origin, NAMESPACES.ea, cookie, ['websocket'], { Origin: portal.origin });
    expect(own.ok).toBe(true);
    if (own.ok) own.socket.close();
  });

  it('refuses the root namespace, unknown namespaces and path tricks', async () => {
    const cookie = cookieHeader(agents.get('ea@example.com')!);
    expect(await connect(portal.origin, '/', cookie)).toEqual({ ok: false, message: 'forbidden' });
    for (const ns of ['/apps/ea/chat/../../devel/lab', '/apps/DEVEL/lab', '/apps/devel/lab/', '/apps/devel/%6cab', '/apps/ea/nope']) {
      const result = await connect(portal.origin, ns, cookie);
      expect(result.ok, ns).toBe(false);
    }
  });

  it('answers raw websocket clients with socket.io error packets, never a crash', async () => {
    const url = portal.origin.replace('http', 'ws') + '/socket.io/?EIO=4&transport=websocket';
    const frames = await new Promise<string[]>((resolve, reject) => {
      const ws = new WebSocket(url);
      const seen: string[] = [];
      ws.on('message', (data) => {
        const text = data.toString();
        seen.push(text);
        if (text.startsWith('0')) ws.send('40/apps/devel/lab,');
        if (text.startsWith('44')) {
          ws.close();
          resolve(seen);
        }
      });
      ws.on('error', reject);
    });
    expect(frames.at(-1)).toBe('44/apps/devel/lab,{"message":"unauthenticated"}');
    // Garbage frames and a garbage engine.io query are refused politely.
    const junk = await fetch(`${portal.origin}/socket.io/?EIO=9&transport=carrier-pigeon`);
    expect(junk.status).toBe(400);
    expect((await fetch(`${portal.origin}/healthz`)).status).toBe(200);
  });
});

describe('a buggy app handler', () => {
  it('closes only the socket that triggered it; the portal and other sockets carry on', async () => {
    const cookie = cookieHeader(agents.get('devel@example.com')!);
    for (const event of ['parse', 'reject']) {
      const victim = await connect(portal.origin, NAMESPACES.ea, cookie);
      const bystander = await connect(portal.origin, NAMESPACES.ea, cookie);
      if (!victim.ok || !bystander.ok) throw new Error('expected sockets');
      const gone = disconnected(victim.socket, 2_000);
      victim.socket.emit(event, 'not json');
      expect(await gone).toBeLessThan(2_000);
      expect(await bystander.socket.timeout(2000).emitWithAck('echo', 'still here')).toBe('still here');
      bystander.socket.close();
    }
    expect((await fetch(`${portal.origin}/healthz`)).status).toBe(200);
  });
});

describe('revocation reaches sockets within a second', () => {
  it('logout disconnects that session’s sockets, not others', async () => {
    const a = new Agent(portal.origin);
    await a.login('ea@example.com', DEMO_PASSWORD);
    const b = agents.get('ea@example.com')!;
    const mine = await connect(portal.origin, NAMESPACES.ea, cookieHeader(a));
    const other = await connect(portal.origin, NAMESPACES.ea, cookieHeader(b));
    if (!mine.ok || !other.ok) throw new Error('expected both to connect');
    const csrf = await a.csrfToken();
    const gone = disconnected(mine.socket, 1_500);
    expect((await a.request('POST', '/logout', { form: { _csrf: csrf } })).status).toBe(303);
    expect(await gone).toBeLessThan(1_000);
    expect(other.socket.connected).toBe(true);
    other.socket.close();
  });

  it('demotion disconnects sockets on namespaces the user may no longer open, and only those', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    const lab = await connect(portal.origin, NAMESPACES.devel, cookieHeader(agent));
    const lobby = await connect(portal.origin, NAMESPACES.stable, cookieHeader(agent));
    if (!lab.ok || !lobby.ok) throw new Error('expected both to connect');
    const gone = disconnected(lab.socket, 1_500);
    await portal.portal.admin.removeMember('test', 'devel', 'devel@example.com');
    try {
      expect(await gone).toBeLessThan(1_000);
      await new Promise((r) => setTimeout(r, 300));
      expect(lobby.socket.connected).toBe(false); // devel@ is now in no group at all: no level
    } finally {
      await portal.portal.admin.addMember('test', 'devel', 'devel@example.com');
      lobby.socket.close();
    }
  });

  it('a revoked session and a disabled account are disconnected', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    const socket = await connect(portal.origin, NAMESPACES.stable, cookieHeader(agent));
    if (!socket.ok) throw new Error('expected to connect');
    const gone = disconnected(socket.socket, 1_500);
    await portal.portal.admin.revokeSession('test', 'stable@example.com', agent.cookie('atrium.sid')!.value);
    expect(await gone).toBeLessThan(1_000);

    await agent.login('stable@example.com', DEMO_PASSWORD);
    const again = await connect(portal.origin, NAMESPACES.stable, cookieHeader(agent));
    if (!again.ok) throw new Error('expected to connect');
    const goneAgain = disconnected(again.socket, 1_500);
    await portal.portal.admin.setDisabled('test', 'stable@example.com', true);
    try {
      expect(await goneAgain).toBeLessThan(1_000);
    } finally {
      await portal.portal.admin.setDisabled('test', 'stable@example.com', false);
    }
  });

  it('a session deleted by another process (the CLI) is noticed by the periodic check', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const socket = await connect(portal.origin, NAMESPACES.ea, cookieHeader(agent));
    if (!socket.ok) throw new Error('expected to connect');
    const sid = agent.cookie('atrium.sid')!.value;
    await portal.portal.database.db.deleteFrom('sessions').where('id', '=', sid).execute();
    portal.portal.sessions.forget(sid); // what a Redis invalidation message does across instances
    expect(await disconnected(socket.socket, 2_500)).toBeLessThan(2_000);
  });
});
