/**
 * The benchmark from start to end (see scripts/bench.ts): pin this process to the load core, take
 * the start-up figures, start the servers one at a time, check each target by hand, warm them up,
 * measure them in paired rounds (pairing.ts), report, and stop every child whatever happens.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPortal, removeBuild } from './build.ts';
import { writeAppsDir } from './fixtures.ts';
import { wrkProblem } from './generators.ts';
import { measure } from './load.ts';
import { roundOrder } from './pairing.ts';
import { nginxProblem } from './peers.ts';
import { checkPinning, children, cleanUpOnInterrupt, pinSelf, processTree, READY_TIMEOUT_MS, rssMB, sleep, stopAll } from './processes.ts';
import { report, type Failure } from './report.ts';
import { keepTemp, portalFromBuild, profile, RATIOS, RESULTS_DIR, runStartup, settings, startupBuild, TARGETS, targetsToRun, type ServerId, type TargetId } from './settings.ts';
import { measureStartup, type StartupResult } from './startup.ts';
import { isClean, MIN_CLEAN_RUNS } from './stats.ts';
import { makeTarget, serversFor, startServer, startUpstream, type Server, type Target } from './targets.ts';

export async function main(): Promise<void> {
  const started = new Date();
  checkPinning([settings.serverCore, settings.loadCore]);
  if (settings.serverCore === settings.loadCore) throw new Error('BENCH_SERVER_CORE and BENCH_LOAD_CORE must differ');
  pinSelf(settings.loadCore);

  const failures: Failure[] = [];
  let ids: TargetId[] = [...targetsToRun];
  const skip = (which: (id: TargetId) => boolean, part: string, reason: string | undefined) => {
    if (!reason) return;
    const dropped = ids.filter(which);
    if (dropped.length === 0) return;
    failures.push({ part: `${part} (${dropped.join(', ')})`, reason });
    ids = ids.filter((id) => !which(id));
  };
  skip((id) => TARGETS[id].generator === 'wrk', 'HTTP targets', wrkProblem());
  skip((id) => TARGETS[id].server === 'nginx', 'nginx targets', nginxProblem());
  for (const f of failures) console.error(`!! ${f.part} cannot run: ${f.reason}`);

  // Whatever happens (a server that stops answering mid-login), the benchmark ends in bounded time.
  const perRun = settings.durationSeconds + 5;
  const budgetSeconds = 300 + (runStartup ? 600 : 0) + ids.length * (30 + settings.warmupSeconds + 2 * settings.rounds * perRun) + 10 * READY_TIMEOUT_MS / 1000;
  setTimeout(() => {
    console.error(`benchmark still running after ${budgetSeconds} s: stopping`);
    for (const child of children) child.kill('SIGKILL');
    process.exit(1);
  }, budgetSeconds * 1000).unref();

  const temp = mkdtempSync(join(tmpdir(), 'atrium-bench-'));
  const removeTemp = () => {
    rmSync(temp, { recursive: true, force: true });
    removeBuild();
  };
  if (!keepTemp) cleanUpOnInterrupt(removeTemp);
  const koaUrl = import.meta.resolve('koa');
  const targets: Target[] = [];
  const startup: StartupResult[] = [];
  try {
    console.log(
      `Atrium benchmark: ${cpus().length} CPU(s), Node ${process.version}; servers on core ${settings.serverCore}, load generators on core ${settings.loadCore}; ` +
        `${settings.connections} connections/clients, ${settings.warmupSeconds} s warm-up, ${settings.rounds} x ${settings.durationSeconds} s per target (median)`,
    );
    if (profile) mkdirSync(join(RESULTS_DIR, 'profiles'), { recursive: true });

    // One build for the start-up figures from the build and for the portal targets (portalFromBuild).
    const needsPortal = serversFor(ids).some((id) => id.startsWith('portal-'));
    let builtEntry: string | undefined;
    if ((runStartup && startupBuild) || (needsPortal && portalFromBuild)) {
      console.log('  building the portal (tsc -p tsconfig.build.json into bench/results/build) ...');
      try {
        builtEntry = await buildPortal();
      } catch (err) {
        // The working tree may be mid-edit: that is no fault of the benchmark's for the start-up
        // figures; the portal targets cannot run from a build that is not there.
        failures.push({ part: 'the production build', reason: (err as Error).message, soft: !(needsPortal && portalFromBuild) });
        console.error(`!! ${(err as Error).message}`);
        if (needsPortal && portalFromBuild) throw err;
      }
    }

    if (runStartup) {
      for (const mode of startupBuild ? (['source', 'build'] as const) : (['source'] as const)) {
        const entry = mode === 'build' ? builtEntry : undefined;
        if (mode === 'build' && !entry) continue;
        console.log(`  start-up figures from the ${mode === 'build' ? 'build' : 'sources'} (${settings.startupApps} and 10 in-process apps, ${settings.startupRepeats} restarts each) ...`);
        try {
          const result = await measureStartup(temp, koaUrl, entry);
          startup.push(result);
          console.log(
            `  start-up (${mode}): first 200 after ${(result.many.firstRequestMedianMs / 1000).toFixed(2)} s with ${result.many.apps} apps, ${(result.base.firstRequestMedianMs / 1000).toFixed(2)} s with 10; new folder after ${((result.newFolderMedianMs ?? NaN) / 1000).toFixed(2)} s`,
          );
        } catch (err) {
          failures.push({ part: `start-up figures (${mode})`, reason: (err as Error).message });
          console.error(`!! start-up figures (${mode}) failed: ${(err as Error).message}`);
        }
      }
    }

    // Start one at a time so start-ups do not compete for the core; the upstream first, since the
    // proxies and the portal's apps dir name its port.
    const servers = new Map<ServerId, Server>();
    const needed = serversFor(ids);
    if (needed.includes('upstream')) servers.set('upstream', await startUpstream());
    const fixture = writeAppsDir(join(temp, 'apps-10'), 10, koaUrl, { realtime: true, upstream: servers.get('upstream')?.origin ?? 'http://127.0.0.1:9' });
    for (const id of needed) {
      if (servers.has(id)) continue;
      servers.set(id, await startServer(id, { temp, fixture, upstream: servers.get('upstream'), builtEntry: portalFromBuild ? builtEntry : undefined }));
    }
    for (const s of servers.values()) console.log(`  started ${s.id.padEnd(15)} in ${(s.startupMs / 1000).toFixed(1)} s  ${s.origin}  (pid ${s.child.pid})`);

    const sessionCookie = [...servers.values()].find((s) => s.headers.Cookie)?.headers.Cookie ?? 'atrium.sid=bench; atrium.sid.sig=bench';
    for (const id of ids) targets.push(makeTarget(id, servers, sessionCookie));
    for (const t of targets) await t.verify();

    await sleep(1_000);
    for (const t of targets) t.rssIdleMB = rssMB(processTree(t.server.child.pid));

    if (settings.warmupSeconds > 0) {
      for (const t of targets) {
        process.stdout.write(`  warm-up ${t.id.padEnd(11)} ...`);
        const run = await measure(t, settings.warmupSeconds, 0);
        process.stdout.write(` ${run.rate.toFixed(0)} ${t.unit}${run.bad + run.errors ? `  !! ${run.bad} wrong, ${run.errors} errors: ${run.firstProblem}` : ''}\n`);
        await sleep(300);
      }
    }

    // Planned rounds, then — only if other processes squeezed the servers — up to as many again,
    // until every target has MIN_CLEAN_RUNS runs in which it had its core.
    const minClean = Math.min(MIN_CLEAN_RUNS, settings.rounds);
    // More rounds help a target squeezed by other processes, not one whose generator sets the pace.
    const needsMore = (t: Target) => t.runs.filter(isClean).length < minClean && t.runs.some((r) => r.state === 'contended');
    // An extra round runs a goal's other side too: a ratio is taken on rounds both sides ran in (pairing.ts).
    const partners = (t: Target) => RATIOS.filter((r) => r.min !== undefined && (r.a === t.id || r.b === t.id)).map((r) => (r.a === t.id ? r.b : r.a));
    const extraFor = (t: Target) => needsMore(t) || targets.some((other) => needsMore(other) && partners(other).includes(t.id));
    for (let round = 1; round <= settings.rounds * 2; round++) {
      if (round > settings.rounds) {
        if (!targets.some(needsMore)) break;
        if (round === settings.rounds + 1) console.log(`  the machine is busy: extra rounds until each contended target has ${minClean} clean run(s) (at most ${settings.rounds} more)`);
      }
      // Each goal's two sides back to back, in alternating order; the blocks rotate (pairing.ts).
      const order = roundOrder(targets, round);
      for (const t of order) {
        if (round > settings.rounds && !extraFor(t)) continue;
        const run = await measure(t, settings.durationSeconds, round);
        t.runs.push(run);
        const mark = run.state === 'clean' ? '' : run.state === 'contended' ? ': contended' : ': generator-bound';
        const upstream = t.upstream ? ` + upstream ${run.upstreamUsPerOp?.toFixed(0)}` : '';
        const conns = run.upstreamConnectionsPerOp === undefined ? '' : `, ${run.upstreamConnectionsPerOp} upstream conn/req`;
        const bad = run.bad + run.errors ? `  !! ${run.bad} wrong, ${run.errors} errors: ${run.firstProblem}` : '';
        console.log(
          `  round ${round} ${t.id.padEnd(11)} ${run.rate.toFixed(0).padStart(7)} ${t.unit.padEnd(6)} p50 ${run.p50Ms} ms  p99 ${run.p99Ms} ms  server ${run.serverUsPerOp?.toFixed(0)} (sys ${run.serverSystemUsPerOp?.toFixed(0)})${upstream} µs/op (core ${run.coreBusyPercent}%${mark}), generator ${run.generatorPercent}%${conns}${bad}`,
        );
        await sleep(300);
      }
    }
    for (const t of targets) t.rssAfterLoadMB = rssMB(processTree(t.server.child.pid));

    const invalid = report({ started, targets, startup, failures, temp });
    // Figures from servers that answered something else than the expected body measure nothing;
    // a part that could not run (wrk or nginx missing, start-up failed) is a failure too.
    if (invalid.length > 0 || failures.some((f) => !f.soft)) process.exitCode = 1;
  } finally {
    await stopAll();
    if (keepTemp) console.log(`temp folder kept: ${temp} (and the build in bench/results/build)`);
    else removeTemp();
  }
}
