/**
 * Start-up figures, with the portal pinned to the server core like every server here:
 *
 * - time from spawning the portal process to its first `200 hello` from one app, with APPS_DIR
 *   holding BENCH_STARTUP_APPS (200) in-process apps, and with 10 for comparison. The portal is
 *   started once cold (migrations, demo accounts) and signed in; then it is stopped and restarted
 *   BENCH_STARTUP_REPEATS times on the same data, polling the hello app every 20 ms with that session
 *   cookie from the moment of the spawn (a restart, as in a deployment: the session is in the database);
 * - time from writing a new app folder (mkdir + index.js, as a person or a deploy does) into the
 *   running 200-app portal to its first `200` with the new app's body, polled every 20 ms;
 * - memory per mounted app: RSS with 200 apps minus RSS with 10, divided by 190, RSS taken 3 s
 *   after each restart's first answer (median over the restarts). RSS at that point moves by tens of
 *   MB with when the collector last ran, so the same is also measured after a full GC, in one more
 *   start with the inspector open (bench/inspector.ts): RSS and V8 heap used.
 *
 * All of it twice: from the sources (`node --import tsx portal/main.ts`, as `npm start`) and from
 * the production build (plain node on bench/build.ts's output, as `npm run start:prod`).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { appSource, HELLO_BODY, HELLO_PATH, writeAppsDir } from './fixtures.ts';
import { memoryAfterGc, type MemoryAfterGc } from './inspector.ts';
import { portalInstance, signIn, spawnPortal, startPortal, type PortalInstance } from './portal.ts';
import { exited, freePorts, rssMB, sleep, stopChild, type Child } from './processes.ts';
import { HOST, settings } from './settings.ts';
import { median } from './stats.ts';

const POLL_MS = 20;
const BASE_APPS = 10;
const SETTLE_MS = 3_000;
const NEW_FOLDER_TIMEOUT_MS = 30_000;

export interface StartupFigures {
  apps: number;
  /** First start on an empty database, spawn to /healthz (migrations, seeding), ms. */
  coldToHealthzMs: number;
  /** Each restart: spawn to the first 200 from the hello app, ms. */
  firstRequestMs: number[];
  firstRequestMedianMs: number;
  /** RSS 3 s after each restart's first answer, MB. */
  rssMB: (number | null)[];
  rssMedianMB: number | null;
  afterGc: MemoryAfterGc | null;
}

export type StartupMode = 'source' | 'build';

export interface StartupResult {
  mode: StartupMode;
  many: StartupFigures;
  base: StartupFigures;
  newFolderMs: number[];
  newFolderMedianMs: number | undefined;
  newFolderMaxMs: number | undefined;
  /** (RSS with `many` apps - RSS with 10) / (many - 10), MB: median RSS after start-up. */
  perAppMB: number | null;
  /** The same after a full GC: RSS and V8 heap used. */
  perAppAfterGcMB: { rss: number; heapUsed: number } | null;
}

/** The figures for one way of starting the portal: from the sources, or from the build's entry module. */
export async function measureStartup(temp: string, koaUrl: string, builtEntry?: string): Promise<StartupResult> {
  const mode: StartupMode = builtEntry ? 'build' : 'source';
  const { figures: base } = await startupOf(BASE_APPS, temp, koaUrl, false, mode, builtEntry);
  const { figures: many, newFolderMs } = await startupOf(settings.startupApps, temp, koaUrl, true, mode, builtEntry);
  const extra = many.apps - BASE_APPS;
  const perApp = (a: number, b: number) => Math.round(((a - b) / extra) * 1000) / 1000;
  return {
    mode,
    many,
    base,
    newFolderMs,
    newFolderMedianMs: newFolderMs.length ? median(newFolderMs) : undefined,
    newFolderMaxMs: newFolderMs.length ? Math.max(...newFolderMs) : undefined,
    perAppMB: many.rssMedianMB !== null && base.rssMedianMB !== null ? perApp(many.rssMedianMB, base.rssMedianMB) : null,
    perAppAfterGcMB: many.afterGc && base.afterGc ? { rss: perApp(many.afterGc.rssMB, base.afterGc.rssMB), heapUsed: perApp(many.afterGc.heapUsedMB, base.afterGc.heapUsedMB) } : null,
  };
}

async function startupOf(
  apps: number,
  temp: string,
  koaUrl: string,
  newFolders: boolean,
  mode: StartupMode,
  builtEntry: string | undefined,
): Promise<{ figures: StartupFigures; newFolderMs: number[] }> {
  const label = `startup-${mode}-${apps}`;
  const fixture = writeAppsDir(join(temp, `apps-${label}`), apps, koaUrl);
  // The same port every time (the session cookie names this origin), and one for the inspector.
  const [port, inspectPort] = (await freePorts(2)) as [number, number];
  const instance = await portalInstance(label, fixture.dir, temp, port);
  const hello = `${instance.origin}${HELLO_PATH}`;
  const cold = await startPortal(instance, builtEntry);
  let cookie: string;
  try {
    cookie = await signIn(instance);
  } finally {
    await stopChild(cold.server);
  }
  const firstRequestMs: number[] = [];
  const rss: (number | null)[] = [];
  let newFolderMs: number[] = [];
  for (let i = 0; i < settings.startupRepeats; i++) {
    const spawned = Date.now();
    const portal = spawnPortal(instance, label, [], builtEntry);
    try {
      firstRequestMs.push(await firstAnswer(portal, hello, cookie, HELLO_BODY, spawned));
      await sleep(SETTLE_MS);
      rss.push(rssMB([portal.pid]));
      if (newFolders && i === settings.startupRepeats - 1) newFolderMs = await measureNewFolders(portal, instance, fixture.dir, cookie, koaUrl);
    } finally {
      await stopChild(portal);
    }
  }
  // One more start, with the inspector, for memory after a full collection (its timing is not counted).
  const spawned = Date.now();
  const inspected = spawnPortal(instance, label, [`--inspect=${HOST}:${inspectPort}`], builtEntry);
  let afterGc: MemoryAfterGc | null = null;
  try {
    await firstAnswer(inspected, hello, cookie, HELLO_BODY, spawned);
    await sleep(SETTLE_MS);
    afterGc = await memoryAfterGc(inspectPort);
  } catch (err) {
    console.warn(`note: memory after GC not measured for ${apps} apps (${mode}): ${(err as Error).message}`);
  } finally {
    await stopChild(inspected);
  }
  const known = rss.filter((v): v is number => v !== null);
  return {
    figures: {
      apps,
      coldToHealthzMs: cold.startupMs,
      firstRequestMs,
      firstRequestMedianMs: median(firstRequestMs),
      rssMB: rss,
      rssMedianMB: known.length ? median(known) : null,
      afterGc,
    },
    newFolderMs,
  };
}

async function measureNewFolders(portal: Child, instance: PortalInstance, appsDir: string, cookie: string, koaUrl: string): Promise<number[]> {
  const times: number[] = [];
  for (let i = 1; i <= settings.startupRepeats; i++) {
    const name = `fresh-${i}`;
    const body = `${name}\n`;
    const dir = join(appsDir, 'stable', name);
    const written = Date.now();
    mkdirSync(dir);
    writeFileSync(join(dir, 'index.js'), appSource(koaUrl, body));
    times.push(await firstAnswer(portal, `${instance.origin}/apps/stable/${name}/`, cookie, body, written, NEW_FOLDER_TIMEOUT_MS));
    // Let the watcher's debounce and rescan settle before the next folder.
    await sleep(1_000);
  }
  return times;
}

/** Polls until `url` answers 200 with `body`; the ms since `since`. */
async function firstAnswer(c: Child, url: string, cookie: string, body: string, since: number, timeoutMs = 120_000): Promise<number> {
  let lastSeen = 'nothing (not listening)';
  for (;;) {
    if (exited(c)) throw new Error(`${c.name} exited (${c.child.exitCode ?? c.child.signalCode}) before answering ${url}:\n${c.output.join('').slice(-4000)}`);
    try {
      const response = await fetch(url, { headers: { Cookie: cookie, Accept: '*/*' }, redirect: 'manual', signal: AbortSignal.timeout(5_000) });
      const text = await response.text();
      if (response.status === 200 && text === body) return Date.now() - since;
      lastSeen = `${response.status} ${text.slice(0, 100)}`;
    } catch {
      // not listening yet
    }
    if (Date.now() - since > timeoutMs) throw new Error(`${url} did not answer 200 "${body.trim()}" within ${timeoutMs / 1000} s (last: ${lastSeen})`);
    await sleep(POLL_MS);
  }
}
