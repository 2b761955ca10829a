/**
 * What the benchmark measures and how: the environment knobs (see scripts/bench.ts), the targets,
 * the servers behind them, the targets' ratios and their goals, and the shapes of one measured run.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const RESULTS_DIR = join(ROOT, 'bench', 'results');
export const HOST = '127.0.0.1';

function intFromEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number ${min}-${max}, got "${raw}"`);
  return n;
}

export const settings = {
  durationSeconds: intFromEnv('BENCH_DURATION', 5, 1, 120),
  rounds: intFromEnv('BENCH_ROUNDS', 5, 1, 15),
  /** wrk connections, and socket.io / websocket clients. */
  connections: intFromEnv('BENCH_CONNECTIONS', 50, 1, 1000),
  warmupSeconds: intFromEnv('BENCH_WARMUP', 3, 0, 60),
  /** The core every server (and the upstream it proxies to) is pinned to, and the load generators' core. */
  serverCore: intFromEnv('BENCH_SERVER_CORE', 0, 0, 1023),
  loadCore: intFromEnv('BENCH_LOAD_CORE', 1, 0, 1023),
  /** The start-up figures: how many in-process apps, against a 10-app portal; how many restarts and new folders. */
  startupApps: intFromEnv('BENCH_STARTUP_APPS', 200, 11, 5000),
  startupRepeats: intFromEnv('BENCH_STARTUP_REPEATS', 3, 1, 10),
};
export const profile = process.env.BENCH_PROFILE === '1';
/** The start-up figures from the production build too (BENCH_STARTUP_BUILD=0: from the sources only). */
export const startupBuild = process.env.BENCH_STARTUP_BUILD !== '0';
export const keepTemp = process.env.BENCH_KEEP === '1';
/**
 * What the portal targets run: the production build (plain node, as `npm run start:prod`; the
 * default, since that is what serves users) or the sources through tsx (BENCH_PORTAL_FROM=sources,
 * as `npm start`; tsx's transform adds a helper call per closure made, which the hot path notices).
 */
export const portalFromBuild = (process.env.BENCH_PORTAL_FROM ?? 'build') !== 'sources';
export const WRK = process.env.BENCH_WRK || '/usr/bin/wrk';
export const NGINX = process.env.BENCH_NGINX || '/usr/sbin/nginx';

/** How a target is loaded: wrk for HTTP, a Node client process for socket.io and plain websockets. */
export type Generator = 'wrk' | 'sio' | 'ws';

/** The server processes; a target is measured against one of them (plus the shared upstream for proxies). */
export type ServerId = 'upstream' | 'koa' | 'nginx' | 'chp' | 'undici' | 'tunnel' | 'sio' | 'portal-proxied' | 'portal-inproc' | 'portal-bearer' | 'portal-sio' | 'portal-ws';

export interface TargetSpec {
  label: string;
  generator: Generator;
  server: ServerId;
  /** The server forwards to the shared bare-node upstream (pinned to the same core). */
  proxiesToUpstream: boolean;
}

export const TARGETS = {
  node: { label: 'bare node http (the upstream)', generator: 'wrk', server: 'upstream', proxiesToUpstream: false },
  koa: { label: 'bare Koa', generator: 'wrk', server: 'koa', proxiesToUpstream: false },
  nginx: { label: 'nginx -> node', generator: 'wrk', server: 'nginx', proxiesToUpstream: true },
  chp: { label: 'configurable-http-proxy -> node', generator: 'wrk', server: 'chp', proxiesToUpstream: true },
  undici: { label: 'bare undici proxy -> node (context)', generator: 'wrk', server: 'undici', proxiesToUpstream: true },
  proxied: { label: 'portal, proxied app -> node (a)', generator: 'wrk', server: 'portal-proxied', proxiesToUpstream: true },
  inproc: { label: 'portal, in-process app (b)', generator: 'wrk', server: 'portal-inproc', proxiesToUpstream: false },
  bearer: { label: 'portal, in-process, bearer (d)', generator: 'wrk', server: 'portal-bearer', proxiesToUpstream: false },
  sio: { label: 'bare socket.io, emit+ack', generator: 'sio', server: 'sio', proxiesToUpstream: false },
  'portal-sio': { label: 'portal socket.io, emit+ack (c)', generator: 'sio', server: 'portal-sio', proxiesToUpstream: false },
  ws: { label: 'websocket echo, node direct', generator: 'ws', server: 'upstream', proxiesToUpstream: false },
  'nginx-ws': { label: 'websocket echo via nginx', generator: 'ws', server: 'nginx', proxiesToUpstream: true },
  'tunnel-ws': { label: 'websocket echo via a bare node tunnel (context)', generator: 'ws', server: 'tunnel', proxiesToUpstream: true },
  'portal-ws': { label: 'websocket echo via portal (e)', generator: 'ws', server: 'portal-ws', proxiesToUpstream: true },
} as const satisfies Record<string, TargetSpec>;
export type TargetId = keyof typeof TARGETS;
export const ALL_TARGETS = Object.keys(TARGETS) as TargetId[];

/** `startup` is not a load target but can be picked (or left out) in BENCH_TARGETS like one. */
const wanted = (process.env.BENCH_TARGETS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
for (const w of wanted) {
  if (w !== 'startup' && !(ALL_TARGETS as string[]).includes(w)) throw new Error(`BENCH_TARGETS: unknown target "${w}" (${[...ALL_TARGETS, 'startup'].join(', ')})`);
}
export const targetsToRun: TargetId[] = wanted.length > 0 ? ALL_TARGETS.filter((t) => wanted.includes(t)) : ALL_TARGETS;
export const runStartup = wanted.length === 0 || wanted.includes('startup');

export const UNIT: Record<Generator, string> = { wrk: 'req/s', sio: 'acks/s', ws: 'msgs/s' };

/** The issue's goals: `a / b >= min` (rates; the median of the paired rounds' ratios, bench/pairing.ts). */
export interface RatioSpec {
  id: string;
  label: string;
  a: TargetId;
  b: TargetId;
  /** Undefined: context only. */
  min?: number;
  stretch?: number;
}
export const RATIOS: RatioSpec[] = [
  { id: 'proxied/chp', label: 'proxied (a) / CHP', a: 'proxied', b: 'chp', min: 2 },
  { id: 'proxied/nginx', label: 'proxied (a) / nginx', a: 'proxied', b: 'nginx', min: 0.5 },
  { id: 'inproc/koa', label: 'in-process (b) / bare Koa', a: 'inproc', b: 'koa', min: 0.8, stretch: 0.9 },
  { id: 'portal-sio/sio', label: 'socket.io (c) / bare socket.io', a: 'portal-sio', b: 'sio', min: 0.9 },
  { id: 'bearer/inproc', label: 'bearer (d) / session (b)', a: 'bearer', b: 'inproc', min: 0.9 },
  { id: 'portal-ws/nginx-ws', label: 'websocket (e) / nginx websocket', a: 'portal-ws', b: 'nginx-ws', min: 0.9 },
  { id: 'koa/node', label: 'bare Koa / bare node', a: 'koa', b: 'node' },
  { id: 'nginx/node', label: 'nginx / bare node', a: 'nginx', b: 'node' },
  { id: 'chp/node', label: 'CHP / bare node', a: 'chp', b: 'node' },
  { id: 'undici/nginx', label: 'bare undici proxy / nginx', a: 'undici', b: 'nginx' },
  { id: 'proxied/undici', label: 'proxied (a) / bare undici proxy', a: 'proxied', b: 'undici' },
  { id: 'nginx-ws/ws', label: 'nginx websocket / direct', a: 'nginx-ws', b: 'ws' },
  { id: 'tunnel-ws/nginx-ws', label: 'bare node tunnel / nginx websocket', a: 'tunnel-ws', b: 'nginx-ws' },
  { id: 'portal-ws/tunnel-ws', label: 'websocket (e) / bare node tunnel', a: 'portal-ws', b: 'tunnel-ws' },
];
/** Start-up goals, in seconds. */
export const STARTUP_GOALS = { firstRequestSeconds: 2, newFolderSeconds: 1 };

/** Why a run is left out of the figures. */
export type RunState = 'clean' | 'contended' | 'generator-bound';

export interface Run {
  round: number;
  /** Correct answers (200 hello, or the echoed payload) per second. */
  rate: number;
  ops: number;
  /** Wrong answers (another status, another body) and transport errors (timeouts, resets, disconnects). */
  bad: number;
  errors: number;
  firstProblem?: string | undefined;
  p50Ms: number;
  p99Ms: number;
  /** CPU time (user + system) of the server's processes per answered operation, µs. */
  serverUsPerOp: number | null;
  /** Of which in the kernel (system time): socket writes, and connects for a proxy without keep-alive. */
  serverSystemUsPerOp: number | null;
  /** The same for the upstream it proxies to (both pinned to the server core). */
  upstreamUsPerOp: number | null;
  /** Server (+ upstream) busy time, in % of one core. */
  coreBusyPercent: number | null;
  /** The load generator's CPU, in % of one core (its own process, on the load core). */
  generatorPercent: number | null;
  /** New TCP connections the upstream accepted per request (0 with keep-alive, 1 without). */
  upstreamConnectionsPerOp?: number | undefined;
  state: RunState;
}
