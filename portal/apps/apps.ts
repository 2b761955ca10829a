import { join } from 'node:path';
import type { Server } from 'node:http';
import type Koa from 'koa';
import type { Config } from '../../lib/config.ts';
import type { Logger } from '../../lib/log.ts';
import type { Directory } from '../directory/directory.ts';
import { appOrigin } from '../../lib/apps/origins.ts';
import type { PortalContext, PortalMiddleware } from '../http/context.ts';
import { AppOriginSessions } from './origin/app-sessions.ts';
import type { AppOrigins } from './origin/request-host.ts';
import { SessionReader } from '../sessions/reader.ts';
import type { Storage } from '../storage/storage.ts';
import type { AppRegistry } from './app-registry.ts';
import { AssertionSigner } from './assertions.ts';
import { childServices } from './child-services.ts';
import { AppTable, dispatch } from './dispatch.ts';
import { LiveApps } from './live-apps.ts';
import { UpstreamProxy } from './proxy.ts';
import { Realtime } from './realtime.ts';
import { ProcessLedger } from './process-ledger.ts';
import { Supervisor } from './supervisor.ts';
import { upgradeHandler } from './upgrades.ts';

/** Everything that serves apps: the table, live discovery, the proxy, app processes, sockets. */
export interface Apps {
  table: AppTable;
  registry: AppRegistry;
  live: LiveApps;
  realtime: Realtime;
  supervisor: Supervisor;
  proxy: UpstreamProxy;
  assertions: AssertionSigner;
  /** Reads sessions outside Koa (socket.io handshakes, websocket upgrades). */
  reader: SessionReader;
  /** `/apps/…`: sign-in, lookup, gate, app (with APP_ORIGIN: a redirect to the app's origin). */
  dispatch: PortalMiddleware;
  /** With APP_ORIGIN: the app-origin sessions and how raw requests find their app. */
  origins: AppOrigins | undefined;
  /** What in-process apps get in ctx.state.atrium. */
  decorate: (ctx: PortalContext) => void;
  /** Wires socket.io and websocket upgrades onto the HTTP server. */
  attach(server: Server): void;
  close(): Promise<void>;
}

export async function buildApps(deps: { config: Config; koa: Koa<any, any>; storage: Storage; directory: Directory; log: Logger }): Promise<Apps> {
  const { config, koa, storage, directory, log } = deps;
  const origin = config.publicUrl.origin;
  const limits = { idleMs: config.sessionIdleSeconds * 1000, lifetimeMs: config.sessionLifetimeSeconds * 1000 };
  const reader = new SessionReader(koa, storage.sessions, directory.resolver, limits);
  const pattern = config.appOrigin;
  const originSessions = pattern ? new AppOriginSessions(storage.sessions, reader, limits.lifetimeMs, pattern.protocol === 'https:') : undefined;
  const origins: AppOrigins | undefined = pattern && originSessions ? { pattern, sessions: originSessions, trustProxy: koa.proxy } : undefined;
  const realtime = new Realtime(reader, log, origin, storage.cluster?.socketAdapter(), origins);
  const assertions = await AssertionSigner.load(storage.database, origin);
  const proxy = new UpstreamProxy(assertions, config.publicUrl, log, { timeoutMs: config.upstreamTimeoutSeconds * 1000 });
  const supervisor = new Supervisor(log, config.appsUser, new ProcessLedger(join(config.dataDir, 'app-processes.json'), log));
  const table = new AppTable(log);
  const live = new LiveApps(table, { appsDir: config.appsDir, realtime, proxy, supervisor, log });
  await live.load();

  const decorate = childServices(directory.profiles);

  // Sockets follow sessions and the directory: an ended session or a demotion closes them.
  // (No polling: socket-sessions.ts.) Revocations by the CLI arrive as directory changes, so those
  // read every session with sockets afresh.
  const recheckFailed = (err: unknown) => log.warn({ err }, 'socket re-check failed');
  storage.sessions.onEnded((ids) => realtime.endSessions(ids));
  storage.sessions.onChanged((ids) => void realtime.sessionsChanged(ids).catch(recheckFailed));
  directory.watcher.onChange(() => void realtime.recheckAll(true).catch(recheckFailed));

  return {
    table,
    registry: live,
    live,
    realtime,
    supervisor,
    proxy,
    assertions,
    reader,
    origins,
    decorate,
    dispatch: dispatch(table, decorate, pattern && ((app) => appOrigin(pattern, app.tier, app.name))),
    attach(server) {
      realtime.attach(server);
      server.on('upgrade', upgradeHandler({ table, reader, proxy, realtime, publicOrigin: origin, origins, log }));
    },
    async close() {
      await live.stop();
      await realtime.close();
      await supervisor.stopAll();
      await proxy.close();
    },
  };
}
