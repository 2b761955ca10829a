/// <reference path="../bench/autocannon.d.ts" />
/**
 * `npm run bench`: how much the portal costs in front of a child app, and whether that cost grows
 * with the number of apps. Every server runs in its own child process on 127.0.0.1; autocannon runs
 * here. Targets, all serving the same tiny Koa handler (bench/fixtures.ts):
 *
 *   bare        the hello app on bare Koa
 *   session     the hello app behind Koa + stock koa-session (signed cookie store), for context
 *   portal10    the hello app at /apps/stable/hello/ in a portal with 10 apps, signed in
 *   portal1000  the same in a portal with 1000 apps
 *
 * Each target is warmed up, then measured BENCH_ROUNDS times for BENCH_DURATION seconds with
 * BENCH_CONNECTIONS connections, targets interleaved (the order rotates each round) so that drift on
 * a noisy machine hits all of them alike; the figure is the median. Results go to
 * bench/results/latest.json and a table on stdout. Missing a target is reported, not an error: the
 * exit code is non-zero only when the benchmark itself could not run or a server answered anything
 * but the hello body, before or during the load.
 *
 * Besides req/s, each run records the server process's CPU time per request (user + system, from
 * /proc): on a shared 2-core machine it moves far less than req/s when something else runs. Every
 * target is CPU-bound, so a run in which its server got less than 85% of a core was squeezed by
 * another process: such runs are marked, left out of the figures, and made up for by extra rounds
 * (at most as many as planned) until each target has three clean runs.
 *
 * Knobs (environment): BENCH_DURATION (s, 5), BENCH_ROUNDS (5), BENCH_CONNECTIONS (50),
 * BENCH_WARMUP (s, 3), BENCH_TARGETS (comma list, default all), BENCH_PROFILE=1 (portal children
 * write V8 CPU profiles to bench/results/profiles/), BENCH_KEEP=1 (keep the temp folder).
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from '../lib/free-port.ts';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HELLO_BODY, writeAppsDir, type AppsFixture } from '../bench/fixtures.ts';
import { Agent } from '../tests/helpers/agent.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_DIR = join(ROOT, 'bench', 'results');
const HOST = '127.0.0.1';
const DEMO_EMAIL = 'admin@example.com';
const DEMO_PASSWORD = 'atrium-demo';
const SESSION_COOKIES = ['atrium.sid', 'atrium.sid.sig'];
const READY_TIMEOUT_MS = 180_000;
/** A saturated server below this share of a core is being squeezed by another process. */
const CONTENDED_BELOW_PERCENT = 85;
/** Runs per target in which its server had a core (see isClean) before the figures are trusted. */
const MIN_CLEAN_RUNS = 3;

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number ${min}-${max}, got "${raw}"`);
  return n;
}

const settings = {
  durationSeconds: intFromEnv('BENCH_DURATION', 5, 1, 60),
  rounds: intFromEnv('BENCH_ROUNDS', 5, 1, 15),
  connections: intFromEnv('BENCH_CONNECTIONS', 50, 1, 500),
  warmupSeconds: intFromEnv('BENCH_WARMUP', 3, 0, 30),
  pipelining: 1,
};
const profile = process.env.BENCH_PROFILE === '1';
const keepTemp = process.env.BENCH_KEEP === '1';

type TargetId = 'bare' | 'session' | 'portal10' | 'portal1000';
const ALL_TARGETS: TargetId[] = ['bare', 'portal10', 'session', 'portal1000'];
const wanted = (process.env.BENCH_TARGETS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
for (const w of wanted) if (!ALL_TARGETS.includes(w as TargetId)) throw new Error(`BENCH_TARGETS: unknown target "${w}" (${ALL_TARGETS.join(', ')})`);
const targetsToRun = wanted.length > 0 ? ALL_TARGETS.filter((t) => wanted.includes(t)) : ALL_TARGETS;

const LABELS: Record<TargetId, string> = {
  bare: 'bare Koa (hello app alone)',
  session: 'Koa + koa-session (cookie store)',
  portal10: 'portal, 10 apps, signed in',
  portal1000: 'portal, 1000 apps, signed in',
};

interface Run {
  round: number;
  rps: number;
  /** CPU time the server process used per answered request (user + system), in microseconds. */
  serverCpuUsPerRequest: number | null;
  /** The same, split: JavaScript and the rest of user space / the kernel (mostly socket writes). */
  serverUserUsPerRequest: number | null;
  serverSystemUsPerRequest: number | null;
  /** How busy the server process was during the run, in % of one core. */
  serverCpuPercent: number | null;
  /** How busy this process (autocannon) was, in % of one core. */
  loadGeneratorCpuPercent: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

interface Target {
  id: TargetId;
  label: string;
  url: string;
  headers: Record<string, string>;
  child: ChildProcess;
  output: string[];
  startupMs: number;
  apps?: number;
  rssIdleMB: number | null;
  rssAfterLoadMB: number | null;
  runs: Run[];
}

// ---------------------------------------------------------------------------------------------
// Child processes

const children = new Set<ChildProcess>();


/**
 * Environment for a child: ours, with every variable Atrium reads set to empty (so neither the
 * caller's shell nor a `.env` in the repository — the portal loads it for variables that are not
 * set — changes what is measured), plus `vars`.
 */
function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const known = [
    'NODE_ENV', 'PORT', 'HOST', 'PUBLIC_URL', 'APPS_DIR', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL', 'SESSION_SECRET',
    'SESSION_MAX_AGE', 'SESSION_IDLE_TIMEOUT', 'SESSION_MAX_LIFETIME', 'IDP_ACCESS_TOKEN_TTL', 'OIDC_LOGOUT_URL',
    'OIDC_ISSUER', 'OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_AUDIENCE', 'OIDC_SCOPE', 'ACCESS_CLAIM', 'ALLOW_HTTP',
    'LOG_LEVEL', 'IDP_HOOK_SECRET',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of [...known, ...dotenvNames('.env'), ...dotenvNames('.env.example')]) env[name] = '';
  delete env.NODE_OPTIONS;
  return { ...env, ...vars };
}

/** The variable names a dotenv file in the repository sets (none if it does not exist). */
function dotenvNames(file: string): string[] {
  try {
    return [...readFileSync(join(ROOT, file), 'utf8').matchAll(/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/gm)].map((m) => m[1] as string);
  } catch {
    return [];
  }
}

function spawnServer(args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess; output: string[] } {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    output.push(chunk.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output };
}

async function waitReady(url: string, child: ChildProcess, output: string[]): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before answering ${url}:\n${output.join('').slice(-4000)}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.arrayBuffer();
      if (response.ok) return Date.now() - started;
    } catch {
      // not listening yet
    }
    if (Date.now() - started > READY_TIMEOUT_MS) throw new Error(`${url} did not answer within ${READY_TIMEOUT_MS / 1000} s:\n${output.join('').slice(-4000)}`);
    await sleep(100);
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

function rssMB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round((Number(match[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User and system CPU time of a process so far, in ms (Linux /proc); null elsewhere. */
function cpuMs(pid: number | undefined): { user: number; system: number } | null {
  if (pid === undefined) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: (Number(rest[11]) * 1000) / CLOCK_TICKS, system: (Number(rest[12]) * 1000) / CLOCK_TICKS };
  } catch {
    return null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Targets

async function startPortal(id: 'portal10' | 'portal1000', fixture: AppsFixture, temp: string): Promise<Target> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const dataDir = join(temp, `${id}-data`);
  mkdirSync(dataDir, { recursive: true });
  const profileArgs = profile ? ['--cpu-prof', `--cpu-prof-dir=${join(RESULTS_DIR, 'profiles', id)}`] : [];
  const { child, output } = spawnServer(
    [...profileArgs, 'portal/main.ts'],
    childEnv({
      NODE_ENV: 'test',
      LOG_LEVEL: 'silent',
      PORT: String(port),
      HOST,
      PUBLIC_URL: origin,
      APPS_DIR: fixture.dir,
      DATA_DIR: dataDir,
      DATABASE_URL: `sqlite:${join(dataDir, 'atrium.sqlite')}`,
      SESSION_SECRET: randomBytes(32).toString('hex'),
    }),
  );
  const startupMs = await waitReady(`${origin}/healthz`, child, output);

  // Sign in once through the embedded provider, exactly as a browser does; replay the session cookie.
  const agent = new Agent(origin);
  const landed = await agent.login(DEMO_EMAIL, DEMO_PASSWORD, fixture.helloPath);
  if (landed.status !== 200 || landed.text !== HELLO_BODY) {
    throw new Error(`${id}: sign-in did not land on the hello app (${landed.status} ${landed.url}): ${landed.text.slice(0, 300)}`);
  }
  const cookie = SESSION_COOKIES.map((name) => {
    const c = agent.cookie(name);
    if (!c) throw new Error(`${id}: no ${name} cookie after sign-in`);
    return `${c.name}=${c.value}`;
  }).join('; ');
  return {
    id,
    label: LABELS[id],
    url: `${origin}${fixture.helloPath}`,
    headers: { cookie, accept: '*/*' },
    child,
    output,
    startupMs,
    apps: fixture.count,
    rssIdleMB: null,
    rssAfterLoadMB: null,
    runs: [],
  };
}

async function startBare(fixture: AppsFixture, cookie: string): Promise<Target> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const { child, output } = spawnServer(['bench/servers/app.ts'], childEnv({ PORT: String(port), BENCH_APP_MODULE: fixture.helloModule, NODE_ENV: 'test' }));
  const startupMs = await waitReady(`${origin}/`, child, output);
  // The same Cookie header as the portal gets, so both parse the same bytes; bare Koa ignores it.
  return { id: 'bare', label: LABELS.bare, url: `${origin}/`, headers: { cookie, accept: '*/*' }, child, output, startupMs, rssIdleMB: null, rssAfterLoadMB: null, runs: [] };
}

async function startSession(fixture: AppsFixture): Promise<Target> {
  const port = await freePort(HOST);
  const origin = `http://${HOST}:${port}`;
  const { child, output } = spawnServer(['bench/servers/koa-session.ts'], childEnv({ PORT: String(port), BENCH_APP_MODULE: fixture.helloModule, NODE_ENV: 'test' }));
  const startupMs = await waitReady(`${origin}/`, child, output);
  const login = await fetch(`${origin}/__bench/login`);
  await login.arrayBuffer();
  const cookie = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  if (!cookie.includes('bench.sess.sig=')) throw new Error(`session: no signed session cookie from /__bench/login (${cookie})`);
  return { id: 'session', label: LABELS.session, url: `${origin}/`, headers: { cookie, accept: '*/*' }, child, output, startupMs, rssIdleMB: null, rssAfterLoadMB: null, runs: [] };
}

/** One request by hand before any load: the answer must be the hello body, with no cookie written. */
async function verify(target: Target): Promise<void> {
  const response = await fetch(target.url, { headers: target.headers, redirect: 'manual' });
  const body = await response.text();
  if (response.status !== 200 || body !== HELLO_BODY) {
    throw new Error(`${target.id}: expected 200 "${HELLO_BODY.trim()}" from ${target.url}, got ${response.status}: ${body.slice(0, 300)}`);
  }
  const setCookie = response.headers.getSetCookie();
  if (setCookie.length > 0) console.warn(`note: ${target.id} writes a cookie on every request: ${setCookie.join(' | ')}`);
}

async function load(target: Target, seconds: number, round: number): Promise<Run> {
  const serverBefore = cpuMs(target.child.pid);
  const selfBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const result = await autocannon({
    url: target.url,
    connections: settings.connections,
    pipelining: settings.pipelining,
    duration: seconds,
    method: 'GET',
    headers: target.headers,
    timeout: 10,
  });
  const wallMs = performance.now() - wallBefore;
  const self = process.cpuUsage(selfBefore);
  const serverAfter = cpuMs(target.child.pid);
  const userMs = serverBefore === null || serverAfter === null ? null : serverAfter.user - serverBefore.user;
  const systemMs = serverBefore === null || serverAfter === null ? null : serverAfter.system - serverBefore.system;
  const serverMs = userMs === null || systemMs === null ? null : userMs + systemMs;
  const answered = result['2xx'] + result.non2xx;
  const perRequest = (ms: number | null) => (ms === null || answered === 0 ? null : Math.round(((ms * 1000) / answered) * 10) / 10);
  return {
    round,
    rps: Math.round((result['2xx'] / result.duration) * 10) / 10,
    serverCpuUsPerRequest: perRequest(serverMs),
    serverUserUsPerRequest: perRequest(userMs),
    serverSystemUsPerRequest: perRequest(systemMs),
    serverCpuPercent: serverMs === null ? null : Math.round((serverMs / wallMs) * 100),
    loadGeneratorCpuPercent: Math.round(((self.user + self.system) / 1000 / wallMs) * 100),
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    requests: result['2xx'] + result.non2xx,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

/**
 * A run in which the server had (nearly) a core to itself. Every target here is CPU-bound, so a
 * server below that share was waiting for a CPU another process held: its req/s says more about
 * the machine than about the server.
 */
function isClean(run: Run): boolean {
  return run.serverCpuPercent === null || run.serverCpuPercent >= CONTENDED_BELOW_PERCENT;
}

/** The clean runs, or all of them when none was clean (the report says so). */
function cleanRuns(runs: Run[]): Run[] {
  return runs.filter(isClean);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function gitDescription(): string {
  try {
    const git = (args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const commit = git(['rev-parse', '--short', 'HEAD']);
    const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
    return dirty ? `${commit} (with uncommitted changes)` : commit;
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const started = new Date();
  // Whatever happens (a server that stops answering mid-login), the benchmark ends in bounded time.
  const budgetSeconds =
    120 + targetsToRun.length * (READY_TIMEOUT_MS / 1000 + settings.warmupSeconds + 2 * settings.rounds * (settings.durationSeconds + 2));
  setTimeout(() => {
    console.error(`benchmark still running after ${budgetSeconds} s: stopping`);
    for (const child of children) child.kill('SIGKILL');
    process.exit(1);
  }, budgetSeconds * 1000).unref();
  const temp = mkdtempSync(join(tmpdir(), 'atrium-bench-'));
  const koaUrl = import.meta.resolve('koa');
  const targets: Target[] = [];
  try {
    console.log(`Atrium benchmark: ${cpus().length} CPU(s), Node ${process.version}, ${settings.connections} connections, ` +
      `${settings.warmupSeconds} s warm-up, ${settings.rounds} x ${settings.durationSeconds} s per target (median)`);
    const fixture10 = writeAppsDir(join(temp, 'apps-10'), 10, koaUrl);
    const fixture1000 = targetsToRun.includes('portal1000') ? writeAppsDir(join(temp, 'apps-1000'), 1000, koaUrl) : undefined;
    if (profile) mkdirSync(join(RESULTS_DIR, 'profiles'), { recursive: true });

    // Start one at a time so start-ups do not compete for the CPU.
    let portalCookie = 'atrium.sid=x; atrium.sid.sig=x';
    if (targetsToRun.includes('portal10')) {
      const t = await startPortal('portal10', fixture10, temp);
      portalCookie = t.headers.cookie as string;
      targets.push(t);
    }
    if (fixture1000) targets.push(await startPortal('portal1000', fixture1000, temp));
    if (targetsToRun.includes('bare')) targets.push(await startBare(fixture10, portalCookie));
    if (targetsToRun.includes('session')) targets.push(await startSession(fixture10));
    targets.sort((a, b) => ALL_TARGETS.indexOf(a.id) - ALL_TARGETS.indexOf(b.id));
    for (const t of targets) {
      await verify(t);
      console.log(`  started ${t.label.padEnd(34)} in ${(t.startupMs / 1000).toFixed(1)} s  ${t.url}`);
    }

    await sleep(1_000);
    for (const t of targets) t.rssIdleMB = rssMB(t.child.pid);

    if (settings.warmupSeconds > 0) {
      for (const t of targets) {
        process.stdout.write(`  warm-up ${t.id} ...`);
        const run = await load(t, settings.warmupSeconds, 0);
        process.stdout.write(` ${run.rps.toFixed(0)} req/s\n`);
        await sleep(500);
      }
    }

    // Planned rounds, then — only if other processes squeezed the servers — up to as many again,
    // until every target has MIN_CLEAN_RUNS runs in which it had a core to itself.
    const minClean = Math.min(MIN_CLEAN_RUNS, settings.rounds);
    for (let round = 1; round <= settings.rounds * 2; round++) {
      if (round > settings.rounds) {
        if (targets.every((t) => cleanRuns(t.runs).length >= minClean)) break;
        if (round === settings.rounds + 1) console.log(`  the machine is busy: extra rounds until each target has ${minClean} clean run(s) (at most ${settings.rounds} more)`);
      }
      // Rotate the order each round: no target always runs first or right after the same neighbour.
      const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as Target);
      for (const t of order) {
        const run = await load(t, settings.durationSeconds, round);
        t.runs.push(run);
        const bad = run.non2xx + run.errors + run.timeouts;
        const cpu = run.serverCpuUsPerRequest === null ? '' : `  server ${run.serverCpuUsPerRequest.toFixed(0)} µs CPU/req (user ${run.serverUserUsPerRequest?.toFixed(0)}, sys ${run.serverSystemUsPerRequest?.toFixed(0)}; ${run.serverCpuPercent}% of a core${isClean(run) ? '' : ': contended'}), autocannon ${run.loadGeneratorCpuPercent}%`;
        console.log(`  round ${round} ${t.id.padEnd(10)} ${run.rps.toFixed(0).padStart(7)} req/s  p50 ${run.latencyP50Ms} ms  p99 ${run.latencyP99Ms} ms${cpu}${bad ? `  !! ${run.non2xx} non-2xx, ${run.errors} errors, ${run.timeouts} timeouts` : ''}`);
        await sleep(500);
      }
    }
    for (const t of targets) t.rssAfterLoadMB = rssMB(t.child.pid);

    const invalid = report(started, targets, temp);
    // Figures from servers that answered something else than the hello body measure nothing.
    if (invalid.length > 0) process.exitCode = 1;
  } finally {
    await Promise.all(targets.map((t) => stopChild(t.child)));
    await Promise.all([...children].map((c) => stopChild(c)));
    if (keepTemp) console.log(`temp folder kept: ${temp}`);
    else rmSync(temp, { recursive: true, force: true });
  }
}

/** Prints the table, writes latest.json; returns the targets whose answers under load were wrong. */
function report(started: Date, targets: Target[], temp: string): TargetId[] {
  const byId = new Map(targets.map((t) => [t.id, t]));
  /** The runs a figure is taken from: the clean ones, or all when none was clean. */
  const counted = (id: TargetId): Run[] => {
    const runs = byId.get(id)?.runs ?? [];
    const clean = cleanRuns(runs);
    return clean.length > 0 ? clean : runs;
  };
  const hasClean = (id: TargetId) => cleanRuns(byId.get(id)?.runs ?? []).length > 0;
  const med = (id: TargetId) => {
    const runs = counted(id);
    return runs.length > 0 ? median(runs.map((r) => r.rps)) : undefined;
  };
  const medAll = (id: TargetId) => {
    const runs = byId.get(id)?.runs ?? [];
    return runs.length > 0 ? median(runs.map((r) => r.rps)) : undefined;
  };
  /** Clean against clean; if either side has no clean run, all runs against all runs (and flagged). */
  const reliable = (a: TargetId, b: TargetId) => hasClean(a) && hasClean(b);
  const ratio = (a: TargetId, b: TargetId) => {
    const x = reliable(a, b) ? med(a) : medAll(a);
    const y = reliable(a, b) ? med(b) : medAll(b);
    return x !== undefined && y !== undefined && y > 0 ? Math.round((x / y) * 1000) / 1000 : undefined;
  };
  const cpuMedian = (id: TargetId) => {
    const values = counted(id).map((r) => r.serverCpuUsPerRequest).filter((v): v is number => v !== null);
    return values.length > 0 ? median(values) : undefined;
  };
  /** Throughput a CPU-bound server would reach, compared: the inverse ratio of CPU time per request. */
  const cpuRatio = (a: TargetId, b: TargetId) => {
    const x = cpuMedian(a);
    const y = cpuMedian(b);
    return x !== undefined && y !== undefined && x > 0 ? Math.round((y / x) * 1000) / 1000 : undefined;
  };
  /** The same ratio within each round (the two ran minutes apart at most): its spread shows the noise. */
  const perRound = (a: TargetId, b: TargetId) => {
    const x = byId.get(a)?.runs ?? [];
    const y = byId.get(b)?.runs ?? [];
    return x.flatMap((run) => {
      const other = y.find((r) => r.round === run.round);
      return other && other.rps > 0 && isClean(run) && isClean(other) ? [Math.round((run.rps / other.rps) * 1000) / 1000] : [];
    });
  };
  const ratios = [
    { id: 'portal10/bare', label: 'portal (10 apps) / bare Koa', value: ratio('portal10', 'bare'), perRound: perRound('portal10', 'bare'), target: 0.6 },
    { id: 'portal1000/portal10', label: 'portal 1000 apps / 10 apps', value: ratio('portal1000', 'portal10'), perRound: perRound('portal1000', 'portal10'), target: 0.9 },
    { id: 'session/bare', label: 'Koa + koa-session / bare Koa', value: ratio('session', 'bare'), perRound: perRound('session', 'bare'), target: undefined },
    { id: 'cpu:portal10/bare', label: 'same, by server CPU/req: portal/bare', value: cpuRatio('portal10', 'bare'), perRound: [] as number[], target: undefined },
    { id: 'cpu:portal1000/portal10', label: 'by server CPU/req: 1000/10 apps', value: cpuRatio('portal1000', 'portal10'), perRound: [] as number[], target: undefined },
    { id: 'cpu:session/bare', label: 'by server CPU/req: koa-session/bare', value: cpuRatio('session', 'bare'), perRound: [] as number[], target: undefined },
  ].map((r) => {
    const [a, b] = r.id.replace(/^cpu:/, '').split('/') as [TargetId, TargetId];
    return { ...r, reliable: reliable(a, b), pass: r.value === undefined || r.target === undefined ? undefined : r.value >= r.target };
  });
  const invalid = targets.filter((t) => t.runs.some((r) => r.non2xx + r.errors + r.timeouts > 0)).map((t) => t.id);

  const lines: string[] = [];
  lines.push('');
  lines.push(`${'target'.padEnd(34)} ${'req/s'.padStart(8)}  ${'runs (req/s, * contended)'.padEnd(36)} ${'p50 ms'.padStart(6)} ${'p99 ms'.padStart(6)} ${'CPU µs/req'.padStart(10)} ${'RSS idle'.padStart(9)} ${'RSS load'.padStart(9)}`);
  for (const t of targets) {
    const m = med(t.id) ?? 0;
    const runs = t.runs.map((r) => `${r.rps.toFixed(0)}${isClean(r) ? '' : '*'}`).join(' ');
    const p50 = median(counted(t.id).map((r) => r.latencyP50Ms));
    const p99 = median(counted(t.id).map((r) => r.latencyP99Ms));
    const mb = (v: number | null) => (v === null ? '-' : `${v.toFixed(0)} MB`);
    const cpu = cpuMedian(t.id);
    lines.push(`${t.label.padEnd(34)} ${m.toFixed(0).padStart(8)}  ${runs.padEnd(36)} ${String(p50).padStart(6)} ${String(p99).padStart(6)} ${(cpu === undefined ? '-' : cpu.toFixed(0)).padStart(10)} ${mb(t.rssIdleMB).padStart(9)} ${mb(t.rssAfterLoadMB).padStart(9)}`);
  }
  lines.push('');
  lines.push(`${'ratio'.padEnd(34)} ${'value'.padStart(8)}  ${'target'.padEnd(8)} result`);
  for (const r of ratios) {
    const value = r.value === undefined ? '-' : r.value.toFixed(3);
    const target = r.target === undefined ? '(context)' : `>= ${r.target.toFixed(2)}`;
    const verdict = r.pass === undefined ? (r.target === undefined ? '' : 'not measured') : r.pass ? 'PASS' : 'FAIL';
    const result = r.value !== undefined && !r.reliable && !r.id.startsWith('cpu:') ? `${verdict}${verdict ? ' ' : ''}(unreliable: no clean run)` : verdict;
    const rounds = r.perRound.length > 1 ? `   (per round: ${Math.min(...r.perRound).toFixed(2)}–${Math.max(...r.perRound).toFixed(2)})` : '';
    lines.push(`${r.label.padEnd(34)} ${value.padStart(8)}  ${target.padEnd(9)} ${result.padEnd(4)}${rounds}`);
  }
  const p10 = byId.get('portal10');
  const p1000 = byId.get('portal1000');
  if (p10 && p1000) {
    lines.push('');
    lines.push(`start-up to /healthz: 10 apps ${(p10.startupMs / 1000).toFixed(1)} s, 1000 apps ${(p1000.startupMs / 1000).toFixed(1)} s`);
  }
  const contended = targets.flatMap((t) => t.runs.filter((r) => r.serverCpuPercent !== null && r.serverCpuPercent < CONTENDED_BELOW_PERCENT));
  const allRuns = targets.reduce((n, t) => n + t.runs.length, 0);
  if (contended.length > 0) {
    lines.push(
      `note: * marks ${contended.length} of ${allRuns} runs in which the server had less than ${CONTENDED_BELOW_PERCENT}% of a core although it was the bottleneck` +
        ' (another process held the CPU); figures and ratios come from the other runs where a target has any.',
    );
    const noneClean = targets.filter((t) => cleanRuns(t.runs).length === 0).map((t) => t.id);
    if (noneClean.length > 0) lines.push(`!! no clean run at all for ${noneClean.join(', ')}: their figures use contended runs and are not reliable`);
  }
  if (invalid.length > 0) lines.push(`!! INVALID: ${invalid.join(', ')} answered with non-2xx responses, errors or timeouts during load; see latest.json`);
  console.log(lines.join('\n'));

  const json = {
    date: started.toISOString(),
    commit: gitDescription(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMB: Math.round(totalmem() / 2 ** 20), node: process.version, platform: `${process.platform} ${process.arch}` },
    settings: { ...settings, host: HOST, loadGenerator: 'autocannon 8 (programmatic, in the bench process)' },
    contendedRuns: contended.length,
    targets: Object.fromEntries(
      targets.map((t) => [
        t.id,
        {
          label: t.label,
          url: t.url.replace(/:\d+\//, ':<port>/'),
          apps: t.apps,
          medianRps: med(t.id),
          medianServerCpuUsPerRequest: cpuMedian(t.id),
          runs: t.runs,
          /** The rounds the figures come from (clean runs; all of them when none was clean). */
          countedRounds: counted(t.id).map((r) => r.round),
          startupMs: t.startupMs,
          rssIdleMB: t.rssIdleMB,
          rssAfterLoadMB: t.rssAfterLoadMB,
        },
      ]),
    ),
    ratios,
    invalid,
    profiles: profile ? join(RESULTS_DIR, 'profiles') : undefined,
    tempDir: keepTemp ? temp : undefined,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  console.log(`\nwritten: ${join(RESULTS_DIR, 'latest.json')}`);
  return invalid;
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping the servers`);
    Promise.all([...children].map((c) => stopChild(c))).finally(() => process.exit(130));
  });
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
