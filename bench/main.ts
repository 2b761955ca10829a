/**
 * The benchmark from start to end (see scripts/bench.ts): start the targets one at a time, warm them
 * up, measure them in interleaved rounds, report, and stop every child whatever happens.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAppsDir } from './fixtures.ts';
import { load } from './load.ts';
import { children, READY_TIMEOUT_MS, rssMB, sleep, stopChild } from './processes.ts';
import { report } from './report.ts';
import { ALL_TARGETS, keepTemp, profile, RESULTS_DIR, settings, targetsToRun, type Target } from './settings.ts';
import { cleanRuns, isClean, MIN_CLEAN_RUNS } from './stats.ts';
import { startBare, startPortal, startSession, verify } from './targets.ts';

export async function main(): Promise<void> {
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
