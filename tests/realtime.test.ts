import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../lib/cli.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent, signInEveryDemoAccount } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { type HostAgentInMode, MODES, type ModePortal, startModePortal } from './helpers/modes.ts';
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

let realtimeApps: string;

beforeAll(async () => {
  const apps = (realtimeApps = makeAppsDir({
    'stable/lobby/index.js': realtimeApp('lobby'),
    'ea/chat/index.js': realtimeApp('chat'),
    'devel/lab/index.js': realtimeApp('lab'),
    'stable/vault/index.js': realtimeApp('vault'),
    'stable/vault/app.json': JSON.stringify({ groups: ['vault-keepers'] }),
    // defineApp(...) and the plain object behave the same.
    'ea/typed/index.js': `import Koa from ${JSON.stringify(KOA)}; import { defineApp } from ${JSON.stringify(APP_KIT)};
export default defineApp({ app: new Koa(), realtime(nsp) { nsp.on('connection', (s) => s.on('whoami', (ack) => ack({ app: 'typed', user: s.data.user }))); } });`,
  }));
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  agents = await signInEveryDemoAccount(portal.origin);
});
afterAll(async () => {
  await portal?.stopAll();
});

const TIERS = { stable: 'lobby', ea: 'chat', devel: 'lab' } as const;
/** Long enough for any loaded machine: revocation is event-driven, so this only bounds a failure. */
const GONE_WITHIN_MS = 10_000;

describe.each(MODES)('socket.io namespaces behind the gate, with %s', (mode) => {
  let setup: ModePortal;
  const browsers = new Map<string, HostAgentInMode>();
  beforeAll(async () => {
    setup = await startModePortal(mode, { env: { APPS_DIR: realtimeApps } });
    for (const email of Object.keys(ALLOWED)) browsers.set(email, await setup.signedIn(email));
  });
  afterAll(async () => {
    await setup?.stopAll();
  });
  // Refused on an app origin, the browser never got a session there: the handshake has no cookie.
  const refusal = () => (mode === 'shared origin' ? ['forbidden'] : ['forbidden', 'unauthenticated']);

  for (const [email, allowed] of Object.entries(ALLOWED)) {
    for (const [tier, name] of Object.entries(TIERS) as [keyof typeof TIERS, string][]) {
      const open = allowed.includes(tier);
      it(`${email} ${open ? 'connects to' : 'is refused'} /apps/${tier}/${name}`, async () => {
        const result = await browsers.get(email)!.socket(tier, name);
        if (!open) {
          expect(result.ok).toBe(false);
          if (!result.ok) expect(refusal()).toContain(result.message);
          return;
        }
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        const hello = (await result.socket.timeout(5000).emitWithAck('whoami')) as { app: string; user: { email: string } };
        expect(hello.user.email).toBe(email);
        expect(await result.socket.timeout(5000).emitWithAck('echo', 'ping')).toBe('ping');
        result.socket.close();
      });
    }
  }

  it('works the same over HTTP long-polling', async () => {
    const ea = browsers.get('ea@example.com')!;
    const result = await ea.socket('ea', 'chat', ['polling']);
    expect(result.ok).toBe(true);
    if (result.ok) result.socket.close();
    const refused = await ea.socket('devel', 'lab', ['polling']);
    expect(refused.ok).toBe(false);
    if (!refused.ok) expect(refusal()).toContain(refused.message);
  });

  it('treats defineApp(...) like the plain object', async () => {
    const result = await browsers.get('ea@example.com')!.socket('ea', 'typed');
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(((await result.socket.timeout(5000).emitWithAck('whoami')) as { app: string }).app).toBe('typed');
    result.socket.close();
  });

  it('applies per-app groups to sockets too', async () => {
    const devel = await browsers.get('devel@example.com')!.socket('stable', 'vault');
    expect(devel.ok).toBe(false);
    if (!devel.ok) expect(refusal()).toContain(devel.message);
    const admin = await browsers.get('admin@example.com')!.socket('stable', 'vault');
    expect(admin.ok).toBe(true);
    if (admin.ok) admin.socket.close();
  });

  it('logout disconnects that session’s sockets, not others', async () => {
    const a = await setup.signedIn('ea@example.com');
    const b = browsers.get('ea@example.com')!;
    const mine = await a.socket('ea', 'chat');
    const other = await b.socket('ea', 'chat');
    if (!mine.ok || !other.ok) throw new Error('expected both to connect');
    const gone = disconnected(mine.socket, GONE_WITHIN_MS);
    await a.logout();
    await gone;
    expect(other.socket.connected).toBe(true);
    other.socket.close();
  });

  it('demotion disconnects sockets on namespaces the user may no longer open, and only those', async () => {
    const browser = await setup.signedIn('devel@example.com');
    const lab = await browser.socket('devel', 'lab');
    const chat = await browser.socket('ea', 'chat');
    if (!lab.ok || !chat.ok) throw new Error('expected both to connect');
    await setup.portal.portal.admin.addMember('test', 'ea', 'devel@example.com');
    const gone = disconnected(lab.socket, GONE_WITHIN_MS);
    await setup.portal.portal.admin.removeMember('test', 'devel', 'devel@example.com');
    try {
      await gone;
      // Still ea: the ea namespace stays open (an ack round-trip proves it is served, not just unclosed).
      expect(await chat.socket.timeout(5000).emitWithAck('echo', 'still ea')).toBe('still ea');
    } finally {
      await setup.portal.portal.admin.addMember('test', 'devel', 'devel@example.com');
      await setup.portal.portal.admin.removeMember('test', 'ea', 'devel@example.com');
      chat.socket.close();
    }
  });

  it('a revoked session and a disabled account are disconnected', async () => {
    const browser = await setup.signedIn('stable@example.com');
    const socket = await browser.socket('stable', 'lobby');
    if (!socket.ok) throw new Error('expected to connect');
    const gone = disconnected(socket.socket, GONE_WITHIN_MS);
    await setup.portal.portal.admin.revokeSession('test', 'stable@example.com', browser.portalSessionId());
    await gone;

    const again = await (await setup.signedIn('stable@example.com')).socket('stable', 'lobby');
    if (!again.ok) throw new Error('expected to connect');
    const goneAgain = disconnected(again.socket, GONE_WITHIN_MS);
    await setup.portal.portal.admin.setDisabled('test', 'stable@example.com', true);
    try {
      await goneAgain;
    } finally {
      await setup.portal.portal.admin.setDisabled('test', 'stable@example.com', false);
    }
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
      const gone = disconnected(victim.socket, GONE_WITHIN_MS);
      victim.socket.emit(event, 'not json');
      await gone;
      expect(await bystander.socket.timeout(2000).emitWithAck('echo', 'still here')).toBe('still here');
      bystander.socket.close();
    }
    expect((await fetch(`${portal.origin}/healthz`)).status).toBe(200);
  });
});

describe('revocation from outside this process', () => {
  it('a revocation by the CLI (its own session store on the same database, no events) reaches open sockets', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const socket = await connect(portal.origin, NAMESPACES.ea, cookieHeader(agent));
    if (!socket.ok) throw new Error('expected to connect');
    let out = '';
    // What `npm run atrium -- sessions revoke` runs: a SqlSessionStore of its own, not the portal's cache.
    const code = await runCli(['sessions', 'revoke', 'ea@example.com'], portal.portal.database, { out: (t) => (out += t), err: (t) => (out += t) }, 'cli:test');
    expect(code, out).toBe(0);
    await disconnected(socket.socket, GONE_WITHIN_MS);
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
  });
});
