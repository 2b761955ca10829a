import Koa from 'koa';
import mount from 'koa-mount';
import { AccessRequests } from '../lib/access-requests.ts';
import type { Config } from '../lib/config.ts';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import type { Database } from '../lib/db/schema.ts';
import { AccessIndex } from '../lib/directory/access.ts';
import { DirectoryAdmin } from '../lib/directory/admin.ts';
import { AuditLog } from '../lib/directory/audit.ts';
import { seedDemoAccounts, usableDemoAccounts } from '../lib/directory/demo.ts';
import { ConfigError } from '../lib/errors.ts';
import { GroupDirectory } from '../lib/directory/groups.ts';
import { UserDirectory } from '../lib/directory/users.ts';
import { ACCESS_SCOPES } from '../lib/levels.ts';
import type { Logger } from '../lib/log.ts';
import { RelyingParty } from '../lib/oidc/relying-party.ts';
import { localKeys, remoteKeys, TokenVerifier } from '../lib/oidc/token-verifier.ts';
import { ProfileCache } from '../lib/profile/cache.ts';
import { ProfileFields } from '../lib/profile/fields.ts';
import { ProfileService } from '../lib/profile/service.ts';
import { CachedSessionStore } from '../lib/sessions/cached-store.ts';
import { RedisSessionStore } from '../lib/sessions/redis-store.ts';
import { SqlSessionStore } from '../lib/sessions/sql-store.ts';
import { Cluster } from './storage/cluster.ts';
import type { Server } from 'node:http';
import type { AppRegistry } from './apps/app-registry.ts';
import { AssertionSigner } from './apps/assertions.ts';
import { LiveApps } from './apps/live-apps.ts';
import { Metrics } from './http/metrics.ts';
import { UpstreamProxy } from './apps/proxy.ts';
import { Realtime } from './apps/realtime.ts';
import { SessionReader } from './sessions/reader.ts';
import { Supervisor } from './apps/supervisor.ts';
import { upgradeHandler } from './apps/upgrades.ts';
import { childServices } from './apps/child-services.ts';
import type { PortalState } from './http/context.ts';
import { DirectoryWatcher } from './directory/watcher.ts';
import { AppTable, dispatch } from './apps/dispatch.ts';
import { forgetAccount, sweepOidcPayloads } from '../lib/db/oidc-payloads.ts';
import { interactionRoutes } from './idp/interactions.ts';
import { LoginThrottle } from './idp/login-throttle.ts';
import { withQuietAsyncHooks } from './idp/provider-als.ts';
import { createEmbeddedProvider, EMBEDDED_PREFIX, type EmbeddedProvider } from './idp/provider.ts';
import { bearerAuthenticator } from './sessions/bearer.ts';
import { errorHandler } from './http/errors.ts';
import { fastAppPath } from './sessions/fast-path.ts';
import { sessionLifecycle } from './sessions/lifecycle.ts';
import { backchannelRoutes } from './sessions/backchannel.ts';
import { TokenRefresher } from './sessions/refresher.ts';
import { hardening } from './http/hardening.ts';
import { sessionMiddleware } from './sessions/cookie-session.ts';
import { userMiddleware } from './sessions/user.ts';
import { adminRoutes } from './console/admin/index.ts';
import { assets } from './http/assets.ts';
import { authRoutes } from './sessions/auth-routes.ts';
import { healthRoutes } from './http/health.ts';
import { jwksRoute } from './apps/jwks.ts';
import { hookRoutes } from './directory/provider-webhook.ts';
import { pageRoutes } from './console/launcher.ts';
import { profileRoutes } from './console/profile.ts';
import { developmentSessionKeys } from './storage/secrets.ts';
import { createViews } from './http/views.ts';

export interface Portal {
  app: Koa<PortalState>;
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
  /** Wires socket.io and websocket upgrades onto the HTTP server. */
  attach(server: Server): void;
  close(): Promise<void>;
}

const SWEEP_INTERVAL_MS = 60_000;
const WEBHOOK_MEMORY_MS = 24 * 60 * 60 * 1000;

/** Builds the whole portal: storage, directory, provider, apps and the Koa pipeline. */
export async function createPortal(config: Config, log: Logger): Promise<Portal> {
  const database = await openDatabase(config.database);
  const applied = await migrateToLatest(database);
  if (applied.length > 0) log.info({ migrations: applied }, 'database migrated');

  const sessionKeys = config.sessionKeys ?? developmentSessionKeys(config.dataDir);
  const users = new UserDirectory(database);
  const groups = new GroupDirectory(database);
  const embeddedIdp = config.oidc.issuer === undefined;
  const seededDemo = embeddedIdp && config.env !== 'production' ? await seedDemoAccounts(users, groups) : false;
  if (embeddedIdp && config.env === 'production') {
    const demo = await usableDemoAccounts(users);
    if (demo.length > 0) {
      await database.close();
      throw new ConfigError(demo.map((email) => `demo account ${email} still opens with the demo password: npm run atrium -- users disable ${email}`));
    }
  }

  // The directory, in memory for the request path and kept current by the watcher.
  const access = await AccessIndex.load(database);
  const profileCache = new ProfileCache();
  const watcher = new DirectoryWatcher({ database, access, profiles: profileCache, log });
  await watcher.refresh();
  const cluster = config.redisUrl ? new Cluster(config.redisUrl, log) : undefined;
  if (cluster) await cluster.connect();
  const sessions = new CachedSessionStore(cluster ? new RedisSessionStore(cluster.redis) : new SqlSessionStore(database));
  if (cluster) await cluster.shareSessions(sessions);
  const audit = new AuditLog(database);
  const admin = new DirectoryAdmin({
    database,
    users,
    groups,
    audit,
    sessions,
    onChange: () => watcher.refresh(),
    onDisable: embeddedIdp ? (sub) => forgetAccount(database, sub) : undefined,
  });
  const profiles = new ProfileService(database, new ProfileFields(database), audit, profileCache);
  const requests = new AccessRequests(database, audit, admin);
  const views = createViews();
  const resolver = { access, profiles: profileCache, loadProfile: (id: number) => profiles.get(id) };

  const origin = config.publicUrl.origin;
  const app = new Koa<PortalState>();
  app.keys = sessionKeys;
  app.proxy = config.secureCookies;
  // Behind one TLS proxy: trust only the address it adds, not what the client put before it.
  app.maxIpsCount = 1;
  app.silent = true;

  // Apps: in-process ones, upstream ones behind the proxy, their sockets, kept live from APPS_DIR.
  const limits = { idleMs: config.sessionIdleSeconds * 1000, lifetimeMs: config.sessionLifetimeSeconds * 1000 };
  const reader = new SessionReader(app, sessions, resolver, limits);
  const realtime = new Realtime(reader, log, origin, cluster?.socketAdapter());
  const assertions = await AssertionSigner.load(database, origin);
  const proxy = new UpstreamProxy(assertions, config.publicUrl, log);
  const supervisor = new Supervisor(log);
  const apps = new AppTable();
  const live = new LiveApps(apps, { appsDir: config.appsDir, realtime, proxy, supervisor, log });
  await live.load();
  const registry: AppRegistry = live;
  sessions.onEnded((ids) => realtime.endSessions(ids));
  watcher.onChange(() => {
    realtime.recheckAll().catch((err: unknown) => log.warn({ err }, 'socket re-check failed'));
  });

  const embedded = embeddedIdp ? await createEmbeddedProvider({ config, sessionKeys, database, users, access, views, log }) : undefined;
  const rp = new RelyingParty({
    issuer: embedded?.issuer ?? (config.oidc.issuer as URL),
    clientId: embedded?.client.id ?? config.oidc.clientId,
    clientSecret: embedded?.client.secret ?? config.oidc.clientSecret,
    redirectUri: `${origin}/auth/callback`,
    // The embedded provider grants `access:*` scopes only when asked for them.
    scope: embedded ? `${config.oidc.scope} ${ACCESS_SCOPES.join(' ')}` : config.oidc.scope,
    audience: embedded ? undefined : config.oidc.audience,
    accessClaim: config.oidc.accessClaim,
    logoutUrl: config.oidc.logoutUrl,
  });
  // The provider's JWTs (bearer tokens, logout tokens): the embedded provider's keys are local; an
  // external provider's come from its JWKS, cached and refetched when it rotates keys.
  let remote: ReturnType<typeof remoteKeys> | undefined;
  const verifier = new TokenVerifier({
    issuer: async () => (await rp.provider()).issuer,
    keys: async () => {
      if (embedded) return localKeys(embedded.publicJwks);
      remote ??= remoteKeys((await rp.provider()).jwksUri ?? '');
      return remote;
    },
  });
  const refresher = new TokenRefresher(rp);
  const tokenGrantsLevel = !embedded;

  const metrics = new Metrics({
    atrium_apps_mounted: { help: 'Apps being served', read: () => apps.list().length },
    atrium_app_failures: { help: 'App folders that failed to load', read: () => live.failures().length },
    atrium_sockets_connected: { help: 'Open socket.io connections on this instance', read: () => realtime.io.engine?.clientsCount ?? 0 },
  });

  const appDispatch = dispatch(apps, childServices(profiles));

  // The request pipeline, top to bottom.
  app.use(metrics.middleware());
  app.use(errorHandler(views, log));
  app.use(hardening({ secureCookies: config.secureCookies }));
  app.use(fastAppPath({ store: sessions, resolver, limits, dispatch: appDispatch }));
  app.use(healthRoutes({ database, rp, redis: cluster }).routes());
  app.use(assets());
  app.use(jwksRoute(assertions));
  if (config.hookSecret) {
    app.use(hookRoutes({ secret: config.hookSecret, database, users, admin, audit, log, afterChange: () => watcher.refresh() }).routes());
  }
  app.use(backchannelRoutes({ verifier, clientId: () => rp.clientId, sessions, log }).routes());
  if (embedded) {
    app.use(interactionRoutes({ provider: embedded.provider, users, views, config, demo: config.env !== 'production', throttle: new LoginThrottle(cluster?.redis) }).routes());
    app.use(withQuietAsyncHooks(EMBEDDED_PREFIX, mount(EMBEDDED_PREFIX, embedded.provider)));
  }
  app.use(sessionMiddleware(app, sessions, { maxAgeMs: limits.lifetimeMs, secure: config.secureCookies }));
  app.use(sessionLifecycle({ limits, refresher, accessClaim: config.oidc.accessClaim, tokenGrantsLevel, log }));
  app.use(userMiddleware(resolver, bearerAuthenticator({ verifier, access, audience: embedded?.audience ?? config.oidc.audience, accessClaim: config.oidc.accessClaim })));
  app.use(appDispatch);
  app.use(metrics.route());
  app.use(authRoutes({ rp, users, log, publicOrigin: origin, secureCookies: config.secureCookies, tokenGrantsLevel, onLogin: (id, profile) => profileCache.set(id, profile) }).routes());
  app.use(pageRoutes({ apps, views, requests }).routes());
  app.use(profileRoutes({ profiles, requests, views, publicOrigin: origin }).routes());
  app.use(adminRoutes({ admin, users, groups, access, audit, requests, profiles, sessions, registry, views, publicOrigin: origin }).routes());

  watcher.start();
  live.start();
  const sweep = setInterval(() => {
    Promise.all([
      sessions.sweep(),
      sweepOidcPayloads(database),
      database.db.deleteFrom('webhook_events').where('received_at', '<', Date.now() - WEBHOOK_MEMORY_MS).execute(),
    ]).catch((err: unknown) => log.warn({ err }, 'sweep failed'));
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return {
    app,
    config,
    database,
    registry,
    apps,
    access,
    users,
    groups,
    admin,
    sessions,
    watcher,
    realtime,
    supervisor,
    assertions,
    refresher,
    embedded,
    seededDemo,
    attach(server) {
      realtime.attach(server);
      server.on('upgrade', upgradeHandler({ table: apps, reader, proxy, realtime, publicOrigin: origin, log }));
    },
    async close() {
      clearInterval(sweep);
      watcher.stop();
      await live.stop();
      await realtime.close();
      await supervisor.stopAll();
      proxy.close();
      await cluster?.close();
      await database.close();
    },
  };
}
