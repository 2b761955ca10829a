/// <reference path="./autocannon.d.ts" />
/**
 * One measured run: autocannon against a target for a number of seconds, with the CPU time the
 * server and this process used meanwhile.
 */
import autocannon from 'autocannon';
import { cpuMs } from './processes.ts';
import { settings, type Run, type Target } from './settings.ts';

export async function load(target: Target, seconds: number, round: number): Promise<Run> {
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
