import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type Koa from 'koa';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { UpstreamError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import type { AssertionSigner } from './assertions.ts';

/** What the proxy needs to know about an upstream app. */
export interface UpstreamTarget {
  prefix: string;
  /** Where the app listens, e.g. http://127.0.0.1:8501 */
  upstream: URL;
}

const IDENTITY_PREFIX = 'x-atrium-';
const FORWARDED = ['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-prefix', 'x-forwarded-port', 'x-forwarded-server', 'x-real-ip', 'forwarded'];

/**
 * Reverse proxy for apps that run in their own process (http-proxy-3), for HTTP and websocket
 * upgrades. The prefix is stripped (`X-Forwarded-Prefix` says what it was), the identity travels in
 * `X-Atrium-*` headers with a signed assertion, and whatever a client sent under those names — or
 * as the portal's session cookie — never reaches the app.
 */
export class UpstreamProxy {
  private readonly proxy = createProxyServer({ xfwd: false, changeOrigin: false, proxyTimeout: 120_000, ws: true });

  constructor(
    private readonly signer: AssertionSigner,
    private readonly publicUrl: URL,
    private readonly log: Logger,
  ) {
    // Errors are handled per request below; this keeps an unexpected one from crashing the process.
    this.proxy.on('error', (err) => this.log.warn({ err }, 'proxy error'));
  }

  /** Rewrites the request for the upstream: path without the prefix, identity headers, forwarding headers. */
  private async prepare(req: IncomingMessage, target: UpstreamTarget, user: AtriumUser, path: string): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const rest = path.slice(target.prefix.length) || '/';
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
    const proto = this.publicUrl.protocol.replace(':', '');
    Object.assign(headers, {
      'x-forwarded-for': clientIp,
      'x-forwarded-host': this.publicUrl.host,
      'x-forwarded-proto': proto,
      'x-forwarded-prefix': target.prefix,
      ...identityHeaders(user),
      'x-atrium-assertion': await this.signer.sign(user, `${this.publicUrl.origin}${target.prefix}`),
    });
  }

  /** Koa middleware that proxies one app's HTTP requests (the gate has already run). */
  handler(target: UpstreamTarget): Koa.Middleware {
    return async (ctx) => {
      const user = ctx.state.user as AtriumUser;
      await this.prepare(ctx.req, target, user, ctx.path);
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

/** Every portal cookie (session, login transactions, the embedded provider's) is named `atrium.…`. */
const PORTAL_COOKIE = /^atrium[.=]/;

function stripPortalCookies(headers: IncomingHttpHeaders): void {
  if (!headers.cookie) return;
  const kept = headers.cookie
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c && !PORTAL_COOKIE.test(c));
  if (kept.length > 0) headers.cookie = kept.join('; ');
  else delete headers.cookie;
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
