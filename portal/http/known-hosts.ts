import { appFromHost, type AppOriginPattern } from '../../lib/apps/origins.ts';
import { AtriumError } from '../../lib/errors.ts';
import { requestHost } from '../apps/origin/request-host.ts';
import type { PortalMiddleware } from './context.ts';

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

  /** Whether `host` (a Host or X-Forwarded-Host value) names the portal itself. */
  isPortal(host: string | undefined): boolean {
    if (!host) return false;
    return host === this.portalHost || this.portalSpellings.has(host.toLowerCase());
  }

  /** Whether the portal serves `host`: its own, or an app origin's. */
  isKnown(host: string | undefined): boolean {
    if (this.isPortal(host)) return true;
    return this.appOrigin !== undefined && appFromHost(this.appOrigin, host) !== undefined;
  }

  /** A loopback name typed on this machine (see LOOPBACK_HOST); never a page's after rebinding. */
  static isLoopbackName(host: string | undefined): boolean {
    return host !== undefined && LOOPBACK_HOST.test(host);
  }
}

/**
 * Refuses requests for hosts the portal does not serve (421, rendered by the error handler, which
 * sits above). Probes pass whatever their Host, marked so /readyz keeps its details to itself;
 * /metrics also passes under a loopback name, for a local scraper (the metrics route still checks
 * the connection is local).
 *
 * The host checked is the one Koa reads as `ctx.host` (X-Forwarded-Host behind the TLS proxy, else
 * Host): the very value it builds URLs from. It is read as the raw paths read it (requestHost),
 * which skips Koa's getter and its array per request, and refuses rather than trims a Host with a
 * comma in it.
 */
export function hostGuard(hosts: KnownHosts, trustProxy: boolean): PortalMiddleware {
  // Not `async`: every request passes here, and a pass-through needs no promise of its own.
  return (ctx, next) => {
    const host = requestHost(ctx.req, trustProxy);
    if (hosts.isKnown(host)) return next();
    if (PROBE_PATHS.has(ctx.path)) {
      ctx.state.hostUnknown = true;
      return next();
    }
    if (ctx.path === '/metrics' && KnownHosts.isLoopbackName(host)) return next();
    throw new MisdirectedRequestError(hosts.publicOrigin);
  };
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
