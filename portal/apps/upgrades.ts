import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { AtriumError } from '../../lib/errors.ts';
import { decide } from '../../lib/gate.ts';
import type { Logger } from '../../lib/log.ts';
import { assertSafePath } from '../../lib/paths.ts';
import type { AppTable } from './dispatch.ts';
import { refuseUpgrade, type UpstreamProxy } from './proxy.ts';
import type { Realtime } from './realtime.ts';
import type { SessionReader } from '../sessions/reader.ts';
import { appOfRequest, type AppOrigins } from './origin/request-host.ts';

const SOCKET_IO = '/socket.io/';

/**
 * Websocket upgrades that are not socket.io's: only under an upstream app's path, only after the
 * same path checks and gate as HTTP. A refused upgrade gets a plain 400/401/403/404 answer and the
 * socket is closed; nothing reaches the app.
 */
export function upgradeHandler(deps: { table: AppTable; reader: SessionReader; proxy: UpstreamProxy; realtime: Realtime; publicOrigin: string; origins?: AppOrigins; log: Logger }) {
  const { table, reader, proxy, realtime, publicOrigin, origins, log } = deps;
  return (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const raw = req.url ?? '/';
    if (raw.startsWith(SOCKET_IO)) return; // socket.io's own listener answers these
    socket.on('error', () => socket.destroy());
    route(raw).catch((err: unknown) => {
      log.warn({ err }, 'upgrade failed');
      refuseUpgrade(socket, 500, 'Internal Server Error');
    });

    async function route(target: string): Promise<void> {
      const path = target.split('?', 1)[0] as string;
      try {
        assertSafePath(path);
      } catch (err) {
        refuseUpgrade(socket, 400, 'Bad Request', JSON.stringify({ error: (err as AtriumError).code }));
        return;
      }
      if (origins) return routeOnAppOrigin(origins, path);
      // A page on another origin (even a same-site sibling, which Lax cookies reach) may not open one.
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== publicOrigin) return refuseUpgrade(socket, 403, 'Forbidden', JSON.stringify({ error: 'cross_origin' }));
      const [, apps, tier, name] = path.split('/');
      const app = apps === 'apps' && tier && name ? table.get(tier, name) : undefined;
      // Identity first, as for HTTP: an anonymous client learns nothing about which apps exist.
      const identity = await reader.read(req);
      if (!identity) return refuseUpgrade(socket, 401, 'Unauthorized', JSON.stringify({ error: 'unauthenticated' }));
      if (!app || !app.upstream || !path.startsWith(`${app.prefix}/`)) return refuseUpgrade(socket, 404, 'Not Found', JSON.stringify({ error: 'not_found' }));
      const decision = decide(identity.user, app);
      if (!decision.allowed) return refuseUpgrade(socket, 403, 'Forbidden', JSON.stringify({ error: 'forbidden', needed: app.tier, level: identity.user.level }));
      await proxy.upgrade(req, socket, head, { prefix: app.prefix, upstream: app.upstream, groups: app.groups }, identity.user, path);
      realtime.trackTunnel(socket, identity.sessionId, app);
    }

    /** With APP_ORIGIN: upgrades only on an app's own origin, from its own pages, by its own session. */
    async function routeOnAppOrigin(origins: AppOrigins, path: string): Promise<void> {
      const target = appOfRequest(origins, req);
      // The portal's origin serves no app content, websockets included.
      if (!target) return refuseUpgrade(socket, 404, 'Not Found', JSON.stringify({ error: 'not_found' }));
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== target.origin) return refuseUpgrade(socket, 403, 'Forbidden', JSON.stringify({ error: 'cross_origin' }));
      const app = table.get(target.tier, target.name);
      const identity = app ? await origins.sessions.identifyRequest(req, target.key) : undefined;
      if (!identity) return refuseUpgrade(socket, 401, 'Unauthorized', JSON.stringify({ error: 'unauthenticated' }));
      if (!app?.upstream) return refuseUpgrade(socket, 404, 'Not Found', JSON.stringify({ error: 'not_found' }));
      const decision = decide(identity.user, app);
      if (!decision.allowed) return refuseUpgrade(socket, 403, 'Forbidden', JSON.stringify({ error: 'forbidden', needed: app.tier, level: identity.user.level }));
      await proxy.upgrade(req, socket, head, { prefix: app.prefix, upstream: app.upstream, origin: target.origin, groups: app.groups }, identity.user, path);
      realtime.trackTunnel(socket, identity.sessionId, app);
    }
  };
}
