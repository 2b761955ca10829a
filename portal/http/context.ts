import type Koa from 'koa';
import type { AtriumServices, AtriumUser } from '../../lib/app-kit.ts';
import type { Level, Tier } from '../../lib/levels.ts';

/** What a signed-in session keeps on the server. The browser holds only the session id. */
export interface PortalSession {
  uid: number;
  sub: string;
  email: string | null;
  name: string | null;
  picture: string | null;
  profile: Record<string, unknown>;
  /** The level the provider's token grants (scopes or the configured claim). */
  tokenLevel: Level | null;
  tokens: {
    access: string;
    refresh: string | undefined;
    id: string | undefined;
    expiresAt: number | undefined;
    issuedAt?: number;
  };
  /** The id (PROVIDERS) of the provider that signed this session in; absent: the first one. */
  provider?: string;
  /** The provider's session id (ID token `sid`), for back-channel logout. */
  idpSid?: string;
  /** Per-session token for the portal's own forms (logout, profile, admin). */
  csrf: string;
  authAt: number;
  /** Last use, written back at most every touch interval (idle timeout). */
  seenAt?: number;
  /** How the sign-in was made, as the ID token said (`amr`, `acr`); `mfa`: with a second factor (see step-up.ts). */
  amr?: string[];
  acr?: string;
  mfa?: boolean;
}

export interface PortalState {
  user?: AtriumUser;
  /** The directory id of the signed-in user. */
  userId?: number;
  /** Services for child apps (see lib/app-kit.ts). */
  atrium?: AtriumServices;
  /** The session's CSRF token, for forms on pages rendered outside the routes (error pages). */
  csrf?: string;
  /**
   * The app whose origin (APP_ORIGIN) the request's host names, set by the Host guard
   * (known-hosts.ts), which reads the host once: app-host.ts serves exactly what the guard let in.
   */
  appHost?: { tier: Tier; name: string };
  /** Set when the request arrived on an app's own origin (APP_ORIGIN), e.g. `https://ea-chat.apps.example.com`. */
  appOrigin?: string;
  /** Set for a probe (/healthz, /readyz) whose Host the portal does not serve: it learns up or down, nothing more. */
  hostUnknown?: true;
}

export type PortalContext = Koa.ParameterizedContext<PortalState>;
export type PortalMiddleware = Koa.Middleware<PortalState>;

/**
 * An API call, per the contract: a non-GET request, an `Accept` without `text/html`, or
 * `X-Requested-With`. A browser's own form submission (urlencoded or multipart) is not an API call:
 * its errors are pages.
 */
export function isApiCall(ctx: Koa.Context | PortalContext): boolean {
  if (ctx.get('X-Requested-With')) return true;
  if (!ctx.get('Accept').includes('text/html')) return true;
  if (ctx.method === 'GET' || ctx.method === 'HEAD') return false;
  return !ctx.is('application/x-www-form-urlencoded', 'multipart/form-data');
}

/** A browser navigation is sent to the login page; an API call gets a 401 JSON answer instead. */
export function isBrowserNavigation(ctx: Koa.Context | PortalContext): boolean {
  return (ctx.method === 'GET' || ctx.method === 'HEAD') && !isApiCall(ctx);
}

/** Whether an error should be a page rather than JSON. */
export function prefersHtml(ctx: Koa.Context | PortalContext): boolean {
  return !isApiCall(ctx);
}
