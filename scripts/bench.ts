/**
 * `npm run bench`: the portal beside the best peers, side by side in one run. Every server runs in
 * its own child process pinned to one core (BENCH_SERVER_CORE, 0), with the upstream a proxy
 * forwards to pinned to that same core; every load generator runs in its own process pinned to the
 * other (BENCH_LOAD_CORE, 1), and so does this process. Targets (BENCHMARKS.md has the details):
 *
 *   node        bare node http.createServer answering the hello body (also the shared upstream)
 *   koa         the same hello body from a bare Koa app (the very module the portal mounts)
 *   nginx       Debian's nginx, our own instance, reverse proxy to the upstream with keep-alive
 *   chp         configurable-http-proxy (JupyterHub's) with --default-target the upstream
 *   proxied     (a) the portal, signed in, an app.json "upstream" app pointing at the upstream
 *   inproc      (b) the portal, signed in, an in-process Koa app
 *   bearer      (d) the same with a client-credentials token of the embedded provider
 *   sio         bare socket.io, a namespace whose 'echo' handler acks
 *   portal-sio  (c) emit-with-ack through a gated namespace of an in-process app
 *   ws          websocket echo straight to the upstream
 *   nginx-ws    the same through nginx's websocket proxy
 *   portal-ws   (e) the same through the portal (an upstream app's websocket)
 *   startup     200 in-process apps to first 200, a new folder to first 200, memory per app
 *
 * HTTP load is Debian's wrk (/usr/bin/wrk, one thread, BENCH_CONNECTIONS connections, --latency, a
 * Lua script that checks every answer); socket.io and websocket load is bench/clients/socket-load.ts
 * (BENCH_CONNECTIONS clients, each waiting for its ack or echo before the next message).
 *
 * Each target is warmed up, then measured BENCH_ROUNDS times for BENCH_DURATION seconds, targets
 * interleaved (the order rotates each round) so that drift on a noisy machine hits all of them
 * alike; the figure is the median. Besides the rate, each run records the CPU time per operation of
 * the server's processes and of the upstream (from /proc), their share of their core, the load
 * generator's share of its core, and p50/p99 latency. A run in which the server core was not kept
 * busy (another process held it, or the generator could not keep up) is marked, left out of the
 * figures, and made up for by extra rounds (at most as many as planned) until each target has three
 * clean runs. Results go to bench/results/latest.json (and latest.md) and a table on stdout.
 *
 * Missing a goal is reported (MISSED, with the figures), not an error: the exit code is non-zero
 * only when the benchmark itself could not run (or part of it: wrk or nginx missing, start-up
 * failed) or a server answered anything but the expected body, before or during the load.
 *
 * Knobs (environment): BENCH_DURATION (s, 5), BENCH_ROUNDS (5), BENCH_CONNECTIONS (50),
 * BENCH_WARMUP (s, 3), BENCH_TARGETS (comma list of the ids above, default all), BENCH_SERVER_CORE (0),
 * BENCH_LOAD_CORE (1), BENCH_STARTUP_APPS (200), BENCH_STARTUP_REPEATS (3), BENCH_WRK (/usr/bin/wrk),
 * BENCH_NGINX (/usr/sbin/nginx), BENCH_PROFILE=1 (portal children write V8 CPU profiles to
 * bench/results/profiles/<target>/), BENCH_KEEP=1 (keep the temp folder).
 *
 * The code lives in bench/: settings.ts (knobs, targets, goals, types), processes.ts (pinned child
 * processes, /proc), fixtures.ts (generated apps), portal.ts (starting and signing in to a portal),
 * peers.ts (nginx, CHP), servers/ (the baseline servers), targets.ts (servers and targets),
 * generators.ts and clients/ and wrk/ (load generators), load.ts (one measured run), stats.ts
 * (clean runs, median), startup.ts (start-up figures), report.ts (tables, latest.json) and main.ts
 * (the orchestration). `npx tsc -p bench` type-checks all of it.
 */
import { main } from '../bench/main.ts';
import { stopChildrenOnSignal } from '../bench/processes.ts';

stopChildrenOnSignal();

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
