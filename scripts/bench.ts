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
 *
 * The code lives in bench/: settings.ts (knobs, targets, types), processes.ts (child processes,
 * /proc), targets.ts (start and verify each target), load.ts (one measured run), stats.ts (clean
 * runs, median), report.ts (table, latest.json) and main.ts (the orchestration).
 */
import { main } from '../bench/main.ts';
import { stopChildrenOnSignal } from '../bench/processes.ts';

stopChildrenOnSignal();

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
