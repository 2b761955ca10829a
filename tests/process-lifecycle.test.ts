import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request, Agent as HttpAgent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { connect, cookieHeader } from './helpers/sockets.ts';
import { startTestPortal } from './helpers/portal.ts';
import { startEchoUpstream } from './helpers/upstream.ts';
import { groupKeeper } from '../portal/apps/supervisor.ts';

/**
 * The portal as a real process (`node --import tsx portal/main.ts`), stopped the ways an operator
 * or a machine stops it: SIGTERM and SIGINT drain it (readiness first, requests in flight finish,
 * sockets told to go, exit 0 even with sockets open); SIGHUP stops it the same way; SIGKILL and a
 * failed start leave no app process behind.
 */
const ROOT = new URL('..', import.meta.url).pathname;
/** Generous: these machines are shared. Stopping is event-driven; this only bounds a failure. */
const DEADLINE_MS = 20_000;

/** A command app: serves its pid on PORT, and writes it where the test can find it. */
const commandApp = (pidFile: string) =>
  JSON.stringify({
    upstream: 'http://127.0.0.1:0',
    command: `node -e "require('fs').writeFileSync('${pidFile}', String(process.pid)); require('http').createServer((q, s) => s.end(String(process.pid))).listen(process.env.PORT, '127.0.0.1')"`,
  });

const SLOW_APP = `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use(async (ctx) => { await new Promise((r) => setTimeout(r, Number(ctx.query.ms ?? 0))); ctx.body = { done: true }; });
export default { app, realtime(nsp) { nsp.on('connection', (s) => s.on('ping', (ack) => ack('pong'))); } };
`;

let upstream: Awaited<ReturnType<typeof startEchoUpstream>>;
const started: ChildProcess[] = [];

beforeAll(async () => {
  upstream = await startEchoUpstream();
});
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  await upstream?.close();
});

interface PortalProcess {
  child: ChildProcess;
  origin: string;
  port: number;
  pidFile: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function startPortalProcess(env: Record<string, string> = {}, port?: number): Promise<PortalProcess> {
  const data = mkdtempSync(join(tmpdir(), 'atrium-proc-'));
  const pidFile = join(data, 'app.pid');
  const apps = makeAppsDir({
    'ea/slow/index.js': SLOW_APP,
    'ea/echo/app.json': JSON.stringify({ upstream: upstream.url }),
    'ea/runner/app.json': commandApp(pidFile),
  });
  port ??= await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, ['--import', 'tsx', 'portal/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, NODE_ENV: 'test', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: origin, APPS_DIR: apps, DATA_DIR: data, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, origin, port, pidFile, output: () => output, exited };
}

async function until<T>(probe: () => T | undefined | Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    const value = await Promise.resolve(probe()).catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Waits for the portal and its command app to be up; returns the app's pid. */
async function ready(p: PortalProcess): Promise<number> {
  await until(() => (p.output().includes('Atrium is listening') ? true : undefined), `the portal to listen: ${p.output()}`);
  return until(() => {
    const pid = Number(readFileSync(p.pidFile, 'utf8'));
    return pid > 0 ? pid : undefined;
  }, 'the command app to start');
}

/** A GET on a given kept-alive agent: status and whether the server said it will close. */
function getOn(agent: HttpAgent, url: string): Promise<{ status: number; connection: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body }));
    })
      .on('error', reject)
      .end();
  });
}

describe('a graceful stop', () => {
  it.each(['SIGTERM', 'SIGINT', 'SIGHUP'] as const)('on %s: readiness 503 at once, requests in flight finish, sockets are told to go, apps stop, exit 0', { timeout: 90_000 }, async (signal) => {
    const p = await startPortalProcess({ STOP_DRAIN_DELAY: '3', STOP_TIMEOUT: '15' });
    const appPid = await ready(p);
    const agent = new Agent(p.origin);
    const landed = await agent.login('ea@example.com', DEMO_PASSWORD);
    if (!agent.cookie('atrium.sid')) throw new Error(`not signed in: ${landed.status} ${landed.url} ${landed.text.slice(0, 400)}`);
    const kept = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    expect((await getOn(kept, `${p.origin}/readyz`)).status).toBe(200);

    const socket = await connect(p.origin, '/apps/ea/slow', cookieHeader(agent));
    if (!socket.ok) throw new Error(`socket refused: ${socket.message} with ${cookieHeader(agent)}: ${p.output()}`);
    const socketGone = new Promise<string>((resolve) => socket.socket.once('disconnect', (reason) => resolve(reason)));
    const ws = new WebSocket(`${p.origin.replace('http', 'ws')}/apps/ea/echo/socket`, { headers: { Cookie: cookieHeader(agent) } });
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve());
      ws.once('error', reject);
    });
    const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const inFlight = agent.get('/apps/ea/slow/?ms=2500', { Accept: 'application/json' });
    await new Promise((r) => setTimeout(r, 300));

    p.child.kill(signal);
    // Draining: readiness says so on a connection the balancer already holds, and asks it to close.
    const draining = await until(async () => {
      const r = await getOn(kept, `${p.origin}/readyz`);
      return r.status === 503 ? r : undefined;
    }, 'readiness to turn 503');
    expect(JSON.parse(draining.body)).toEqual({ status: 'stopping' });
    expect(draining.connection).toBe('close');
    // Still served during the drain delay, error pages included, each asking the client to close.
    const missing = await getOn(new HttpAgent({ keepAlive: true }), `${p.origin}/no-such-page`);
    expect(missing).toMatchObject({ status: 404, connection: 'close' });

    const finished = await inFlight;
    expect(finished.status).toBe(200);
    expect(finished.json()).toEqual({ done: true });
    // "transport close": socket.io clients reconnect (to another instance), unlike after a logout.
    expect(await socketGone).toBe('transport close');
    socket.socket.close();
    expect(await wsClosed).toBe(1001);
    expect(await p.exited).toEqual({ code: 0, signal: null });
    await until(() => (alive(appPid) ? undefined : true), `app process ${appPid} to end`);
    kept.destroy();
  });
});

describe('no orphans', () => {
  it('a SIGKILLed portal takes its app processes with it', { timeout: 60_000 }, async () => {
    const p = await startPortalProcess();
    const appPid = await ready(p);
    p.child.kill('SIGKILL');
    await p.exited;
    await until(() => (alive(appPid) ? undefined : true), `app process ${appPid} to end`);
  });

  it('the group keeper’s lifeline ends an app whose portal died without sending any parent-death signal', { timeout: 60_000 }, async () => {
    // The shell as the supervisor runs it, but started by a throwaway parent with no setpriv: only the
    // lifeline (fd 3) can end the app when that parent is SIGKILLed.
    const dir = mkdtempSync(join(tmpdir(), 'atrium-lifeline-'));
    const pidFile = join(dir, 'app.pid');
    const script = groupKeeper(`/bin/sh -c 'echo $$ > ${pidFile}; exec sleep 300'`);
    const parent = spawn(process.execPath, ['-e', `require('node:child_process').spawn('/bin/sh', ['-c', process.argv[1]], { detached: true, stdio: ['ignore', 'ignore', 'ignore', 'pipe'] }); setInterval(() => {}, 1000);`, script], { stdio: 'ignore' });
    const appPid = await until(async () => Number(readFileSync(pidFile, 'utf8').trim()) || undefined, 'the app to start');
    // Running, or gone (a zombie nobody has reaped yet counts as gone: it runs nothing).
    const running = (pid: number) => alive(pid) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    expect(running(appPid)).toBe(true);
    parent.kill('SIGKILL');
    await until(() => (running(appPid) ? undefined : true), 'the app to end with its parent');
  });

  it('a failed start (port in use) leaves no app process behind', { timeout: 60_000 }, async () => {
    const first = await startPortalProcess();
    await ready(first);
    const second = await startPortalProcess({}, first.port);
    const { code } = await second.exited;
    expect(code).not.toBe(0);
    expect(second.output()).toMatch(/EADDRINUSE|address already in use/i);
    const orphan = Number(readFileSync(second.pidFile, 'utf8'));
    if (orphan > 0) await until(() => (alive(orphan) ? undefined : true), `app process ${orphan} of the failed start to end`);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
  });

  it('an app whose shell dies is replaced, and what the shell left holding the port goes too', { timeout: 60_000 }, async () => {
    const data = mkdtempSync(join(tmpdir(), 'atrium-shell-'));
    const pidFile = join(data, 'pid');
    // A list, not one command: the shell stays as the parent, so killing it alone would leave node on the port.
    const command = `${JSON.parse(commandApp(pidFile)).command}; echo after`;
    const portal = await startTestPortal({ env: { APPS_DIR: makeAppsDir({ 'ea/runner/app.json': JSON.stringify({ upstream: 'http://127.0.0.1:0', command }) }) } });
    try {
      const agent = new Agent(portal.origin);
      await agent.login('ea@example.com', DEMO_PASSWORD);
      const served = async () => {
        const r = await agent.get('/apps/ea/runner/', { Accept: 'application/json' });
        return r.status === 200 ? Number(r.text) : undefined;
      };
      const firstPid = await until(served, 'the app to serve');
      const shell = portal.portal.supervisor.pid('/apps/ea/runner')!;
      expect(shell).not.toBe(firstPid);
      process.kill(shell, 'SIGKILL');
      await until(() => (alive(firstPid) ? undefined : true), 'the orphaned app process to end');
      const secondPid = await until(async () => {
        const pid = await served();
        return pid !== undefined && pid !== firstPid ? pid : undefined;
      }, 'a new copy to serve on the same port');
      expect(alive(secondPid)).toBe(true);
    } finally {
      await portal.stopAll();
    }
  });

  it('a previous portal’s leftover holding an app’s port is ended at start, and the app serves', { timeout: 60_000 }, async () => {
    // What a portal killed without its apps' parent-death signal (no setpriv) leaves behind: a
    // process group of its own on the app's port, and the portal's note of it in DATA_DIR.
    const port = await freePort();
    const leftover = spawn(process.execPath, ['-e', `require('http').createServer((q, s) => s.end('leftover')).listen(${port}, '127.0.0.1')`], { detached: true, stdio: 'ignore' });
    started.push(leftover);
    await until(async () => ((await fetch(`http://127.0.0.1:${port}/`)).ok ? true : undefined), 'the leftover to listen');
    const deadPortal = spawn('true');
    await new Promise((resolve) => deadPortal.once('exit', resolve));
    const stat = readFileSync(`/proc/${leftover.pid}/stat`, 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    const data = mkdtempSync(join(tmpdir(), 'atrium-ledger-'));
    writeFileSync(join(data, 'app-processes.json'), JSON.stringify({ '/apps/ea/runner': { pid: leftover.pid, startTime, owner: deadPortal.pid } }));
    const pidFile = join(data, 'app.pid');
    const app = JSON.stringify({ upstream: `http://127.0.0.1:${port}`, command: JSON.parse(commandApp(pidFile)).command });
    const portal = await startTestPortal({ env: { DATA_DIR: data, APPS_DIR: makeAppsDir({ 'ea/runner/app.json': app }) } });
    try {
      await until(() => (alive(leftover.pid!) ? undefined : true), 'the leftover to be ended');
      const agent = new Agent(portal.origin);
      await agent.login('ea@example.com', DEMO_PASSWORD);
      const served = await until(async () => {
        const r = await agent.get('/apps/ea/runner/', { Accept: 'application/json' });
        return r.status === 200 ? r.text : undefined;
      }, 'the app’s own copy to serve');
      expect(served).toBe(readFileSync(pidFile, 'utf8'));
    } finally {
      await portal.stopAll();
    }
  });

  it('never ends a process the note does not name exactly: a reused pid, or a running portal’s app', { timeout: 60_000 }, async () => {
    const bystander = () => {
      const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
      started.push(child);
      return child;
    };
    const reused = bystander();
    const anothersApp = bystander();
    const runningPortal = bystander();
    const startTimeOf = (pid: number) => {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
    };
    const data = mkdtempSync(join(tmpdir(), 'atrium-ledger-'));
    writeFileSync(
      join(data, 'app-processes.json'),
      JSON.stringify({
        // The pid now belongs to another process than the one noted (its start time differs).
        '/apps/ea/a': { pid: reused.pid, startTime: String(Number(startTimeOf(reused.pid!)) - 1), owner: 999_999_999 },
        // Noted by a portal that is still running (another process sharing the folder).
        '/apps/ea/b': { pid: anothersApp.pid, startTime: startTimeOf(anothersApp.pid!), owner: runningPortal.pid },
      }),
    );
    const portal = await startTestPortal({ env: { DATA_DIR: data, APPS_DIR: makeAppsDir({}) } });
    try {
      expect(alive(reused.pid!)).toBe(true);
      expect(alive(anothersApp.pid!)).toBe(true);
    } finally {
      await portal.stopAll();
    }
  });
});
