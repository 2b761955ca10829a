import type { IncomingHttpHeaders, OutgoingHttpHeader, ServerResponse } from 'node:http';
import type Koa from 'koa';
import type { Logger } from '../../lib/log.ts';

/**
 * What an app's response may not do. In shared-origin mode every app answers on the portal's own
 * origin, so a header in an app's response speaks for the whole site. These would let an app author
 * take over the visitor's portal session or the site itself, and are dropped:
 *
 * - `Set-Cookie` for a portal cookie (`atrium.*`, also `__Host-`/`__Secure-` prefixed, any case):
 *   a valid session id of the author's own would make the visitor work, unknowingly, in the
 *   author's account; a forged login transaction does the same at the next sign-in.
 * - `Clear-Site-Data`: it wipes the portal's cookies and storage (signing the visitor out, so a
 *   session of the author's choosing can be planted next) and the portal's caches.
 * - `Service-Worker-Allowed`: it lets a worker script served under the app's path register with a
 *   scope above it, up to `/`; that worker then answers every portal page (/admin, a fake /idp
 *   sign-in form).
 *
 * - `X-Accel-Redirect`, `X-Sendfile`, `X-LIGHTTPD-send-file`: a front proxy (nginx, Apache,
 *   lighttpd) that honours them serves another path of its own instead of the app's answer, e.g.
 *   the visitor's `/me` or an admin page, under the app's response. (`X-Accel-Buffering` and the
 *   like, which only tune how nginx streams, pass.)
 *
 * An app's own cookies (any other name) pass untouched. App-origin mode (APP_ORIGIN) isolates apps
 * completely; these rules are what shared-origin mode can do.
 */
const REFUSED_HEADERS = ['clear-site-data', 'service-worker-allowed', 'x-accel-redirect', 'x-sendfile', 'x-lighttpd-send-file'] as const;

/** `__Host-` and `__Secure-` are browser-enforced prefixes, not part of which cookie it is. */
const COOKIE_PREFIX = /^__(?:host|secure)-/;

/**
 * Every portal cookie (session, login transactions, the embedded provider's) is `atrium` or
 * `atrium.…`, possibly prefixed. Case-insensitive: browsers match the prefixes without regard to
 * case, and a server or proxy in front may fold names too.
 */
export function isPortalCookieName(name: string): boolean {
  const bare = name.trim().toLowerCase().replace(COOKIE_PREFIX, '');
  return bare === 'atrium' || bare.startsWith('atrium.');
}

/**
 * Whether a `Set-Cookie` line would set a portal cookie, parsed as a browser parses it: the name is
 * what comes before the first `=` of the first `;`-part, trimmed. A line without a name
 * (`=atrium.sid=x`) makes a nameless cookie that the browser sends back as its bare value, which a
 * server reads as `atrium.sid=x`: for those, the value's own name counts.
 */
export function isPortalSetCookie(line: string): boolean {
  const end = line.indexOf(';');
  const pair = end < 0 ? line : line.slice(0, end);
  const eq = pair.indexOf('=');
  const name = eq < 0 ? '' : pair.slice(0, eq);
  if (name.trim() !== '') return isPortalCookieName(name);
  const value = eq < 0 ? pair : pair.slice(eq + 1);
  const inner = value.indexOf('=');
  return isPortalCookieName(inner < 0 ? value : value.slice(0, inner));
}

function asList(value: OutgoingHttpHeader): string[] {
  return Array.isArray(value) ? [...value] : [String(value)];
}

/**
 * Applies the rules to app responses: upstream responses before the proxy writes them, in-process
 * apps once their middleware has run. A refusal is logged once per app and header, so a misbehaving
 * app cannot flood the log.
 */
export class ResponseRules {
  private readonly warned = new Set<string>();

  constructor(private readonly log?: Logger) {}

  /** An upstream's response headers (http-proxy-3's `proxyRes`, or a websocket handshake answer), in place. */
  filterUpstream(headers: IncomingHttpHeaders, app: string): void {
    const cookies = headers['set-cookie'];
    if (cookies !== undefined) {
      const kept = cookies.filter((line) => this.allowCookie(line, app));
      if (kept.length === 0) delete headers['set-cookie'];
      else if (kept.length !== cookies.length) headers['set-cookie'] = kept;
    }
    for (const name of REFUSED_HEADERS) {
      if (headers[name] === undefined) continue;
      delete headers[name];
      this.refused(app, name);
    }
  }

  /**
   * Wraps an in-process app's middleware (once per app): after it has run — or thrown, since the
   * error page keeps Set-Cookie — what it added to the response's headers is filtered. Set-Cookie
   * lines that were there before the app ran are the portal's own (e.g. a signature re-signed under
   * a newer key) and are kept, even if the app tried to replace them.
   *
   * In-process apps run inside the portal and are trusted by construction; this catches what they
   * do through the response's headers, not a response they write to the socket themselves.
   */
  guard(app: string, handler: Koa.Middleware<any, any>): Koa.Middleware<any, any> {
    return (ctx, next) => {
      const res = ctx.res as ServerResponse;
      // Usually nothing is there yet: one hasHeader and no copy.
      const before = res.hasHeader('set-cookie') ? asList(res.getHeader('set-cookie') as OutgoingHttpHeader) : undefined;
      return Promise.resolve(handler(ctx, next)).then(
        () => this.filterResponse(res, app, before),
        (err: unknown) => {
          this.filterResponse(res, app, before);
          throw err;
        },
      );
    };
  }

  private filterResponse(res: ServerResponse, app: string, before: string[] | undefined): void {
    if (res.headersSent) return;
    if (res.hasHeader('set-cookie')) {
      const now = asList(res.getHeader('set-cookie') as OutgoingHttpHeader);
      const added = before ? now.filter((line) => !before.includes(line)) : now;
      const kept = added.filter((line) => this.allowCookie(line, app));
      if (before) res.setHeader('set-cookie', [...before, ...kept]);
      else if (kept.length === 0) res.removeHeader('set-cookie');
      else if (kept.length !== now.length) res.setHeader('set-cookie', kept);
    }
    for (const name of REFUSED_HEADERS) {
      if (!res.hasHeader(name)) continue;
      res.removeHeader(name);
      this.refused(app, name);
    }
  }

  private allowCookie(line: string, app: string): boolean {
    if (!isPortalSetCookie(line)) return true;
    this.refused(app, 'set-cookie', line.slice(0, Math.max(0, line.indexOf('='))).trim().slice(0, 64));
    return false;
  }

  private refused(app: string, header: string, cookie?: string): void {
    const key = `${app}\n${header}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log?.warn({ app, header, ...(cookie !== undefined ? { cookie } : {}) }, 'app response header refused: apps may not set portal cookies, clear site data, widen a service worker scope or redirect a front proxy internally (logged once per app and header)');
  }
}
