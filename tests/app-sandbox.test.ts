import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { ConfigError } from '../lib/errors.ts';
import { Agent } from './helpers/agent.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * `command` apps run outside the portal's reach (issue 9): with APPS_USER a hostile app process
 * cannot read the portal's environment, database or keys, and with or without it the process gets
 * an allow-listed environment. The same probe run without APPS_USER (as root) is the control: there
 * it does read the portal's environ, so the failures seen under APPS_USER are the sandbox's doing.
 */

const APPS_USER = 'atrium-apps';
const REPO = fileURLToPath(new URL('..', import.meta.url));
const PROBE = fileURLToPath(new URL('./fixtures/sandbox-probe.py', import.meta.url));
const PROBE_PREFIX = '/apps/ea/probe';

/** The account .ci/run creates; without it (or without root) this file fails rather than skips. */
function appsAccount(): { uid: number; gid: number; home: string } {
  const howTo = `.ci/run creates it as root (useradd --system --no-create-home --shell /usr/sbin/nologin ${APPS_USER})`;
  if (process.geteuid?.() !== 0) {
    throw new Error(`tests/app-sandbox.test.ts must run as root: it starts command apps as the OS user ${APPS_USER}; run it as CI does (${howTo})`);
  }
  const entry = spawnSync('getent', ['passwd', APPS_USER], { encoding: 'utf8' });
  const [, , uid, gid, , home] = entry.stdout.trim().split(':');
  if (entry.status !== 0 || uid === undefined || gid === undefined || home === undefined) {
    throw new Error(`the OS user ${APPS_USER} does not exist on this machine; ${howTo}`);
  }
  return { uid: Number(uid), gid: Number(gid), home };
}
const account = appsAccount();

/**
 * The interpreter the apps user finds on PATH, by absolute path, for both runs: a wrapper such as a
 * pyenv shim under root's home would add variables of its own and blur what the portal passed on.
 */
function appsPython(): string {
  const found = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { uid: account.uid, gid: account.gid, cwd: '/', env: { PATH: process.env.PATH }, encoding: 'utf8' });
  const path = found.stdout?.trim();
  if (found.status !== 0 || !path) throw new Error(`${APPS_USER} cannot run python3 from PATH (${found.error?.message ?? found.stderr}); install python3 where every user can run it`);
  return path;
}
const PYTHON = appsPython();

// The portal runs in this process, so its environment is this process's: give it secrets to steal.
// CANARY has a name no deny-list would know, so only an allow-list keeps it out of apps.
const SECRETS = {
  SESSION_SECRET: `sandbox-session-${randomBytes(16).toString('hex')}`,
  IDP_HOOK_SECRET: `sandbox-hook-${randomBytes(16).toString('hex')}`,
  ATRIUM_SANDBOX_CANARY: `sandbox-canary-${randomBytes(16).toString('hex')}`,
};
const savedEnv = Object.fromEntries(Object.keys(SECRETS).map((name) => [name, process.env[name]]));
Object.assign(process.env, SECRETS);
afterAll(() => {
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

/**
 * Variables an app may inherit from the portal (portal/apps/app-sandbox.ts), what it is given, and
 * PWD, which /bin/sh (the command runs through it) sets itself.
 */
const ALLOWED = /^(PATH|LANG|LANGUAGE|LC_[A-Z_]+|TZ|TERM|NODE_ENV|TMPDIR|NO_COLOR|FORCE_COLOR|PYTHONUNBUFFERED|PYTHONDONTWRITEBYTECODE|PYTHONIOENCODING|SSL_CERT_FILE|SSL_CERT_DIR|NODE_EXTRA_CA_CERTS|HOME|USER|LOGNAME|PORT|PWD)$/;

interface Layout {
  root: string;
  dataDir: string;
  dbFile: string;
  appsDir: string;
}

/**
 * A portal install as an older version left it: DATA_DIR 0755 with a 0644 secret in it, and the
 * database (with WAL companions) 0644 in a folder anyone may enter, so only the file's own mode can
 * protect it. The probe app sits in an APPS_DIR the apps user can read.
 */
function makeLayout(): Layout {
  const root = mkdtempSync(join(tmpdir(), 'atrium-sandbox-'));
  chmodSync(root, 0o755);
  const dataDir = join(root, 'data');
  mkdirSync(dataDir, { mode: 0o755 });
  chmodSync(dataDir, 0o755);
  writeFileSync(join(dataDir, 'session-secret'), `${randomBytes(32).toString('hex')}\n`, { mode: 0o644 });
  chmodSync(join(dataDir, 'session-secret'), 0o644);
  const dbDir = join(root, 'db');
  mkdirSync(dbDir, { mode: 0o755 });
  chmodSync(dbDir, 0o755);
  const dbFile = join(dbDir, 'atrium.sqlite');
  for (const file of [dbFile, `${dbFile}-wal`, `${dbFile}-shm`]) {
    writeFileSync(file, '');
    chmodSync(file, 0o644);
  }
  const appsDir = join(root, 'apps');
  const appDir = join(appsDir, 'ea', 'probe');
  mkdirSync(appDir, { recursive: true });
  for (const dir of [appsDir, join(appsDir, 'ea'), appDir]) chmodSync(dir, 0o755);
  copyFileSync(PROBE, join(appDir, 'probe.py'));
  // The portal's pid on the command line: the probe tries /proc/<pid>/environ.
  writeFileSync(join(appDir, 'app.json'), JSON.stringify({ title: 'Probe', upstream: 'http://127.0.0.1:0', command: `${PYTHON} probe.py ${process.pid}` }));
  for (const file of ['probe.py', 'app.json']) chmodSync(join(appDir, file), 0o644);
  return { root, dataDir, dbFile, appsDir };
}

function startProbePortal(layout: Layout, env: Record<string, string> = {}): Promise<TestPortal> {
  return startTestPortal({
    database: { target: { kind: 'sqlite', file: layout.dbFile }, url: `sqlite:${layout.dbFile}`, drop: async () => {} },
    env: { APPS_DIR: layout.appsDir, DATA_DIR: layout.dataDir, SESSION_SECRET: SECRETS.SESSION_SECRET, IDP_HOOK_SECRET: SECRETS.IDP_HOOK_SECRET, ...env },
  });
}

interface Attempt {
  ok: boolean;
  error?: string;
}
interface ProbeReport {
  uid: number;
  euid: number;
  gid: number;
  groups: number[];
  env: Record<string, string>;
  portalEnviron: Attempt & { names?: string[] };
  reads: Record<string, Attempt>;
  lists: Record<string, Attempt>;
}

/** Every file of the portal's: all of DATA_DIR and the database with its companions. */
function portalFiles(layout: Layout): string[] {
  const dbDir = join(layout.dbFile, '..');
  return [...readdirSync(layout.dataDir).map((name) => join(layout.dataDir, name)), ...readdirSync(dbDir).map((name) => join(dbDir, name))];
}

/** Signs in as ea and asks the probe (through the portal) to try everything; waits for it to be up. */
async function runProbe(portal: TestPortal, layout: Layout): Promise<ProbeReport> {
  const agent = new Agent(portal.origin);
  await agent.login('ea@example.com', DEMO_PASSWORD);
  const query = new URLSearchParams([
    ...portalFiles(layout).map((file): [string, string] => ['read', file]),
    ['list', layout.dataDir],
    ['list', `/proc/${process.pid}/fd`],
  ]);
  return waitFor(async () => {
    const r = await agent.get(`${PROBE_PREFIX}/?${query}`, { Accept: 'application/json' });
    return r.status === 200 ? (r.json() as ProbeReport) : undefined;
  }, 'the probe app to answer through the portal');
}

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8);
}

describe(`with APPS_USER=${APPS_USER}`, () => {
  let layout: Layout;
  let portal: TestPortal;
  let report: ProbeReport;

  beforeAll(async () => {
    layout = makeLayout();
    portal = await startProbePortal(layout, { APPS_USER });
    report = await runProbe(portal, layout);
  });
  afterAll(async () => {
    await portal?.stopAll();
    if (layout) rmSync(layout.root, { recursive: true, force: true });
  });

  it('says command apps are isolated, and as whom', () => {
    expect(portal.portal.supervisor.isolation).toEqual({ appsUser: APPS_USER, isolated: true, reason: expect.stringContaining(APPS_USER) });
  });

  it('runs the app process as the apps user, without root’s groups', () => {
    expect(report).toMatchObject({ uid: account.uid, euid: account.uid, gid: account.gid });
    expect(report.groups.filter((g) => g !== account.gid)).toEqual([]);
    // Seen from outside as well: the process the supervisor started belongs to the apps user.
    const pid = portal.portal.supervisor.pid(PROBE_PREFIX);
    expect(pid).toBeDefined();
    expect(statSync(`/proc/${pid}`).uid).toBe(account.uid);
  });

  it('cannot read the portal’s environment', () => {
    expect(report.portalEnviron).toEqual({ ok: false, error: 'EACCES' });
    expect(report.lists[`/proc/${process.pid}/fd`]).toEqual({ ok: false, error: 'EACCES' });
  });

  it('cannot read the database, its companions or anything in DATA_DIR', () => {
    const files = Object.keys(report.reads);
    expect(files).toEqual(expect.arrayContaining([layout.dbFile, `${layout.dbFile}-wal`, `${layout.dbFile}-shm`, join(layout.dataDir, 'session-secret')]));
    for (const file of files) expect(report.reads[file], file).toEqual({ ok: false, error: 'EACCES' });
    expect(report.lists[layout.dataDir]).toEqual({ ok: false, error: 'EACCES' });
  });

  it('tightened what the older install left open: DATA_DIR 0700, its files and the database 0600', () => {
    expect(mode(layout.dataDir)).toBe('700');
    for (const file of portalFiles(layout)) expect(mode(file), file).toBe('600');
  });

  it('gives the app an allow-listed environment with its own identity and none of the portal’s secrets', () => {
    const { env } = report;
    expect(env).toMatchObject({ HOME: account.home, USER: APPS_USER, LOGNAME: APPS_USER, PORT: expect.stringMatching(/^\d+$/) });
    expect(env.PATH).toBeTruthy();
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(Object.keys(env)).not.toContain(name);
      expect(JSON.stringify(env)).not.toContain(value);
    }
    const inherited = Object.keys(env).filter((name) => name in process.env && !ALLOWED.test(name));
    expect(inherited).toEqual([]);
  });
});

describe('without APPS_USER (the control: the same probe, as the portal’s user, root)', () => {
  let layout: Layout;
  let portal: TestPortal;
  let report: ProbeReport;

  beforeAll(async () => {
    layout = makeLayout();
    portal = await startProbePortal(layout);
    report = await runProbe(portal, layout);
  });
  afterAll(async () => {
    await portal?.stopAll();
    if (layout) rmSync(layout.root, { recursive: true, force: true });
  });

  it('says command apps are not isolated', () => {
    expect(portal.portal.supervisor.isolation).toEqual({ appsUser: undefined, isolated: false, reason: expect.stringContaining('APPS_USER is not set') });
  });

  it('reads the portal’s environ and database, so the sandbox’s failures are real', () => {
    expect(report.uid).toBe(0);
    expect(report.portalEnviron.ok).toBe(true);
    expect(report.portalEnviron.names).toContain('PATH');
    expect(report.reads[layout.dbFile]).toMatchObject({ ok: true });
  });

  it('still gives the app only the allow-listed environment', () => {
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(Object.keys(report.env)).not.toContain(name);
      expect(JSON.stringify(report.env)).not.toContain(value);
    }
    expect(Object.keys(report.env).filter((name) => name in process.env && !ALLOWED.test(name))).toEqual([]);
  });
});

describe('start-up refuses an APPS_USER it cannot honour', () => {
  const roots: string[] = [];
  afterAll(() => {
    for (const root of roots) rmSync(root, { recursive: true, force: true });
  });

  /** An empty install for `npm start` (portal/main.ts) in a real process; `owner` gets its files. */
  function emptyInstall(owner?: { uid: number; gid: number }): { APPS_DIR: string; DATA_DIR: string; DATABASE_URL: string } {
    const root = mkdtempSync(join(tmpdir(), 'atrium-sandbox-start-'));
    roots.push(root);
    const apps = join(root, 'apps');
    const data = join(root, 'data');
    mkdirSync(apps);
    mkdirSync(data);
    chmodSync(root, 0o755);
    chmodSync(apps, 0o755);
    if (owner) for (const dir of [root, data]) chownSync(dir, owner.uid, owner.gid);
    return { APPS_DIR: apps, DATA_DIR: data, DATABASE_URL: `sqlite:${join(data, 'atrium.sqlite')}` };
  }

  it('in-process: an unknown user is a ConfigError naming it and how to create it', async () => {
    const start = startTestPortal({ env: { APPS_USER: 'atrium-no-such-user', APPS_DIR: emptyInstall().APPS_DIR } });
    await expect(start).rejects.toThrow(ConfigError);
    await expect(start).rejects.toThrow(/there is no OS user "atrium-no-such-user".*useradd/);
  });

  it('in-process: root as APPS_USER isolates nothing and is refused', async () => {
    await expect(startTestPortal({ env: { APPS_USER: 'root', APPS_DIR: emptyInstall().APPS_DIR } })).rejects.toThrow(/APPS_USER: "root" has uid 0/);
  });

  it('npm start with an unknown user prints the configuration problem and exits 1', async () => {
    const result = await runMain({ ...emptyInstall(), APPS_USER: 'atrium-no-such-user' });
    expect(result.stderr).toContain('Atrium cannot start; fix the configuration:');
    expect(result.stderr).toContain('APPS_USER: there is no OS user "atrium-no-such-user"');
    expect(result.code).toBe(1);
  });

  it('npm start as a user who is not root, with APPS_USER set, says it cannot switch users and exits 1', async () => {
    const result = await runMain({ ...emptyInstall(account), APPS_USER, HOME: account.home }, account);
    expect(result.stderr).toContain('Atrium cannot start; fix the configuration:');
    expect(result.stderr).toMatch(/APPS_USER: "atrium-apps" is set, but the portal runs as atrium-apps \(uid \d+\), not root/);
    expect(result.code).toBe(1);
  });
});

/** `tsx portal/main.ts` (what `npm start` runs) as a real process, optionally as another user. */
function runMain(env: Record<string, string>, as?: { uid: number; gid: number }): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'portal/main.ts'], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NODE_ENV: 'test', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', SESSION_SECRET: SECRETS.SESSION_SECRET, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(as && { uid: as.uid, gid: as.gid }),
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.resume();
  const deadline = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(deadline);
      resolve({ code, stderr });
    });
  });
}

/** Polls until `probe` gives a value; the deadline is generous (a loaded CI machine), never asserted. */
async function waitFor<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
}
