import { appFromHost, type AppOriginPattern } from '../../lib/apps/origins.ts';
import { AtriumError, BadRequestError } from '../../lib/errors.ts';
import type { Tier } from '../../lib/levels.ts';
import { isAmbiguousHost, MALFORMED_HOST, namedHost } from '../apps/origin/request-host.ts';
import type { PortalContext, PortalMiddleware } from './context.ts';

/**
 * A request for a host the portal does not serve. 421 (Misdirected Request) says "not here" without
 * pretending the path does not exist; the message names where the portal does answer.
 * (It belongs with the other error classes in lib/errors.ts; kept here while that file is not ours.)
 */
export class MisdirectedRequestError extends AtriumError {
  constructor(publicOrigin: string) {
    super(421, 'misdirected_request', `This server does not answer for that address. Atrium is at ${publicOrigin}/.`);
  }
}

/** A Host or X-Forwarded-Host the portal will not read (a comma or an `@` in it; see request-host.ts). */
export function malformedHostError(): BadRequestError {
  return new BadRequestError('The Host header must name one host, nothing else.', { code: 'bad_host' });
}

/** A request target that is neither a path nor an absolute http(s) URL with a plain host. */
export function malformedTargetError(): BadRequestError {
  return new BadRequestError('The request target must be a path, or an http(s) URL naming one host.', { code: 'bad_request_target' });
}

/** The app an app origin's host names (APP_ORIGIN). */
export interface AppHost {
  tier: Tier;
  name: string;
}

export const PORTAL = 'portal';
/** What a host names: the portal itself, an app (APP_ORIGIN), nothing the portal serves (undefined), or MALFORMED_HOST. */
export type HostAnswer = typeof PORTAL | AppHost | typeof MALFORMED_HOST | undefined;

/**
 * Liveness and readiness answer whatever Host a probe sends (a kubelet names the pod's IP): they say
 * only up or down, and /readyz leaves out its isolation report for such hosts (see health.ts).
 */
const PROBE_PATHS = new Set(['/healthz', '/readyz']);

/**
 * Names a page can never be served under after DNS rebinding: a rebinding page keeps its own
 * host name in every request, so a loopback literal means someone on this machine typed it
 * (`curl 127.0.0.1:3000/metrics`, a local Prometheus).
 */
const LOOPBACK_HOST = /^(?:localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d{1,5})?$/;

/**
 * The hosts the portal answers for: PUBLIC_URL's host, and with APP_ORIGIN every host the pattern
 * names. Any other Host (a rebinding page's `evil.example`, a pod IP, a typo) would have the portal
 * build links and provider URLs from a name that is not its own, so it gets a 421 instead.
 * Everything is worked out once; a request costs one comparison when it names the portal exactly.
 */
export class KnownHosts {
  readonly publicOrigin: string;
  /** PUBLIC_URL's host exactly as URL writes it: lowercase, no default port. */
  private readonly portalHost: string;
  /** The same host as a client may spell it: also with the scheme's default port. */
  private readonly portalSpellings: ReadonlySet<string>;

  constructor(
    publicUrl: URL,
    private readonly appOrigin: AppOriginPattern | undefined,
  ) {
    this.publicOrigin = publicUrl.origin;
    this.portalHost = publicUrl.host;
    const defaultPort = publicUrl.protocol === 'https:' ? '443' : '80';
    this.portalSpellings = new Set(publicUrl.port ? [publicUrl.host] : [publicUrl.host, `${publicUrl.hostname}:${defaultPort}`]);
  }

  /**
   * What `host` (a Host or X-Forwarded-Host value, as namedHost reads it) names. The usual request
   * names the portal exactly and costs one comparison; an app origin's host is parsed once, here.
   */
  answer(host: string | undefined): HostAnswer {
    if (host === this.portalHost) return PORTAL;
    if (!host) return undefined;
    if (isAmbiguousHost(host)) return MALFORMED_HOST;
    if (this.portalSpellings.has(host.toLowerCase())) return PORTAL;
    return this.appOrigin === undefined ? undefined : appFromHost(this.appOrigin, host);
  }

  /** Whether the portal serves `host`: its own, or an app origin's. */
  isKnown(host: string | undefined): boolean {
    const answer = this.answer(host);
    return answer !== undefined && answer !== MALFORMED_HOST;
  }

  /** A loopback name typed on this machine (see LOOPBACK_HOST); never a page's after rebinding. */
  static isLoopbackName(host: string | undefined): boolean {
    return host !== undefined && LOOPBACK_HOST.test(host);
  }
}

/**
 * An absolute-form request target (`GET http://host/path?query HTTP/1.1`, RFC 9112 §3.2.2): the host
 * it names, and the origin-form it stands for (`/path?query`). Undefined when it is malformed: not
 * http(s), no host, or userinfo or a comma in the host (see request-host.ts).
 */
export function absoluteForm(target: string): { host: string; originForm: string } | undefined {
  const match = ABSOLUTE_FORM.exec(target);
  const host = match?.[1];
  if (!host || isAmbiguousHost(host)) return undefined;
  const rest = match?.[2] ?? '';
  return { host, originForm: rest.startsWith('/') ? rest : `/${rest}` };
}
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([\s\S]*)$/i;
const SLASH = 0x2f;

/** Whether a request target is in origin-form (`/path`), as browsers and proxies send nearly always. */
export function isOriginForm(target: string | undefined): boolean {
  return target !== undefined && target.charCodeAt(0) === SLASH;
}

/**
 * Refuses requests for hosts the portal does not serve (421, rendered by the error handler, which
 * sits above). Probes pass whatever their Host, marked so /readyz keeps its details to itself;
 * /metrics also passes under a loopback name, for a local scraper (the metrics route still checks
 * the connection is local).
 *
 * The host checked is the one Koa reads as `ctx.host` (X-Forwarded-Host behind the TLS proxy, else
 * Host): the very value it builds URLs from, read once here. An app origin's answer is kept in
 * `ctx.state.appHost` for app-host.ts, so both act on the same reading. A host Koa would read
 * differently from a label check (a comma, an empty first value, an `@`) is a 400.
 *
 * An absolute-form target (`GET http://evil.example/… HTTP/1.1`) would have Koa's `ctx.href` and
 * `ctx.URL` (and the provider, which builds URLs from them) name its host, whatever Host says: that
 * host must pass the same rule, and the request goes on in origin-form, so nothing downstream sees
 * it. (raw-hosts.ts rewrites it before Koa for the server's requests; this covers the rest.)
 */
export function hostGuard(hosts: KnownHosts, trustProxy: boolean): PortalMiddleware {
  // Not `async`: every request passes here, and a pass-through needs no promise of its own.
  return (ctx, next) => {
    const named = isOriginForm(ctx.req.url) ? undefined : toOriginForm(ctx);
    const host = namedHost(ctx.req, trustProxy);
    const answer = hosts.answer(host);
    if (answer === MALFORMED_HOST) throw malformedHostError();
    if (answer !== undefined && (named === undefined || hosts.isKnown(named))) {
      if (answer !== PORTAL) ctx.state.appHost = answer;
      return next();
    }
    if (PROBE_PATHS.has(ctx.path)) {
      ctx.state.hostUnknown = true;
      return next();
    }
    if (ctx.path === '/metrics' && KnownHosts.isLoopbackName(host) && (named === undefined || KnownHosts.isLoopbackName(named))) return next();
    throw new MisdirectedRequestError(hosts.publicOrigin);
  };
}

/** Turns an absolute-form request into origin-form (Koa's copies of the URL too); returns the host it named. */
function toOriginForm(ctx: PortalContext): string {
  const absolute = absoluteForm(ctx.req.url ?? '');
  if (!absolute) throw malformedTargetError();
  ctx.url = absolute.originForm;
  ctx.originalUrl = ctx.request.originalUrl = absolute.originForm;
  return absolute.host;
}

/**
 * The embedded provider builds its URLs (discovery, redirects, form actions) from the request's
 * scheme and host. Under `prefix` the request is made to say PUBLIC_URL's, whatever the client
 * or the proxy wrote (a host spelled in capitals or with its default port, a missing or wrong
 * X-Forwarded-Proto), so the provider can only ever name PUBLIC_URL.
 */
export function addressedToPublicUrl(prefix: string, publicUrl: URL, trustProxy: boolean): PortalMiddleware {
  const host = publicUrl.host;
  const scheme = publicUrl.protocol.slice(0, -1);
  return (ctx, next) => {
    if (!ctx.path.startsWith(prefix)) return next();
    const headers = ctx.req.headers;
    headers.host = host;
    // Koa reads these only when it trusts the proxy; without one the scheme is the socket's (http), as is PUBLIC_URL's.
    if (trustProxy) {
      headers['x-forwarded-host'] = host;
      headers['x-forwarded-proto'] = scheme;
    }
    return next();
  };
}
