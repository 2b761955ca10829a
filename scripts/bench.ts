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
 * exit code is non-zero only when the benchmark itself could not run (or a response was wrong).
 *
 * Knobs (environment): BENCH_DURATION (s, 6), BENCH_ROUNDS (3), BENCH_CONNECTIONS (50),
 * BENCH_WARMUP (s, 3), BENCH_TARGETS (comma list, default all), BENCH_PROFILE=1 (portal children
 * write V8 CPU profiles to bench/results/profiles/), BENCH_KEEP=1 (keep the temp folder).
 */
import autocannon from 'autocannon';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
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

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number ${min}-${max}, got "${raw}"`);
  return n;
}

const settings = {
  durationSeconds: intFromEnv('BENCH_DURATION', 6, 1, 60),
  rounds: intFromEnv('BENCH_ROUNDS', 3, 1, 9),
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Environment for a child: ours minus anything Atrium reads, plus `vars`. Empty strings keep `.env` out. */
function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const atriumVars = [
    'NODE_ENV', 'PORT', 'HOST', 'PUBLIC_URL', 'APPS_DIR', 'DATA_DIR', 'DATABASE_URL', 'REDIS_URL', 'SESSION_SECRET',
    'SESSION_MAX_AGE', 'OIDC_ISSUER', 'OIDC_CLIENT_ID', 'OIDC_CLIENT_SECRET', 'OIDC_AUDIENCE', 'OIDC_SCOPE', 'ACCESS_CLAIM',
    'ALLOW_HTTP', 'LOG_LEVEL', 'IDP_HOOK_SECRET',
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of atriumVars) env[name] = '';
  delete env.NODE_OPTIONS;
  return { ...env, ...vars };
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

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// Targets

async function startPortal(id: 'portal10' | 'portal1000', fixture: AppsFixture, temp: string): Promise<Target> {
  const port = await freePort();
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
  const port = await freePort();
  const origin = `http://${HOST}:${port}`;
  const { child, output } = spawnServer(['bench/servers/app.ts'], childEnv({ PORT: String(port), BENCH_APP_MODULE: fixture.helloModule, NODE_ENV: 'test' }));
  const startupMs = await waitReady(`${origin}/`, child, output);
  // The same Cookie header as the portal gets, so both parse the same bytes; bare Koa ignores it.
  return { id: 'bare', label: LABELS.bare, url: `${origin}/`, headers: { cookie, accept: '*/*' }, child, output, startupMs, rssIdleMB: null, rssAfterLoadMB: null, runs: [] };
}

async function startSession(fixture: AppsFixture): Promise<Target> {
  const port = await freePort();
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
  const result = await autocannon({
    url: target.url,
    connections: settings.connections,
    pipelining: settings.pipelining,
    duration: seconds,
    method: 'GET',
    headers: target.headers,
    timeout: 10,
  });
  return {
    round,
    rps: Math.round((result['2xx'] / result.duration) * 10) / 10,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    requests: result['2xx'] + result.non2xx,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

function gitDescription(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} (with uncommitted changes)` : commit;
  } catch {
    return 'unknown';
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const started = new Date();
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

    for (let round = 1; round <= settings.rounds; round++) {
      // Rotate the order each round: no target always runs first or right after the same neighbour.
      const order = targets.map((_, i) => targets[(i + round - 1) % targets.length] as Target);
      for (const t of order) {
        const run = await load(t, settings.durationSeconds, round);
        t.runs.push(run);
        const bad = run.non2xx + run.errors + run.timeouts;
        console.log(`  round ${round} ${t.id.padEnd(10)} ${run.rps.toFixed(0).padStart(7)} req/s  p50 ${run.latencyP50Ms} ms  p99 ${run.latencyP99Ms} ms${bad ? `  !! ${run.non2xx} non-2xx, ${run.errors} errors, ${run.timeouts} timeouts` : ''}`);
        await sleep(500);
      }
    }
    for (const t of targets) t.rssAfterLoadMB = rssMB(t.child.pid);

    report(started, targets, temp);
  } finally {
    await Promise.all(targets.map((t) => stopChild(t.child)));
    await Promise.all([...children].map((c) => stopChild(c)));
    if (keepTemp) console.log(`temp folder kept: ${temp}`);
    else rmSync(temp, { recursive: true, force: true });
  }
}

function report(started: Date, targets: Target[], temp: string): void {
  const byId = new Map(targets.map((t) => [t.id, t]));
  const med = (id: TargetId) => {
    const t = byId.get(id);
    return t && t.runs.length > 0 ? median(t.runs.map((r) => r.rps)) : undefined;
  };
  const ratio = (a: TargetId, b: TargetId) => {
    const x = med(a);
    const y = med(b);
    return x !== undefined && y !== undefined && y > 0 ? Math.round((x / y) * 1000) / 1000 : undefined;
  };
  const ratios = [
    { id: 'portal10/bare', label: 'portal (10 apps) / bare Koa', value: ratio('portal10', 'bare'), target: 0.6 },
    { id: 'portal1000/portal10', label: 'portal 1000 apps / 10 apps', value: ratio('portal1000', 'portal10'), target: 0.9 },
    { id: 'session/bare', label: 'Koa + koa-session / bare Koa', value: ratio('session', 'bare'), target: undefined },
  ].map((r) => ({ ...r, pass: r.value === undefined || r.target === undefined ? undefined : r.value >= r.target }));
  const invalid = targets.filter((t) => t.runs.some((r) => r.non2xx + r.errors + r.timeouts > 0)).map((t) => t.id);

  const lines: string[] = [];
  lines.push('');
  lines.push(`${'target'.padEnd(34)} ${'req/s'.padStart(8)}  ${'runs (req/s)'.padEnd(26)} ${'p50 ms'.padStart(6)} ${'p99 ms'.padStart(6)} ${'RSS idle'.padStart(9)} ${'RSS load'.padStart(9)}`);
  for (const t of targets) {
    const m = med(t.id) ?? 0;
    const runs = t.runs.map((r) => r.rps.toFixed(0)).join(' ');
    const p50 = median(t.runs.map((r) => r.latencyP50Ms));
    const p99 = median(t.runs.map((r) => r.latencyP99Ms));
    const mb = (v: number | null) => (v === null ? '-' : `${v.toFixed(0)} MB`);
    lines.push(`${t.label.padEnd(34)} ${m.toFixed(0).padStart(8)}  ${runs.padEnd(26)} ${String(p50).padStart(6)} ${String(p99).padStart(6)} ${mb(t.rssIdleMB).padStart(9)} ${mb(t.rssAfterLoadMB).padStart(9)}`);
  }
  lines.push('');
  lines.push(`${'ratio'.padEnd(34)} ${'value'.padStart(8)}  ${'target'.padEnd(8)} result`);
  for (const r of ratios) {
    const value = r.value === undefined ? '-' : r.value.toFixed(2);
    const target = r.target === undefined ? '(context)' : `>= ${r.target.toFixed(2)}`;
    const result = r.pass === undefined ? (r.target === undefined ? '' : 'not measured') : r.pass ? 'PASS' : 'FAIL';
    lines.push(`${r.label.padEnd(34)} ${value.padStart(8)}  ${target.padEnd(9)} ${result}`);
  }
  const p10 = byId.get('portal10');
  const p1000 = byId.get('portal1000');
  if (p10 && p1000) {
    lines.push('');
    lines.push(`start-up to /healthz: 10 apps ${(p10.startupMs / 1000).toFixed(1)} s, 1000 apps ${(p1000.startupMs / 1000).toFixed(1)} s`);
  }
  if (invalid.length > 0) lines.push(`!! INVALID: ${invalid.join(', ')} answered with non-2xx responses, errors or timeouts during load; see latest.json`);
  console.log(lines.join('\n'));

  const json = {
    date: started.toISOString(),
    commit: gitDescription(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryMB: Math.round(totalmem() / 2 ** 20), node: process.version, platform: `${process.platform} ${process.arch}` },
    settings: { ...settings, host: HOST, loadGenerator: 'autocannon 8 (programmatic, in the bench process)' },
    targets: Object.fromEntries(
      targets.map((t) => [
        t.id,
        {
          label: t.label,
          url: t.url.replace(/:\d+\//, ':<port>/'),
          apps: t.apps,
          medianRps: med(t.id),
          runs: t.runs,
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
