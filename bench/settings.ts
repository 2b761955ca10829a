/**
 * What the benchmark measures and how: the environment knobs (see scripts/bench.ts), the targets and
 * their labels, and the shapes a target and one measured run have.
 */
import type { ChildProcess } from 'node:child_process';
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
  durationSeconds: intFromEnv('BENCH_DURATION', 5, 1, 60),
  rounds: intFromEnv('BENCH_ROUNDS', 5, 1, 15),
  connections: intFromEnv('BENCH_CONNECTIONS', 50, 1, 500),
  warmupSeconds: intFromEnv('BENCH_WARMUP', 3, 0, 30),
  pipelining: 1,
};
export const profile = process.env.BENCH_PROFILE === '1';
export const keepTemp = process.env.BENCH_KEEP === '1';

export type TargetId = 'bare' | 'session' | 'portal10' | 'portal1000';
export const ALL_TARGETS: TargetId[] = ['bare', 'portal10', 'session', 'portal1000'];
const wanted = (process.env.BENCH_TARGETS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
for (const w of wanted) if (!ALL_TARGETS.includes(w as TargetId)) throw new Error(`BENCH_TARGETS: unknown target "${w}" (${ALL_TARGETS.join(', ')})`);
export const targetsToRun = wanted.length > 0 ? ALL_TARGETS.filter((t) => wanted.includes(t)) : ALL_TARGETS;

export const LABELS: Record<TargetId, string> = {
  bare: 'bare Koa (hello app alone)',
  session: 'Koa + koa-session (cookie store)',
  portal10: 'portal, 10 apps, signed in',
  portal1000: 'portal, 1000 apps, signed in',
};

export interface Run {
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

export interface Target {
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
