import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import type Koa from 'koa';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { AtriumError, UpstreamError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { isClientDisconnect } from '../http/client-disconnect.ts';
import { errorJson, refuseRawUpgrade } from '../http/errors.ts';
import type { AssertionSigner } from './assertions.ts';
import { clientHeadersForUpstream, clientMayNotSend, endClientHop, withoutPortalCookies } from './client-headers.ts';
import { forward, UpstreamPools } from './forwarder.ts';
import { UpstreamIdentities, type UpstreamIdentity } from './identity-headers.ts';
import { ResponseRules } from './response-rules.ts';

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
  /** The groups the app's manifest names: they go first in what the app is told (identity-headers.ts). */
  groups?: readonly string[] | undefined;
}

/**
 * Forwards one request of an app's to its upstream and writes the answer to `res` (see
 * UpstreamProxy.forwarder). `origin`: the app's own origin, when the request came there (APP_ORIGIN).
 */
export type UpstreamForward = (req: IncomingMessage, res: ServerResponse, user: AtriumUser, path: string, origin?: string) => Promise<void>;

/** Where the proxy finds an app's manifest groups when its target does not say (see manifestGroupsFrom). */
type ManifestGroups = (tier: string, name: string) => readonly string[] | undefined;
const NONE: readonly string[] = Object.freeze([]);

/** UPSTREAM_TIMEOUT's default: how long an app may leave a request without an answer. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 30_000;
/** Once an app has answered, how long its stream may stay silent (long polls, event streams). */
const STREAM_IDLE_MS = 120_000;
/**
 * At most this many connections to one upstream at a time (per portal instance); more requests
 * wait their turn in the portal. Well above what a one-process app server handles at once.
 */
const UPSTREAM_CONNECTIONS = 256;
/** The error a request to a hung app ends with (Node's own code for a timeout). */
const TIMED_OUT = 'ETIMEDOUT';

/**
 * Reverse proxy for apps that run in their own process: HTTP through kept-alive undici pools
 * (forwarder.ts), websocket upgrades through http-proxy-3. The prefix is stripped (`X-Forwarded-Prefix` says what it was), the identity travels in
 * `X-Atrium-*` headers with a signed assertion, and whatever a client sent under those names, as
 * another proxy's identity or forwarding headers (client-headers.ts), or as the portal's cookies,
 * never reaches the app. The app's answers (and websocket handshake answers) pass the response
 * rules (response-rules.ts) before they are written.
 */
export class UpstreamProxy {
  // Websockets only. proxyTimeout is the idle bound once the app answers; before that, the shorter one (answerWithin).
  private readonly proxy = createProxyServer({ xfwd: false, changeOrigin: false, proxyTimeout: STREAM_IDLE_MS, ws: true });
  private readonly timeoutMs: number;
  /** HTTP: one pool of kept-alive connections per upstream. */
  private readonly pools: UpstreamPools;
  private readonly rules: ResponseRules;
  /** Which app a request in flight is for, so the response rules can name it. */
  private readonly appOf = new WeakMap<IncomingMessage, string>();
  /** What each user presents to each app, worked out once per user and app (identity-headers.ts). */
  private readonly identities = new UpstreamIdentities();
  private manifestGroups: ManifestGroups = () => undefined;
  /** The headers that stay the same for an identity at an app (constantHeaders); they go with the identity. */
  private readonly constants = new WeakMap<UpstreamIdentity, Map<string, Readonly<Record<string, string>>>>();
  /** Each app origin's URL, parsed once: its requests' forwarded host and scheme. */
  private readonly originUrls = new Map<string, URL>();

  constructor(
    private readonly signer: AssertionSigner,
    private readonly publicUrl: URL,
    private readonly log: Logger,
    options: { timeoutMs?: number } = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
    this.pools = new UpstreamPools({ answerWithinMs: this.timeoutMs, streamIdleMs: STREAM_IDLE_MS, connections: UPSTREAM_CONNECTIONS });
    // Errors are handled per request below; this keeps an unexpected one from crashing the process.
    this.proxy.on('error', (err) => this.log.warn({ err }, 'proxy error'));
    this.rules = new ResponseRules(log);
    // A websocket handshake's answer (101, or a plain HTTP one) is written straight to the socket:
    // these listeners run before http-proxy-3's own, which are added after this event.
    this.proxy.on('proxyReqWs', (proxyReq, req) => {
      const app = this.appOf.get(req) ?? 'upstream';
      const filter = (answer: IncomingMessage) => this.rules.filterUpstream(answer.headers, app);
      proxyReq.once('upgrade', filter);
      proxyReq.once('response', filter);
      this.answerWithin(proxyReq, req);
    });
  }

  /**
   * A hung app (it accepts the request and never answers) is given up on after UPSTREAM_TIMEOUT
   * without an answer and without the client sending more of its body (a slow upload is not the
   * app hanging): the request to it is destroyed, which closes that connection, and the visitor
   * gets the 502 page. (A request carrying `Expect` is not announced by http-proxy-3: it keeps the
   * idle bound alone.)
   */
  private answerWithin(proxyReq: ClientRequest, req: IncomingMessage): void {
    const timer = setTimeout(() => proxyReq.destroy(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: TIMED_OUT })), this.timeoutMs);
    const uploading = () => timer.refresh();
    const answered = () => {
      clearTimeout(timer);
      req.off('data', uploading);
    };
    req.on('data', uploading);
    proxyReq.once('response', answered);
    proxyReq.once('upgrade', answered);
    proxyReq.once('close', answered);
  }

  /**
   * Tells the proxy where apps' manifest groups are (the app table), for handlers made without
   * them. (Discovery could pass `groups` in each target instead; then this goes.)
   */
  manifestGroupsFrom(lookup: ManifestGroups): void {
    this.manifestGroups = lookup;
  }

  /**
   * Sets the headers the portal adds for the upstream onto what is left of the client's:
   * forwarding (X-Forwarded-For/-Host/-Proto, and -Prefix on the shared origin), the identity, and
   * its signed assertion (reused while it has time left, so usually no promise at all). All but
   * the client's address and the assertion stay the same for one identity at one app: made once.
   */
  private addPortalHeaders(headers: Record<string, string | string[]>, req: IncomingMessage, target: UpstreamTarget, manifestGroups: readonly string[], user: AtriumUser): void | Promise<void> {
    const identity = this.identities.of(user, target.prefix, manifestGroups);
    const audience = target.origin ?? `${this.publicUrl.origin}${target.prefix}`;
    Object.assign(headers, this.constantHeaders(identity, target, audience));
    headers['x-forwarded-for'] = req.socket.remoteAddress ?? '';
    const reused = this.signer.reusable(identity.claims, audience);
    if (reused !== undefined) {
      headers['x-atrium-assertion'] = reused;
      return;
    }
    return this.signer.sign(identity.claims, audience).then((token) => {
      headers['x-atrium-assertion'] = token;
    });
  }

  /** Forwarding host, scheme and prefix, and the identity: per identity (cached per user and app) and audience. */
  private constantHeaders(identity: UpstreamIdentity, target: UpstreamTarget, audience: string): Readonly<Record<string, string>> {
    let byAudience = this.constants.get(identity);
    const hit = byAudience?.get(audience);
    if (hit) return hit;
    const publicBase = target.origin ? this.originUrl(target.origin) : this.publicUrl;
    const made = Object.freeze({
      'x-forwarded-host': publicBase.host,
      'x-forwarded-proto': publicBase.protocol === 'https:' ? 'https' : 'http',
      ...(target.origin ? {} : { 'x-forwarded-prefix': target.prefix }),
      ...identity.headers,
    });
    if (!byAudience) this.constants.set(identity, (byAudience = new Map()));
    byAudience.set(audience, made);
    return made;
  }

  /** The path the upstream sees: without the prefix on the shared origin, as is on an app origin; the query kept. */
  private static upstreamPath(url: string, target: UpstreamTarget, path: string): string {
    const query = url.indexOf('?');
    const rest = target.origin ? path : path.slice(target.prefix.length) || '/';
    return query < 0 ? rest : `${rest}${url.slice(query)}`;
  }

  private originUrl(origin: string): URL {
    let url = this.originUrls.get(origin);
    if (!url) this.originUrls.set(origin, (url = new URL(origin)));
    return url;
  }

  /** The app's manifest groups: from the target, else from the app table, looked up once per handler. */
  private groupsOf(target: UpstreamTarget): readonly string[] {
    if (target.groups) return target.groups;
    const [, , tier = '', name = ''] = target.prefix.split('/');
    return this.manifestGroups(tier, name) ?? NONE;
  }

  /**
   * One app's HTTP requests, forwarded without Koa (the fast lane calls it straight; `handler`
   * wraps it for the pipeline). The gate has already run. `path` is the request's path (without
   * the query). Resolves once the request has ended, however; rejects (an UpstreamError, or the
   * client's own disconnect) only while nothing has been written, so an error page can still be
   * the answer.
   */
  forwarder(target: UpstreamTarget): UpstreamForward {
    // A forwarder serves one load of one app: a changed manifest comes with a new one.
    let manifestGroups: readonly string[] | undefined;
    const pool = this.pools.poolFor(target.upstream);
    const filter = (headers: IncomingHttpHeaders, res: ServerResponse) => {
      this.rules.filterUpstream(headers, target.prefix);
      keepPortalSetCookie(res, headers);
    };
    // Not `async`: the promises are the answer's and what hangs off it, with no async wrappers around them.
    const send = (req: IncomingMessage, res: ServerResponse, headers: Record<string, string | string[]>, forTarget: UpstreamTarget, path: string): Promise<void> => {
      // The client may have gone while the assertion was signed: its 'close' has passed, and would
      // never be heard below. Nothing to answer (metrics count it as the client's, 499).
      if (req.socket.destroyed) return Promise.resolve(this.disconnected(req, target));
      const request = { method: req.method ?? 'GET', path: UpstreamProxy.upstreamPath(req.url ?? '/', forTarget, path), headers, body: hasBody(req) ? req : null };
      return forward(pool, request, res, filter).then(
        (outcome) => {
          // Closed before the answer was complete: the client left (an aborted upload, a closed tab).
          if (outcome === 'client left') this.disconnected(req, target);
          else if (outcome === 'cut off') this.log.warn({ method: req.method, url: req.url, app: target.prefix }, 'upstream broke off its answer');
        },
        (err: unknown) => {
          // The client aborting its upload is not the app's failure: the error handler logs it as a disconnect.
          if (isClientDisconnect(req, err)) throw err;
          if (isTimeout(err)) throw new UpstreamError('This app did not answer in time. Try again in a moment.', { cause: err, code: 'upstream_timeout' });
          throw new UpstreamError(`This app is not answering right now (${describe(err)}). Try again in a moment.`, { cause: err, code: 'upstream_unavailable' });
        },
      );
    };
    return (req, res, user, path, origin) => {
      const forTarget = origin ? { ...target, origin } : target;
      manifestGroups ??= this.groupsOf(target);
      let signing: void | Promise<void>;
      let headers: Record<string, string | string[]>;
      try {
        headers = clientHeadersForUpstream(req.headers);
        signing = this.addPortalHeaders(headers, req, forTarget, manifestGroups, user);
      } catch (err) {
        // Refused before anything was sent (a subject no header can carry is a 400): a rejection like any other.
        return Promise.reject(err);
      }
      return signing ? signing.then(() => send(req, res, headers, forTarget, path)) : send(req, res, headers, forTarget, path);
    };
  }

  /** Koa middleware that proxies one app's HTTP requests (the gate has already run): `forwarder` in the pipeline. */
  handler(target: UpstreamTarget, forwarder = this.forwarder(target)): Koa.Middleware {
    return async (ctx) => {
      // Koa writes nothing of its own unless the forwarder fails before the answer begins.
      ctx.respond = false;
      try {
        await forwarder(ctx.req, ctx.res, ctx.state.user as AtriumUser, ctx.path, (ctx.state as { appOrigin?: string }).appOrigin);
      } catch (err) {
        ctx.respond = true;
        throw err;
      }
    };
  }

  /** A client that left mid-request is its own doing: noted, never an error (as the error handler does in-process). */
  private disconnected(req: IncomingMessage, target: UpstreamTarget): void {
    this.log.info({ method: req.method, url: req.url, app: target.prefix }, 'client disconnected');
  }

  /** Proxies a websocket upgrade (the gate has already run). */
  async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: UpstreamTarget, user: AtriumUser, path: string): Promise<void> {
    endClientHop(req.headers, true);
    try {
      const headers = req.headers;
      for (const name of Object.keys(headers)) if (clientMayNotSend(name)) delete headers[name];
      if (headers.cookie !== undefined) {
        const kept = withoutPortalCookies(headers.cookie);
        if (kept === undefined) delete headers.cookie;
        else headers.cookie = kept;
      }
      const signing = this.addPortalHeaders(headers as Record<string, string | string[]>, req, target, this.groupsOf(target), user);
      if (signing) await signing;
      this.appOf.set(req, target.prefix);
      req.url = UpstreamProxy.upstreamPath(req.url ?? '/', target, path);
    } catch (err) {
      // Refused as over HTTP (a subject no header can carry is a 400), not left to end as a 500.
      if (!(err instanceof AtriumError)) throw err;
      return refuseUpgrade(socket, err.status, STATUS_CODES[err.status] ?? 'Error', JSON.stringify(errorJson(err)));
    }
    this.proxy.ws(req, socket, head, { target: target.upstream.href }, (err) => {
      this.log.warn({ err, app: target.prefix }, 'websocket proxy failed');
      refuseUpgrade(socket, 502, 'Bad Gateway');
    });
  }

  close(): Promise<void> {
    this.proxy.close();
    return this.pools.close();
  }
}

/**
 * Writing the upstream's Set-Cookie would replace any the portal put on the response first (a
 * session signature re-signed under a newer key): those are kept, ahead of the app's.
 */
function keepPortalSetCookie(res: ServerResponse, upstream: IncomingHttpHeaders): void {
  const app = upstream['set-cookie'];
  if (app === undefined || !res.hasHeader('set-cookie')) return;
  const own = res.getHeader('set-cookie');
  upstream['set-cookie'] = [...(Array.isArray(own) ? own : [String(own)]), ...app];
}

/** Whether the request has a body to stream on (a GET may have one too; then it goes as well). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** The upstream took longer than UPSTREAM_TIMEOUT to answer (undici's headers timeout), or a websocket's handshake did. */
function isTimeout(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === TIMED_OUT;
}

function describe(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : 'no answer';
}

/** Answers an upgrade with a plain HTTP error and closes the socket (rendered in portal/http/errors.ts). */
export const refuseUpgrade = refuseRawUpgrade;
