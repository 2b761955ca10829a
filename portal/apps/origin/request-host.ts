import type { IncomingMessage } from 'node:http';
import { appFromHost, appOrigin, type AppOriginPattern } from '../../../lib/apps/origins.ts';
import type { AppOriginSessions } from './app-sessions.ts';

/** App origins as the parts outside Koa (socket.io, websocket upgrades) need them. */
export interface AppOrigins {
  pattern: AppOriginPattern;
  sessions: AppOriginSessions;
  /** Whether X-Forwarded-Host is to be believed (the portal is behind its TLS proxy), as Koa's `app.proxy`. */
  trustProxy: boolean;
}

/** The Host a raw request names, as Koa's `ctx.host` would read it. */
export function requestHost(req: IncomingMessage, trustProxy: boolean): string | undefined {
  const forwarded = trustProxy ? req.headers['x-forwarded-host'] : undefined;
  const host = (typeof forwarded === 'string' && forwarded.split(',', 1)[0]?.trim()) || req.headers.host;
  return host || undefined;
}

/** The app whose origin a raw request arrived on, with that origin; undefined on the portal's host. */
export function appOfRequest(origins: AppOrigins, req: IncomingMessage): { tier: string; name: string; key: string; origin: string } | undefined {
  const target = appFromHost(origins.pattern, requestHost(req, origins.trustProxy));
  return target && { ...target, key: `${target.tier}/${target.name}`, origin: appOrigin(origins.pattern, target.tier, target.name) };
}
