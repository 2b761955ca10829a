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

/** What requestHost answers for a host the portal will not read at all: a 400, never a guess. */
export const MALFORMED_HOST = Symbol('malformed host');
export type HostReading = string | undefined | typeof MALFORMED_HOST;

/**
 * Characters no host of the portal's holds, on which readers disagree: Koa keeps what comes before
 * a comma (`evil,ea-echo…` is `evil` to it, and `, evil.example` an empty host) and what comes after
 * an `@` (userinfo); a label check would see the whole. Such a host is refused, not read.
 */
const AMBIGUOUS = /[,@]/;

/** Whether a host value is one the portal refuses to read (see AMBIGUOUS). */
export function isAmbiguousHost(host: string): boolean {
  return AMBIGUOUS.test(host);
}

/** The header Koa's `ctx.host` comes from: X-Forwarded-Host when the proxy is trusted and it is not empty, else Host. */
export function namedHost(req: IncomingMessage, trustProxy: boolean): string | undefined {
  const forwarded = trustProxy ? req.headers['x-forwarded-host'] : undefined;
  return (typeof forwarded === 'string' && forwarded) || req.headers.host || undefined;
}

/**
 * The host a raw request names, as Koa's `ctx.host` reads it (namedHost), or MALFORMED_HOST when
 * that value holds a comma (two hosts, or an empty first one; also two X-Forwarded-Host lines, which
 * Node joins with a comma) or an `@`. For every host this lets through, `ctx.host` is the same string.
 */
export function requestHost(req: IncomingMessage, trustProxy: boolean): HostReading {
  const host = namedHost(req, trustProxy);
  return host !== undefined && isAmbiguousHost(host) ? MALFORMED_HOST : host;
}

/** The app whose origin a raw request arrived on, with that origin; undefined on the portal's host. */
export function appOfRequest(origins: AppOrigins, req: IncomingMessage): { tier: string; name: string; key: string; origin: string } | undefined {
  const host = requestHost(req, origins.trustProxy);
  // The raw-host guard (portal/http/raw-hosts.ts) has refused a malformed one before this runs.
  const target = host === MALFORMED_HOST ? undefined : appFromHost(origins.pattern, host);
  return target && { ...target, key: `${target.tier}/${target.name}`, origin: appOrigin(origins.pattern, target.tier, target.name) };
}
