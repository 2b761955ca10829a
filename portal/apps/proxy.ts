import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type Koa from 'koa';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { UpstreamError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { AssertionSigner } from './assertions.ts';
import { isPortalCookieName, ResponseRules } from './response-rules.ts';

/** What the proxy needs to know about an upstream app. */
export interface UpstreamTarget {
  prefix: string;
  /** Where the app listens, e.g. http://127.0.0.1:8501 */
  upstream: URL;
  /**
   * Set when the request came to the app's own origin (APP_ORIGIN): the app lives at `/` there, so
   * nothing is stripped, and the forwarded host and the assertion's audience are that origin.
   */
  origin?: string | undefined;
}

const IDENTITY_PREFIX = 'x-atrium-';
const FORWARDED = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-prefix', 'x-forwarded-port', 'x-forwarded-server', 'x-real-ip', 'forwarded'];

/**
 * Reverse proxy for apps that run in their own process (http-proxy-3), for HTTP and websocket
 * upgrades. The prefix is stripped (`X-Forwarded-Prefix` says what it was), the identity travels in
 * `X-Atrium-*` headers with a signed assertion, and whatever a client sent under those names — or
 * as the portal's cookies — never reaches the app. The app's answers (and websocket handshake
 * answers) pass the response rules (response-rules.ts) before they are written.
 */
export class UpstreamProxy {
  private readonly proxy = createProxyServer({ xfwd: false, changeOrigin: false, proxyTimeout: 120_000, ws: true });
  private readonly rules: ResponseRules;
  /** Which app a request in flight is for, so the response rules can name it. */
  private readonly appOf = new WeakMap<IncomingMessage, string>();

  constructor(
    private readonly signer: AssertionSigner,
    private readonly publicUrl: URL,
    private readonly log: Logger,
  ) {
    // Errors are handled per request below; this keeps an unexpected one from crashing the process.
    this.proxy.on('error', (err) => this.log.warn({ err }, 'proxy error'));
    this.rules = new ResponseRules(log);
    // The upstream's headers are rewritten before http-proxy-3 copies them onto the response.
    this.proxy.on('proxyRes', (proxyRes, req, res) => {
      this.rules.filterUpstream(proxyRes.headers, this.appOf.get(req) ?? 'upstream');
      keepPortalSetCookie(res, proxyRes.headers);
    });
    // A websocket handshake's answer (101, or a plain HTTP one) is written straight to the socket:
    // these listeners run before http-proxy-3's own, which are added after this event.
    this.proxy.on('proxyReqWs', (proxyReq, req) => {
      const app = this.appOf.get(req) ?? 'upstream';
      const filter = (answer: IncomingMessage) => this.rules.filterUpstream(answer.headers, app);
      proxyReq.once('upgrade', filter);
      proxyReq.once('response', filter);
    });
  }

  /** Rewrites the request for the upstream: path without the prefix, identity headers, forwarding headers. */
  private async prepare(req: IncomingMessage, target: UpstreamTarget, user: AtriumUser, path: string): Promise<void> {
    this.appOf.set(req, target.prefix);
    const url = new URL(req.url ?? '/', 'http://x');
    const rest = target.origin ? path : path.slice(target.prefix.length) || '/';
    req.url = `${rest}${url.search}`;
    const headers = req.headers;
    const clientIp = req.socket.remoteAddress ?? '';
    for (const name of Object.keys(headers)) {
      // CGI, WSGI and Rack read X_Atrium_User as X-Atrium-User: compare the dashed form. A bearer
      // token was the portal's to check; the upstream gets the assertion instead.
      const canonical = name.replace(/_/g, '-');
      if (canonical.startsWith(IDENTITY_PREFIX) || FORWARDED.includes(canonical) || canonical === 'authorization') delete headers[name];
    }
    stripPortalCookies(headers);
    const publicBase = target.origin ? new URL(target.origin) : this.publicUrl;
    Object.assign(headers, {
      'x-forwarded-for': clientIp,
      'x-forwarded-host': publicBase.host,
      'x-forwarded-proto': publicBase.protocol.replace(':', ''),
      ...(target.origin ? {} : { 'x-forwarded-prefix': target.prefix }),
      ...identityHeaders(user),
      'x-atrium-assertion': await this.signer.sign(user, target.origin ?? `${this.publicUrl.origin}${target.prefix}`),
    });
  }

  /** Koa middleware that proxies one app's HTTP requests (the gate has already run). */
  handler(target: UpstreamTarget): Koa.Middleware {
    return async (ctx) => {
      const user = ctx.state.user as AtriumUser;
      const origin = (ctx.state as { appOrigin?: string }).appOrigin;
      await this.prepare(ctx.req, origin ? { ...target, origin } : target, user, ctx.path);
      ctx.respond = false;
      try {
        await new Promise<void>((resolve, reject) => {
          ctx.res.once('close', () => resolve());
          this.proxy.web(ctx.req, ctx.res, { target: target.upstream.href }, (err) => reject(err));
        });
      } catch (err) {
        if (ctx.res.headersSent) {
          ctx.res.destroy();
          return;
        }
        ctx.respond = true;
        throw new UpstreamError(`This app is not answering right now (${describe(err)}). Try again in a moment.`, { cause: err, code: 'upstream_unavailable' });
      }
    };
  }

  /** Proxies a websocket upgrade (the gate has already run). */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: UpstreamTarget, user: AtriumUser, path: string): Promise<void> {
    await this.prepare(req, target, user, path);
    this.proxy.ws(req, socket, head, { target: target.upstream.href }, (err) => {
      this.log.warn({ err, app: target.prefix }, 'websocket proxy failed');
      refuseUpgrade(socket, 502, 'Bad Gateway');
    });
  }

  close(): void {
    this.proxy.close();
  }
}

/** The identity headers an upstream receives. Values are percent-encoded so any name fits in a header. */
export function identityHeaders(user: AtriumUser): Record<string, string> {
  return {
    'x-atrium-user': encodeURIComponent(user.sub),
    'x-atrium-email': encodeURIComponent(user.email ?? ''),
    'x-atrium-name': encodeURIComponent(user.name ?? ''),
    'x-atrium-level': user.level ?? '',
    'x-atrium-groups': user.groups.map(encodeURIComponent).join(','),
    'x-atrium-profile': Buffer.from(JSON.stringify(user.profile)).toString('base64url'),
  };
}

/** The portal's cookies (`atrium.…`, also `__Host-`/`__Secure-` prefixed) are never the upstream's to see. */
function stripPortalCookies(headers: IncomingHttpHeaders): void {
  if (!headers.cookie) return;
  const kept = headers.cookie
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c && !isPortalCookieName(c.includes('=') ? c.slice(0, c.indexOf('=')) : c));
  if (kept.length > 0) headers.cookie = kept.join('; ');
  else delete headers.cookie;
}

/**
 * http-proxy-3 sets the upstream's Set-Cookie on the response, replacing any the portal put there
 * first (a session signature re-signed under a newer key): those are kept, ahead of the app's.
 */
function keepPortalSetCookie(res: ServerResponse, upstream: IncomingHttpHeaders): void {
  const app = upstream['set-cookie'];
  if (app === undefined || !res.hasHeader('set-cookie')) return;
  const own = res.getHeader('set-cookie');
  upstream['set-cookie'] = [...(Array.isArray(own) ? own : [String(own)]), ...app];
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : 'no answer';
}

/** Answers an upgrade with a plain HTTP error and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, body = ''): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}
