/**
 * One measured run of a target: its load generator for a number of seconds, with the CPU time its
 * server's processes (and the upstream's, for proxies: same core) used over the same window, and how
 * many new connections the upstream accepted meanwhile.
 */
import { get } from 'node:http';
import { cpuMs, cpuTimes, processTree } from './processes.ts';
import type { Run, RunState } from './settings.ts';
import { CONTENDED_BELOW_PERCENT, GENERATOR_BOUND_PERCENT } from './stats.ts';
import type { Server, Target } from './targets.ts';

export async function measure(target: Target, seconds: number, round: number): Promise<Run> {
  const serverPids = processTree(target.server.child.pid);
  const upstreamPids = target.upstream ? [target.upstream.child.pid] : [];
  const statsBefore = target.upstream ? await upstreamStats(target.upstream) : undefined;
  // Filled in by the generator's window (closures: kept in an object so the types stay honest).
  const w = { serverBefore: null as { user: number; system: number } | null, serverSystemMs: null as number | null, upstreamBefore: null as number | null, serverMs: null as number | null, upstreamMs: null as number | null, started: 0, wallMs: 0 };
  const result = await target.load(seconds, {
    begin() {
      w.serverBefore = cpuTimes(serverPids);
      w.upstreamBefore = upstreamPids.length ? cpuMs(upstreamPids) : null;
      w.started = performance.now();
    },
    end() {
      w.wallMs = performance.now() - w.started;
      const s = cpuTimes(serverPids);
      const u = upstreamPids.length ? cpuMs(upstreamPids) : null;
      w.serverMs = s === null || w.serverBefore === null ? null : s.user + s.system - w.serverBefore.user - w.serverBefore.system;
      w.serverSystemMs = s === null || w.serverBefore === null ? null : s.system - w.serverBefore.system;
      w.upstreamMs = u === null || w.upstreamBefore === null ? null : u - w.upstreamBefore;
    },
  });
  const { serverMs, serverSystemMs, upstreamMs, wallMs } = w;
  const statsAfter = target.upstream ? await upstreamStats(target.upstream) : undefined;
  const answered = result.ops + result.bad;
  const perOp = (ms: number | null) => (ms === null || answered === 0 ? null : Math.round(((ms * 1000) / answered) * 10) / 10);
  const busyMs = serverMs === null ? null : serverMs + (upstreamMs ?? 0);
  const coreBusyPercent = busyMs === null || wallMs <= 0 ? null : Math.round((busyMs / wallMs) * 100);
  // A generator at the top of its core may be what set the pace, whatever the server's share: the
  // rate is then only a lower bound for the server. Otherwise a server core not kept busy was held
  // by another process.
  const state: RunState =
    result.generatorPercent !== null && result.generatorPercent >= GENERATOR_BOUND_PERCENT
      ? 'generator-bound'
      : coreBusyPercent !== null && coreBusyPercent < CONTENDED_BELOW_PERCENT
        ? 'contended'
        : 'clean';
  // The stats request after the run opened one connection of its own.
  const proxied = statsBefore && statsAfter ? statsAfter.requests - statsBefore.requests : 0;
  const upstreamConnectionsPerOp =
    statsBefore && statsAfter && proxied > 0 && target.spec.generator === 'wrk' ? Math.round(((statsAfter.connections - statsBefore.connections - 1) / proxied) * 1000) / 1000 : undefined;
  return {
    round,
    rate: Math.round((result.ops / (result.wallMs / 1000)) * 10) / 10,
    ops: result.ops,
    bad: result.bad,
    errors: result.errors,
    firstProblem: result.firstProblem,
    p50Ms: Math.round(result.p50Ms * 100) / 100,
    p99Ms: Math.round(result.p99Ms * 100) / 100,
    serverUsPerOp: perOp(serverMs),
    serverSystemUsPerOp: perOp(serverSystemMs),
    upstreamUsPerOp: perOp(upstreamMs),
    coreBusyPercent,
    generatorPercent: result.generatorPercent,
    upstreamConnectionsPerOp,
    state,
  };
}

/** The upstream's counters, on a connection of its own (never a pooled one, so the count is exact). */
function upstreamStats(upstream: Server): Promise<{ connections: number; requests: number }> {
  return new Promise((resolve, reject) => {
    const req = get(`${upstream.origin}/__bench/stats`, { agent: false, timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(text) as { connections: number; requests: number });
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('upstream stats: no answer within 5 s')));
    req.on('error', reject);
  });
}
