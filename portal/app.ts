import type { RequestListener, Server } from 'node:http';
import Koa from 'koa';
import mount from 'koa-mount';
import type { Config } from '../lib/config.ts';
import { sweepOidcPayloads } from '../lib/db/oidc-payloads.ts';
import type { Database } from '../lib/db/schema.ts';
import type { AccessIndex } from '../lib/directory/access.ts';
import type { DirectoryAdmin } from '../lib/directory/admin.ts';
import type { GroupDirectory } from '../lib/directory/groups.ts';
import type { UserDirectory } from '../lib/directory/users.ts';
import type { Logger } from '../lib/log.ts';
import type { CachedSessionStore } from '../lib/sessions/cached-store.ts';
import type { AppRegistry } from './apps/app-registry.ts';
import { buildApps } from './apps/apps.ts';
import { fastLane } from './apps/fast-lane.ts';
import { appHostServer } from './apps/origin/app-host.ts';
import { isolationReport } from './apps/isolation.ts';
import { handoffRoutes } from './apps/origin/handoff-route.ts';
import { sessionKeeper } from './apps/origin/keep-current.ts';
import type { AssertionSigner } from './apps/assertions.ts';
import type { AppTable, MountedApp } from './apps/dispatch.ts';
import { appOrigin } from '../lib/apps/origins.ts';
import { jwksRoute } from './apps/jwks.ts';
import type { Realtime } from './apps/realtime.ts';
import type { Supervisor } from './apps/supervisor.ts';
import { adminRoutes } from './console/admin/index.ts';
import { pageRoutes } from './console/launcher.ts';
import { RecentApps } from '../lib/recent-apps.ts';
import { profileRoutes } from './console/profile.ts';
import { buildDirectory } from './directory/directory.ts';
import { hookRoutes } from './directory/provider-webhook.ts';
import type { DirectoryWatcher } from './directory/watcher.ts';
import { assets } from './http/assets.ts';
import type { PortalMiddleware, PortalState } from './http/context.ts';
import { errorHandler } from './http/errors.ts';
import { hardening } from './http/hardening.ts';
import { healthRoutes } from './http/health.ts';
import { addressedToPublicUrl, hostGuard, KnownHosts } from './http/known-hosts.ts';
import { guardRawHosts } from './http/raw-hosts.ts';
import { Metrics } from './http/metrics.ts';
import { createViews } from './http/views.ts';
import { interactionRoutes } from './idp/interactions.ts';
import { LoginThrottle } from './idp/login-throttle.ts';
import { withQuietAsyncHooks } from './idp/provider-als.ts';
import { EMBEDDED_PREFIX, type EmbeddedProvider } from './idp/provider.ts';
import { authRoutes } from './sessions/auth-routes.ts';
import { backchannelRoutes } from './sessions/backchannel.ts';
import { bearerAuthenticator } from './sessions/bearer.ts';
import { sessionCookieName, sessionMiddleware } from './sessions/cookie-session.ts';
import { FastSessions } from './sessions/fast-path.ts';
import { buildIdentity } from './sessions/identity.ts';
import { sessionLifecycle } from './sessions/lifecycle.ts';
import type { TokenRefresher } from './sessions/refresher.ts';
import { userMiddleware } from './sessions/user.ts';
import { buildStorage } from './storage/storage.ts';

export interface Portal {
  app: Koa<PortalState>;
  /**
   * The HTTP server's request listener: Koa's pipeline with the fast lane for signed-in app
   * requests in front of it (apps/fast-lane.ts). Serve this, not `app.callback()`.
   */
  listener: RequestListener;
  config: Config;
  database: Database;
  registry: AppRegistry;
  apps: AppTable;
  access: AccessIndex;
  users: UserDirectory;
  groups: GroupDirectory;
  admin: DirectoryAdmin;
  sessions: CachedSessionStore;
  watcher: DirectoryWatcher;
  realtime: Realtime;
  supervisor: Supervisor;
  refresher: TokenRefresher;
  assertions: AssertionSigner;
  embedded: EmbeddedProvider | undefined;
  seededDemo: boolean;
  /**
   * Wires socket.io and websocket upgrades onto the HTTP server. `listener` is the one the server
   * runs for Koa (main.ts: the graceful-stop wrapper around `app.callback()`): what the raw-host
   * guard hands to Koa goes through it too.
   */
  attach(server: Server, listener: RequestListener): void;
  close(): Promise<void>;
}

const SWEEP_INTERVAL_MS = 60_000;
const WEBHOOK_MEMORY_MS = 24 * 60 * 60 * 1000;

/**
 * The composition root: builds the parts in order (storage, directory, apps, identity), then the
 * request pipeline as one table, top to bottom.
 */
export async function createPortal(config: Config, log: Logger): Promise<Portal> {
  const storage = await buildStorage(config, log);
  const directory = await buildDirectory(config, storage, log).catch(async (err: unknown) => {
    await storage.close();
    throw err;
  });
  const { database, sessions, cluster } = storage;
  const views = createViews();
  const origin = config.publicUrl.origin;

  const app = new Koa<PortalState>();
  app.keys = storage.sessionKeys;
  app.proxy = config.secureCookies;
  // Behind one TLS proxy: trust only the address it adds, not what the client put before it.
  app.maxIpsCount = 1;
  app.silent = true;

  // A part that fails to build (a bad APPS_USER, say) must not leave the database or Redis open.
  const apps = await buildApps({ config, koa: app, storage, directory, log }).catch(async (err: unknown) => {
    await storage.close();
    throw err;
  });
  const identity = await buildIdentity({ config, storage, directory, views, log });
  const { embedded, rp, verifier, refresher, tokenGrantsLevel } = identity;
  const { accessClaim } = config.oidc;
  const limits = { idleMs: config.sessionIdleSeconds * 1000, lifetimeMs: config.sessionLifetimeSeconds * 1000 };
  const { resolver } = directory;

  // APP_ORIGIN: each app on its own origin, signed in through a hand-off from this one.
  const origins = apps.origins;
  const renewal = { refresher, accessClaim, tokenGrantsLevel, log };
  const appHost =
    origins &&
    appHostServer({
      pattern: origins.pattern,
      table: apps.table,
      sessions: origins.sessions,
      portalOrigin: origin,
      keepCurrent: sessionKeeper({ store: sessions, limits, renewal }),
      decorate: apps.decorate,
    });

  // A session that only holds sockets makes no requests that would refresh its tokens: its sockets' timer does.
  apps.realtime.keepTokensWith(sessionKeeper({ store: sessions, limits, renewal, touch: false }));

  // Only PUBLIC_URL's host and app origins are served: any other Host gets a 421 (known-hosts.ts).
  const hosts = new KnownHosts(config.publicUrl, config.appOrigin);
  // Upstreams are told the groups their manifest names first (identity-headers.ts).
  apps.proxy.manifestGroupsFrom((tier, name) => apps.table.get(tier, name)?.groups);

  const isolation = isolationReport(config, apps.supervisor.isolation);
  for (const warning of isolation.warnings) log.warn({ isolation: true }, warning);
  views.setGlobal('securityWarnings', isolation.warnings);

  const metrics = new Metrics({
    atrium_apps_mounted: { help: 'Apps being served', read: () => apps.table.list().length },
    atrium_app_failures: { help: 'App folders that failed to load', read: () => apps.live.failures().length },
    atrium_sockets_connected: { help: 'Open socket.io connections on this instance', read: () => apps.realtime.io.engine?.clientsCount ?? 0 },
  });

  // The request pipeline, top to bottom. An entry that is `false` is off in this configuration.
  // (Routers type their context more narrowly than the pipeline's; each is a Koa middleware all the same.)
  // One authenticator for `Authorization`, on the fast app path and the ordinary one alike.
  const bearer = bearerAuthenticator({ verifier, access: directory.access, audience: identity.audience, accessClaim });
  // The layers every answer passes, also those of the fast lane (below).
  const head: PortalMiddleware[] = [
    metrics.middleware(),
    errorHandler(views, log, origin, { pendingLevels: (userId) => directory.requests.pendingLevels(userId) }),
    hardening({ secureCookies: config.secureCookies }),
  ];
  const pipeline: (Koa.Middleware<any, any> | false)[] = [
    ...head,
    hostGuard(hosts, app.proxy),
    // Requests for an app's own origin are answered here and go no further.
    appHost ?? false,
    healthRoutes({ database, rp, redis: cluster, isolation }).routes(),
    assets(),
    jwksRoute(apps.assertions),
    !!config.hookSecret &&
      hookRoutes({ secret: config.hookSecret, database, users: directory.users, admin: directory.admin, audit: directory.audit, log, afterChange: () => directory.watcher.refresh() }).routes(),
    backchannelRoutes({ verifier, clientId: () => rp.clientId, sessions, log }).routes(),
    // The provider builds its URLs from the request: it is told PUBLIC_URL's scheme and host.
    !!embedded && addressedToPublicUrl(EMBEDDED_PREFIX, config.publicUrl, app.proxy),
    !!embedded &&
      interactionRoutes({ provider: embedded.provider, users: directory.users, views, config, demo: config.env !== 'production', throttle: new LoginThrottle(cluster?.redis), factors: directory.factors, appTitle: (tier, name) => apps.table.get(tier, name)?.title }).routes(),
    !!embedded && withQuietAsyncHooks(EMBEDDED_PREFIX, mount(EMBEDDED_PREFIX, embedded.provider)),
    sessionMiddleware(app, sessions, { maxAgeMs: limits.lifetimeMs, secure: config.secureCookies }),
    sessionLifecycle({ limits, refresher, accessClaim, tokenGrantsLevel, log }),
    userMiddleware(resolver, bearer),
    apps.dispatch,
    metrics.route(),
    !!origins && handoffRoutes({ pattern: origins.pattern, table: apps.table, sessions: origins.sessions, reader: apps.reader, views }).routes(),
    authRoutes({ rp, identity, users: directory.users, audit: directory.audit, views, log, publicOrigin: origin, secureCookies: config.secureCookies, tokenGrantsLevel, onLogin: (id, profile) => directory.profileCache.set(id, profile) }).routes(),
    pageRoutes({
      apps: apps.table,
      views,
      log,
      requests: directory.requests,
      recent: new RecentApps(database),
      publicOrigin: origin,
      failures: () => apps.registry.failures(),
      supervisor: apps.supervisor,
      ...(origins ? { hrefOf: (a: MountedApp) => `${appOrigin(origins.pattern, a.tier, a.name)}/` } : {}),
    }).routes(),
    profileRoutes({ factors: directory.factors, profiles: directory.profiles, requests: directory.requests, admin: directory.admin, views, publicOrigin: origin }).routes(),
    adminRoutes({ ...directory, sessions, registry: apps.registry, supervisor: apps.supervisor, views, publicOrigin: origin }).routes(),
  ];
  for (const middleware of pipeline) if (middleware) app.use(middleware);

  // Signed-in app requests that need no session work are served before the pipeline (apps/fast-lane.ts).
  const sessionCookie = sessionCookieName(config.secureCookies);
  const fastSessions = new FastSessions({ store: sessions, resolver, limits, cookie: sessionCookie, keys: app.keys });
  const listener = origins
    ? app.callback()
    : fastLane({ koa: app, table: apps.table, publicHost: config.publicUrl.host, trustProxy: app.proxy, sessions: fastSessions, sessionCookie, bearer, metrics, head, decorate: apps.decorate }, app.callback());

  directory.watcher.start();
  apps.live.start();
  const sweep = setInterval(() => {
    Promise.all([
      sessions.sweep(),
      sweepOidcPayloads(database),
      directory.admin.sweepExpiredMemberships(),
      database.db.deleteFrom('webhook_events').where('received_at', '<', Date.now() - WEBHOOK_MEMORY_MS).execute(),
    ]).catch((err: unknown) => log.warn({ err }, 'sweep failed'));
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return {
    app,
    listener,
    config,
    database,
    registry: apps.registry,
    apps: apps.table,
    access: directory.access,
    users: directory.users,
    groups: directory.groups,
    admin: directory.admin,
    sessions,
    watcher: directory.watcher,
    realtime: apps.realtime,
    supervisor: apps.supervisor,
    assertions: apps.assertions,
    refresher,
    embedded,
    seededDemo: directory.seededDemo,
    attach(server, listener) {
      apps.attach(server);
      // Upgrades and socket.io's own requests never pass the pipeline: the same Host rule, on the server.
      guardRawHosts(server, hosts, app.proxy, listener);
    },
    async close() {
      clearInterval(sweep);
      directory.watcher.stop();
      await apps.close();
      await storage.close();
    },
  };
}
