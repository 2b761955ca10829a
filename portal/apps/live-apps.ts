import { watch, type FSWatcher } from 'node:fs';
import { resolve } from 'node:path';
import { discoverApps, type AppFailure, type LoadedApp } from '../../lib/apps/discovery.ts';
import { freePort } from '../../lib/free-port.ts';
import type { Logger } from '../../lib/log.ts';
import type { AppRegistry } from './app-registry.ts';
import type { AppTable } from './dispatch.ts';
import type { UpstreamProxy } from './proxy.ts';
import type { Realtime } from './realtime.ts';
import type { Supervisor } from './supervisor.ts';

const DEBOUNCE_MS = 150;
// fs.watch reports changes within milliseconds; this slower rescan only catches events it missed,
// and stays rare because with a thousand apps a rescan stats every file of every one.
const SAFETY_RESCAN_MS = 30_000;
// Without fs.watch, polling is all there is: often enough to keep "about a second" roughly true.
const POLL_RESCAN_MS = 2_000;

/**
 * The apps the portal serves, kept in step with APPS_DIR while it runs. A change to the folder
 * (noticed by fs.watch, and by a slower safety rescan where watching misses events) reloads just the
 * apps whose fingerprint moved: a new or fixed app goes live, a removed one goes away with its
 * namespace and process, and a broken edit keeps the last good version serving while the error is
 * logged and shown on the admin console. Swapping an entry in the table never disturbs requests in
 * flight: they keep the handler they started with.
 */
export class LiveApps implements AppRegistry {
  private failureList: AppFailure[] = [];
  private readonly errors = new Map<string, AppFailure>();
  private watcher: FSWatcher | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private safety: NodeJS.Timeout | undefined;
  private scanning: Promise<void> | undefined;
  private rescanAgain = false;

  constructor(
    readonly table: AppTable,
    private readonly deps: { appsDir: string; realtime: Realtime; proxy: UpstreamProxy; supervisor: Supervisor; log: Logger },
  ) {}

  failures(): AppFailure[] {
    return this.failureList;
  }

  /** The first load, at start-up. */
  async load(): Promise<void> {
    await this.rescan();
    this.deps.log.info({ apps: this.table.list().map((a) => a.prefix) }, `${this.table.list().length} app(s) mounted`);
  }

  start(): void {
    const root = resolve(this.deps.appsDir);
    let interval = SAFETY_RESCAN_MS;
    try {
      this.watcher = watch(root, { recursive: true }, () => this.schedule());
      this.watcher.on('error', (err) => {
        this.deps.log.warn({ err }, 'watching APPS_DIR failed; polling it instead');
        this.poll(POLL_RESCAN_MS);
      });
    } catch (err) {
      this.deps.log.warn({ err, appsDir: root }, 'cannot watch APPS_DIR; polling it instead');
      interval = POLL_RESCAN_MS;
    }
    this.poll(interval);
  }

  private poll(intervalMs: number): void {
    clearInterval(this.safety);
    this.safety = setInterval(() => this.schedule(), intervalMs);
    this.safety.unref();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    clearTimeout(this.debounce);
    clearInterval(this.safety);
    await this.scanning;
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.rescan().catch((err: unknown) => this.deps.log.error({ err }, 'app rescan failed'));
    }, DEBOUNCE_MS);
    this.debounce.unref();
  }

  /** Compares APPS_DIR with what is mounted and applies the difference. One scan at a time. */
  async rescan(): Promise<void> {
    if (this.scanning) {
      this.rescanAgain = true;
      return this.scanning;
    }
    this.scanning = (async () => {
      try {
        do {
          this.rescanAgain = false;
          await this.scanOnce();
        } while (this.rescanAgain);
      } finally {
        this.scanning = undefined;
      }
    })();
    return this.scanning;
  }

  private async scanOnce(): Promise<void> {
    const { log } = this.deps;
    const current = new Map(this.table.list().map((a) => [a.prefix, a]));
    const found = await discoverApps(this.deps.appsDir, (prefix, fingerprint) => {
      const mounted = current.get(prefix);
      return mounted && mounted.fingerprint === fingerprint ? mounted : undefined;
    });
    const seen = new Set<string>();

    for (const app of found.apps) {
      seen.add(app.prefix);
      const before = current.get(app.prefix);
      if (before && before.fingerprint === app.fingerprint && !this.errors.has(app.prefix)) continue;
      try {
        await this.mount(app);
        this.errors.delete(app.prefix);
        log.info({ app: app.prefix }, before ? 'app reloaded' : 'app mounted');
      } catch (err) {
        this.errors.set(app.prefix, { path: `${app.tier}/${app.name}`, tier: app.tier, name: app.name, reason: `could not start: ${(err as Error).message}` });
      }
    }
    for (const failure of found.failures) {
      const prefix = failure.tier && failure.name ? `/apps/${failure.tier}/${failure.name}` : undefined;
      if (prefix) seen.add(prefix);
      if (prefix && current.has(prefix) && failure.reason.startsWith('app.json')) {
        // The manifest may be narrowing the audience: serving the old one could leave the app wider
        // open than its owner now intends. Closed until the manifest is fixed.
        await this.unmount(current.get(prefix) as LoadedApp);
        current.delete(prefix);
        log.error({ app: failure.path, reason: failure.reason }, 'app.json is broken; the app is closed until it is fixed');
        this.errors.set(prefix, { ...failure, reason: `${failure.reason} (the app is closed until app.json is fixed)` });
      } else if (prefix && current.has(prefix)) {
        if (this.errors.get(prefix)?.reason !== failure.reason) log.error({ app: failure.path, reason: failure.reason }, 'app edit is broken; the last good version keeps serving');
        this.errors.set(prefix, { ...failure, reason: `${failure.reason} (the last good version is still serving)` });
      } else {
        if (!this.failureList.some((f) => f.path === failure.path && f.reason === failure.reason)) log.error({ app: failure.path, reason: failure.reason }, 'app skipped');
      }
    }
    for (const [prefix, app] of current) {
      if (seen.has(prefix)) continue;
      await this.unmount(app);
      this.errors.delete(prefix);
      log.info({ app: prefix }, 'app removed');
    }
    const fresh = found.failures.filter((f) => !(f.tier && f.name && this.errors.has(`/apps/${f.tier}/${f.name}`)));
    // A folder no longer broken (fixed or removed) leaves the list.
    for (const prefix of this.errors.keys()) if (!seen.has(prefix) || found.apps.some((a) => a.prefix === prefix)) this.errors.delete(prefix);
    this.failureList = [...fresh, ...this.errors.values()];
  }

  private async mount(app: LoadedApp): Promise<void> {
    const { proxy, realtime, supervisor } = this.deps;
    if (app.upstream) {
      const upstream = new URL(app.upstream.href);
      if (app.command) {
        if (upstream.port === '0') upstream.port = String(await freePort(upstream.hostname));
        supervisor.start(app.prefix, app.command, app.dir, Number(upstream.port || (upstream.protocol === 'https:' ? 443 : 80)));
      }
      const mounted: LoadedApp = { ...app, upstream };
      // One forwarder for both ways in: the fast lane calls it straight, the pipeline through its Koa handler.
      const forward = proxy.forwarder({ prefix: app.prefix, upstream });
      this.table.set(mounted, proxy.handler({ prefix: app.prefix, upstream }, forward), forward);
      realtime.unmount(app.tier, app.name);
      return;
    }
    const previous = this.table.get(app.tier, app.name);
    if (previous?.command) await supervisor.stop(previous.prefix);
    this.table.set(app);
    realtime.mount(app);
  }

  private async unmount(app: LoadedApp): Promise<void> {
    this.table.delete(app.tier, app.name);
    this.deps.realtime.unmount(app.tier, app.name);
    if (app.command) await this.deps.supervisor.stop(app.prefix);
  }
}
