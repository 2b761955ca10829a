import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { freePort } from '../lib/free-port.ts';
import { ProfileFields } from '../lib/profile/fields.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { LEVEL, startLoggedPortal, type LogLine } from './helpers/logged-portal.ts';
import type { TestPortal } from './helpers/portal.ts';
import { startPrivateMariaDb, type PrivateMariaDb } from './helpers/private-mariadb.ts';
import { slowest, startRequestLoops, summary, type Answer, type RequestLoops, type Send } from './helpers/request-loop.ts';
import { cookieHeader } from './helpers/sockets.ts';

/**
 * The database going away under a running portal (issue 11): stopped (connections refused) and
 * frozen (SIGSTOP: connections accepted, nothing answers), each under light load — a signed-in
 * user's app requests, the launcher, /readyz, in loops. Throughout: no 500 and no hang; signed-in
 * app requests keep working from the last good session (the grace); what truly needs the database
 * (sign-in, logout, a profile write) answers 503 with Retry-After; /readyz says 'failing' promptly.
 * When the database is back everything recovers by itself, and what was written before is there.
 * Then start-up against a database that is not there: one clear line per attempt, a clear exit.
 *
 * The database is the test's own (tests/helpers/private-mariadb.ts); the shared one is never touched.
 * Nothing here asserts a duration: states are awaited with generous deadlines, and "answers within a
 * deadline" means well over the portal's DATABASE_TIMEOUT of 3 s.
 */
const DATABASE_TIMEOUT_S = 3;
/** One request may take this long before it counts as hung: five times the database timeout. */
const REQUEST_DEADLINE_MS = 15_000;
/** Waiting for a state to arrive (the database back, readiness flipping). */
const EVENT_DEADLINE_MS = 60_000;
/**
 * How long each outage lasts at least: past the session cache's 5 s (so sessions are served from
 * their last good copies, not from fresh entries) and past a touch of the idle timeout (60 s here:
 * the last use is written back every 6 s), so that bookkeeping write meets the outage too.
 */
const OUTAGE_DWELL_MS = 8_000;

const ROOT = new URL('..', import.meta.url).pathname;

async function until<T>(probe: () => T | undefined | Promise<T | undefined>, what: string, deadlineMs = EVENT_DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await Promise.resolve(probe()).catch(() => undefined);
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the database going away under a running portal', () => {
  let db: PrivateMariaDb | undefined;
  let portal: (TestPortal & { log: LogLine[] }) | undefined;
  let loops: RequestLoops | undefined;
  const worker = () => agents.worker!;
  const agents: { worker?: Agent; leaver?: Agent } = {};
  const leaverCsrf: { token?: string } = {};
  const DB_NAME = 'atrium_outage';

  /** A request with an agent's cookies that gives up after the deadline (the agent's own has none). */
  const send =
    (agent: Agent | undefined, path: string, accept: string): Send =>
    async (signal) => {
      const response = await fetch(new URL(path, portal!.origin), { headers: { Accept: accept, ...(agent ? { Cookie: cookieHeader(agent) } : {}) }, redirect: 'manual', signal });
      return { status: response.status, headers: response.headers, text: await response.text() };
    };
  const once = async (agent: Agent | undefined, path: string, accept = 'application/json') => {
    const started = Date.now();
    const answer = await send(agent, path, accept)(AbortSignal.timeout(REQUEST_DEADLINE_MS));
    return { ...answer, ms: Date.now() - started };
  };

  /** Waits until a loop has answered `count` times in this phase, the last with `status` if given. */
  const answered = (phase: string, loop: string, count: number, status?: number) =>
    until(() => {
      const mine = loops!.of(phase, loop);
      return mine.length >= count && (status === undefined || mine.at(-1)?.status === status) ? mine : undefined;
    }, `${loop} to answer ${count}× ${status ?? ''} in phase ${phase}: ${summary(loops!.of(phase))}`);

  /** The whole-phase checks: no 500, no hang, nothing but 200 for the signed-in user's apps and launcher. */
  const expectNoFailures = (phase: string) => {
    const answers = loops!.of(phase);
    const bad = answers.filter((a) => a.status === 0 || (a.status >= 500 && !(a.loop === 'readyz' && a.status === 503)));
    expect(bad, `phase ${phase}: ${summary(answers)}`).toEqual([]);
    const app = answers.filter((a) => a.loop !== 'readyz');
    expect(app.every((a) => a.status === 200), `phase ${phase}: ${summary(app)}`).toBe(true);
    console.info(`[outage-database] ${phase}: ${summary(answers)}; slowest ms ${JSON.stringify(slowest(answers))}`);
  };

  /**
   * The portal's own account of it: never a 500 ("request failed"); a line as the database goes
   * and one as it comes back — a few at most, not one per failed request.
   */
  const logSince = (from: number) => portal!.log.slice(from);
  const expectLoggedOutage = (lines: LogLine[]) => {
    expect(lines.filter((l) => l.msg === 'request failed'), 'no request failed with a 500').toEqual([]);
    const where = `127.0.0.1:${db!.port}`;
    const availability = lines.filter((l) => l.msg.startsWith(`database at ${where} not answering`) || l.msg === `database at ${where} answering again`);
    expect(availability[0]).toMatchObject({ level: LEVEL.warn, reason: expect.any(String) });
    expect(availability[0]!.msg).toContain('not answering');
    expect(availability.at(-1)).toMatchObject({ level: LEVEL.info, msg: `database at ${where} answering again` });
    expect(availability.length, JSON.stringify(availability)).toBeLessThanOrEqual(6);
  };
  const logMark: { at: number } = { at: 0 };

  /** A browser that starts signing in: /login, then the provider; the last hop is what it gets. */
  const signInAttempt = async (): Promise<AgentResponse> => {
    const hops = await new Agent(portal!.origin).follow('/login?returnTo=/');
    return hops.at(-1)!;
  };

  beforeAll(async () => {
    db = await startPrivateMariaDb();
    const url = db.url(DB_NAME);
    // The server is removed whole in afterAll: nothing to drop.
    portal = await startLoggedPortal({ DATABASE_URL: url, DATABASE_TIMEOUT: String(DATABASE_TIMEOUT_S), SESSION_IDLE_TIMEOUT: '60' });
    agents.worker = new Agent(portal.origin);
    await agents.worker.login('ea@example.com', DEMO_PASSWORD);
    agents.leaver = new Agent(portal.origin);
    await agents.leaver.login('stable@example.com', DEMO_PASSWORD);
    leaverCsrf.token = (await agents.leaver.get('/me', { Accept: 'application/json' })).json<{ csrf: string }>().csrf;

    // Written before the outage, looked for after it: a profile change, an access request, a group change.
    await new ProfileFields(portal.portal.database).add({ name: 'desk', label: 'Desk', type: 'text' });
    const csrf = (await worker().get('/me', { Accept: 'application/json' })).json<{ csrf: string }>().csrf;
    const saved = await worker().request('POST', '/profile', { json: { desk: 'blue-7' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' } });
    expect(saved.status, saved.text).toBe(200);
    const asked = await worker().request('POST', '/access-requests', { json: { level: 'admin', reason: 'to see the audit log' }, headers: { 'X-CSRF-Token': csrf, Accept: 'application/json' } });
    expect(asked.status, asked.text).toBe(201);
    await portal.portal.admin.addMember('outage-test', 'devel', 'ea@example.com');
    await portal.portal.watcher.refresh();

    loops = startRequestLoops(
      {
        app: send(agents.worker, '/apps/ea/notes/api/notes', 'application/json'),
        launcher: send(agents.worker, '/', 'text/html'),
        devel: send(agents.worker, '/apps/devel/inspector/', 'application/json'),
        readyz: send(undefined, '/readyz', 'application/json'),
      },
      REQUEST_DEADLINE_MS,
    );
  }, 180_000);

  afterAll(async () => {
    await loops?.stop();
    // Whatever state a failed test left it in: running again first, so the portal's stop is prompt.
    db?.thaw();
    await portal?.stopAll().catch((err: unknown) => console.error('portal stop failed', err));
    await db?.cleanup();
  }, 120_000);

  it('while it is up, everything answers 200', async () => {
    loops!.phase('up');
    await answered('up', 'app', 5);
    await answered('up', 'readyz', 3, 200);
    expectNoFailures('up');
    expect(loops!.of('up', 'readyz').every((a) => a.status === 200)).toBe(true);
    const launcher = await once(worker(), '/', 'text/html');
    expect(launcher.text).toContain('data-testid="request-status"');
  });

  it('stopped: no 500 and no hang; signed-in users carry on; sign-in, logout and writes answer 503 with Retry-After', { timeout: 120_000 }, async () => {
    logMark.at = portal!.log.length;
    loops!.phase('stopped');
    await db!.stop();
    await answered('stopped', 'readyz', 1, 503);
    const stoppedAt = Date.now();
    await until(() => Date.now() - stoppedAt >= OUTAGE_DWELL_MS, 'the outage to last');
    await answered('stopped', 'app', 3);

    const readiness = await once(undefined, '/readyz');
    expect(readiness.status).toBe(503);
    expect(JSON.parse(readiness.text)).toMatchObject({ status: 'not ready', checks: { database: 'failing' } });

    const signIn = await signInAttempt();
    expect(signIn.status, signIn.text.slice(0, 300)).toBe(503);
    expect(signIn.headers.get('retry-after')).toMatch(/^\d+$/);

    const write = await worker().request('POST', '/profile', { json: { desk: 'red-2' }, headers: { 'X-CSRF-Token': (await worker().get('/me', { Accept: 'application/json' })).json<{ csrf: string }>().csrf, Accept: 'application/json' } });
    expect(write.status, write.text).toBe(503);
    expect(write.json()).toMatchObject({ error: 'unavailable' });
    expect(write.headers.get('retry-after')).toMatch(/^\d+$/);

    const logout = await agents.leaver!.request('POST', '/logout', { form: { _csrf: leaverCsrf.token! } });
    expect(logout.status, logout.text.slice(0, 300)).toBe(503);
    expect(logout.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(logout.text).toContain('The database is not answering');

    // The launcher still lists the apps; the access requests it cannot read are left out.
    const launcher = await once(worker(), '/', 'text/html');
    expect(launcher.status).toBe(200);
    expect(launcher.text).toContain('Notes');
    expect(launcher.text).not.toContain('data-testid="request-status"');

    expectNoFailures('stopped');
  });

  it('started again: everything recovers by itself', { timeout: 120_000 }, async () => {
    loops!.phase('restarted');
    await db!.start();
    await answered('restarted', 'readyz', 1, 200);
    await answered('restarted', 'app', 3, 200);
    expectNoFailures('restarted');
    expect(loops!.of('restarted', 'readyz').every((a) => a.status === 200 || a.status === 503)).toBe(true);
    // The sign-out that could not happen did not happen: the session is there, and ends now.
    expect((await agents.leaver!.get('/me', { Accept: 'application/json' })).status).toBe(200);
    const logout = await agents.leaver!.request('POST', '/logout', { form: { _csrf: leaverCsrf.token! } });
    expect(logout.status).toBe(303);
    expect((await agents.leaver!.get('/me', { Accept: 'application/json' })).status).toBe(401);
    expect((await signInAttempt()).status).toBe(200);
    expectLoggedOutage(logSince(logMark.at));
  });

  it('frozen (SIGSTOP): no 500 and no hang; /readyz says failing promptly; sign-in answers 503', { timeout: 120_000 }, async () => {
    logMark.at = portal!.log.length;
    loops!.phase('frozen');
    db!.freeze();
    await answered('frozen', 'readyz', 1, 503);
    const frozenAt = Date.now();
    await until(() => Date.now() - frozenAt >= OUTAGE_DWELL_MS, 'the outage to last');
    await answered('frozen', 'app', 3);

    const readiness = await once(undefined, '/readyz');
    expect(readiness.status).toBe(503);
    expect(JSON.parse(readiness.text)).toMatchObject({ checks: { database: 'failing' } });
    console.info(`[outage-database] frozen: /readyz answered in ${readiness.ms} ms`);

    const signIn = await signInAttempt();
    expect(signIn.status, signIn.text.slice(0, 300)).toBe(503);
    expect(signIn.headers.get('retry-after')).toMatch(/^\d+$/);

    const launcher = await once(worker(), '/', 'text/html');
    expect(launcher.status).toBe(200);
    expect(launcher.text).toContain('Notes');
    console.info(`[outage-database] frozen: the launcher answered in ${launcher.ms} ms`);

    expectNoFailures('frozen');
  });

  it('continued (SIGCONT): everything recovers by itself, and nothing written before is lost', { timeout: 120_000 }, async () => {
    loops!.phase('thawed');
    db!.thaw();
    await answered('thawed', 'readyz', 1, 200);
    await answered('thawed', 'app', 3, 200);
    expectNoFailures('thawed');
    expect((await signInAttempt()).status).toBe(200);
    expectLoggedOutage(logSince(logMark.at));

    const me = (await worker().get('/me', { Accept: 'application/json' })).json<{ level: string; groups: string[]; profile: Record<string, unknown> }>();
    expect(me).toMatchObject({ level: 'devel', profile: { desk: 'blue-7' } });
    expect(me.groups).toContain('devel');
    const launcher = await until(async () => {
      const page = await once(worker(), '/', 'text/html');
      return page.text.includes('data-testid="request-status"') ? page : undefined;
    }, 'the access request back on the launcher');
    expect(launcher.status).toBe(200);

    // And in the database itself, read afresh.
    const connection = await mysql.createConnection({ uri: db!.url(DB_NAME) });
    try {
      const [users] = await connection.query<mysql.RowDataPacket[]>("select profile from users where email = 'ea@example.com'");
      expect(JSON.parse(users[0]!.profile as string)).toMatchObject({ desk: 'blue-7' });
      const [members] = await connection.query<mysql.RowDataPacket[]>(
        "select g.name from group_members m join `groups` g on g.id = m.group_id join users u on u.id = m.user_id where u.email = 'ea@example.com'",
      );
      expect(members.map((m) => m.name)).toEqual(expect.arrayContaining(['ea', 'devel']));
    } finally {
      await connection.end();
    }
    const all: Answer[] = loops!.answers;
    console.info(`[outage-database] all phases: ${all.length} answers, slowest ms ${JSON.stringify(slowest(all))}`);
  });
});

describe('start-up with the database down', () => {
  interface Run {
    output(): string;
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
    kill(): void;
  }
  const children: Run[] = [];
  const folders: string[] = [];
  let db: PrivateMariaDb | undefined;

  beforeAll(async () => {
    // Installed, not started: each test decides when it runs.
    db = await startPrivateMariaDb({ started: false });
  }, 120_000);
  afterAll(async () => {
    for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.exited));
    for (const folder of folders) rmSync(folder, { recursive: true, force: true });
    await db?.cleanup();
  }, 60_000);

  /** The portal as an operator runs it: `node --import tsx portal/main.ts`, configured by the environment. */
  function startPortalProcess(env: Record<string, string>): Run {
    const data = mkdtempSync(join(tmpdir(), 'atrium-dbstart-'));
    folders.push(data);
    mkdirSync(join(data, 'apps'));
    const child = spawn(process.execPath, ['--import', 'tsx', 'portal/main.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, NODE_ENV: 'test', HOST: '127.0.0.1', DATA_DIR: data, APPS_DIR: join(data, 'apps'), LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const run = {
      output: () => output,
      exited,
      kill: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      },
    };
    children.push(run);
    return run;
  }

  const attemptLines = (output: string, where: string) => output.split('\n').filter((line) => line.includes(`database at ${where} not reachable`));
  /** A stack trace's frames ("    at fn (file:line)"): none belong in what an operator reads. */
  const stackFrames = (output: string) => output.split('\n').filter((line) => /^\s+at .+[:(]/.test(line));

  it('refused: one clear line per attempt naming host and port, then a clear exit', { timeout: 90_000 }, async () => {
    const port = await freePort();
    const where = `127.0.0.1:${port}`;
    const run = startPortalProcess({ PORT: String(await freePort()), DATABASE_URL: `mysql://root@${where}/atrium`, DATABASE_START_TIMEOUT: '4' });
    const { code } = await run.exited;
    const output = run.output();
    expect(code, output).toBe(1);
    const lines = attemptLines(output, where);
    expect(lines.length, output).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line).toContain('ECONNREFUSED');
    expect(output).toContain(`Atrium cannot start: no database answered at ${where}`);
    expect(output).toContain('DATABASE_START_TIMEOUT');
    expect(stackFrames(output), output).toEqual([]);
  });

  it('frozen: each attempt times out (ETIMEDOUT) rather than hanging, then a clear exit', { timeout: 90_000 }, async () => {
    await db!.start();
    db!.freeze();
    try {
      const where = `127.0.0.1:${db!.port}`;
      const run = startPortalProcess({ PORT: String(await freePort()), DATABASE_URL: db!.url('atrium_frozen_start'), DATABASE_TIMEOUT: '1', DATABASE_START_TIMEOUT: '3' });
      const { code } = await run.exited;
      const output = run.output();
      expect(code, output).toBe(1);
      const lines = attemptLines(output, where);
      expect(lines.length, output).toBeGreaterThanOrEqual(1);
      for (const line of lines) expect(line).toContain('ETIMEDOUT');
      expect(output).toContain(`Atrium cannot start: no database answered at ${where}`);
      expect(stackFrames(output), output).toEqual([]);
    } finally {
      db!.thaw();
      await db!.stop();
    }
  });

  it('late: it keeps trying, and starts once the database is there', { timeout: 120_000 }, async () => {
    const where = `127.0.0.1:${db!.port}`;
    const portalPort = await freePort();
    const run = startPortalProcess({ PORT: String(portalPort), PUBLIC_URL: `http://127.0.0.1:${portalPort}`, DATABASE_URL: db!.url('atrium_late_start'), DATABASE_START_TIMEOUT: '90' });
    await until(() => attemptLines(run.output(), where).length >= 2, `two attempts: ${run.output()}`);
    await db!.start();
    await until(() => run.output().includes('Atrium is listening'), `the portal to listen: ${run.output()}`, 90_000);
    const ready = await until(async () => {
      const response = await fetch(`http://127.0.0.1:${portalPort}/readyz`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
      return response.status === 200 ? response : undefined;
    }, 'readiness');
    expect(ready.status).toBe(200);
    expect(stackFrames(run.output()), run.output()).toEqual([]);
    run.kill();
    await run.exited;
  });
});
