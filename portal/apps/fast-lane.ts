import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type Koa from 'koa';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { decide } from '../../lib/gate.ts';
import type { PortalContext, PortalMiddleware, PortalState } from '../http/context.ts';
import { HARDENING_HEADERS } from '../http/hardening.ts';
import type { Metrics } from '../http/metrics.ts';
import type { FastSessions } from '../sessions/fast-path.ts';
import type { BearerAuthenticator } from '../sessions/user.ts';
import type { AppTable, MountedApp } from './dispatch.ts';

/** A request the lane took, as the Koa chains below pick it up. */
interface LaneRequest {
  app: MountedApp;
  /** None when the request failed before a user was known (an invalid bearer token, a store outage). */
  user: AtriumUser | undefined;
  userId: number | undefined;
  csrf: string | undefined;
  /** What the request failed with, for the error chain. */
  failure?: unknown;
}

/**
 * A path the lane serves: plain characters only, no empty segment and none starting with a dot.
 * Such a path passes assertSafePath (lib/paths.ts) as it is and reads the same to every parser;
 * anything else (percent-encoding, dot segments, odd bytes) goes the ordinary way, which refuses
 * or serves it as always. (Three linear tests: no pattern here can backtrack.)
 */
const PLAIN_CHARACTERS = /^[A-Za-z0-9_~./-]*$/;
function isPlainPath(path: string): boolean {
  return PLAIN_CHARACTERS.test(path) && !path.includes('//') && !path.includes('/.');
}
const APPS = '/apps/'.length;
/**
 * Where a request carries what the lane found out about it to the Koa chains: a property of its
 * own (a WeakMap holding every request until the next collection made each one cost ~10 µs more,
 * its entries being ephemerons the garbage collector has to trace).
 */
const LANE = Symbol('atrium.fast-lane');
type LaneMessage = IncomingMessage & { [LANE]?: LaneRequest };
const noMore = async () => {};

/**
 * The portal's request listener: Koa's pipeline, with the hot path in front of it. A signed-in
 * request to an app whose session needs nothing done to it — the portal's own host, a plain path
 * (isPlainPath), a mounted app, the session from the cache (FastSessions) or a bearer token, the
 * gate letting it in — is served here: an upstream app's straight by its forwarder, with no Koa
 * context at all; an in-process app's through Koa with only the layers it needs (metrics, errors,
 * hardening, then the app). Everything else, refusals included, goes to `pipeline` untouched and
 * is handled there completely, so the outcome never depends on which way a request went; only
 * the cost does (BENCHMARKS.md).
 *
 * Off with APP_ORIGIN: there the portal's `/apps/` only redirects, and app origins are served by
 * their own host server (app-host.ts).
 */
export function fastLane(
  deps: {
    koa: Koa<PortalState>;
    table: AppTable;
    /** PUBLIC_URL's host as a Host header carries it (`URL.host`: lower case, no default port). */
    publicHost: string;
    /** Koa's `app.proxy`: then X-Forwarded-Host could name another host, and such requests go the ordinary way. */
    trustProxy: boolean;
    sessions: FastSessions;
    /** The session cookie's name (see sessionCookieName). */
    sessionCookie: string;
    /** What the pipeline authenticates `Authorization` with (userMiddleware): the same answer either way. */
    bearer: BearerAuthenticator;
    metrics: Metrics;
    /** The pipeline's first layers, which every answer passes: metrics, the error handler, hardening. */
    head: readonly PortalMiddleware[];
    /** What in-process apps get in ctx.state.atrium. */
    decorate: (ctx: PortalContext) => void;
  },
  pipeline: RequestListener,
): RequestListener {
  const { koa, table, publicHost, trustProxy, sessions, sessionCookie, bearer, metrics } = deps;
  /** The lane's request, handed to a chain's first layer (set just before the chain runs). */
  const pickUp: PortalMiddleware = (ctx, next) => {
    const lane = (ctx.req as LaneMessage)[LANE] as LaneRequest;
    if (lane.user) ctx.state.user = lane.user;
    if (lane.userId !== undefined) ctx.state.userId = lane.userId;
    if (lane.csrf !== undefined) ctx.state.csrf = lane.csrf;
    return next();
  };
  const inProcess = koaCallback(koa, [pickUp, ...deps.head, (ctx) => {
    deps.decorate(ctx);
    // The app's own `next` ends here: no other portal route serves /apps/, so an unanswered request is a 404.
    return ((ctx.req as LaneMessage)[LANE] as LaneRequest).app.handler(ctx, noMore);
  }]);
  // A forwarder that failed before answering: its error answered as the pipeline answers errors.
  const failed = koaCallback(koa, [pickUp, ...deps.head, (ctx) => Promise.reject(((ctx.req as LaneMessage)[LANE] as LaneRequest).failure)]);
  const fail = (req: IncomingMessage, res: ServerResponse, lane: LaneRequest): void => {
    (req as LaneMessage)[LANE] = lane;
    void failed(req, res);
  };

  const serve = (req: IncomingMessage, res: ServerResponse, app: MountedApp, path: string, user: AtriumUser, userId: number | undefined, csrf: string | undefined): void => {
    // Refused (or a sign-in with a second factor needed): the ordinary path says so, in full.
    if (!decide(user, app).allowed) return void pipeline(req, res);
    const forward = app.forward;
    if (!forward) {
      (req as LaneMessage)[LANE] = { app, user, userId, csrf };
      return void inProcess(req, res);
    }
    for (const [name, value] of HARDENING_HEADERS) res.setHeader(name, value);
    const started = metrics.appStarted();
    forward(req, res, user, path).then(
      () => metrics.appAnswered(req, res, started),
      (err: unknown) => fail(req, res, { app, user, userId, csrf, failure: err }),
    );
  };

  /** A failure before any app was reached (a store outage, an invalid token): answered as the pipeline answers errors. */
  const failBefore = (req: IncomingMessage, res: ServerResponse, app: MountedApp, err: unknown): void =>
    fail(req, res, { app, user: undefined, userId: undefined, csrf: undefined, failure: err });

  return (req, res) => {
    const url = req.url;
    if (url === undefined || !url.startsWith('/apps/') || req.headers.host !== publicHost) return pipeline(req, res);
    if (trustProxy && req.headers['x-forwarded-host'] !== undefined) return pipeline(req, res);
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    if (!isPlainPath(path)) return pipeline(req, res);
    // `/apps/<tier>/<name>/…`; without the slash after the name, the ordinary path redirects to it.
    const tierEnd = path.indexOf('/', APPS);
    const nameEnd = tierEnd < 0 ? -1 : path.indexOf('/', tierEnd + 1);
    if (nameEnd < 0) return pipeline(req, res);
    const app = table.get(path.slice(APPS, tierEnd), path.slice(tierEnd + 1, nameEnd));
    if (!app) return pipeline(req, res);

    const authorization = req.headers.authorization;
    const cookie = req.headers.cookie;
    if (authorization) {
      // A session cookie beside the token: the pipeline's session layers still deal with the cookie
      // (a planted copy expired, an ended session cleared, an idle one touched), whoever the token is.
      if (cookie !== undefined && cookie.includes(sessionCookie)) return pipeline(req, res);
      bearer(authorization).then(
        ({ user, userId }) => serve(req, res, app, path, user, userId, undefined),
        (err: unknown) => failBefore(req, res, app, err),
      );
      return;
    }
    const signedIn = sessions.fromCookies(cookie);
    if (signedIn === undefined) return pipeline(req, res);
    if (!(signedIn instanceof Promise)) return serve(req, res, app, path, signedIn.user, signedIn.userId, signedIn.csrf);
    signedIn.then(
      (found) => (found ? serve(req, res, app, path, found.user, found.userId, found.csrf) : void pipeline(req, res)),
      (err: unknown) => failBefore(req, res, app, err),
    );
  };
}

/**
 * Koa's own request handling (the context, its answer, its error events) around a middleware list
 * of the lane's rather than the whole pipeline: `callback()` composes `middleware` when it is
 * called, so the list is swapped in for that call only.
 */
function koaCallback(koa: Koa<PortalState>, middleware: PortalMiddleware[]): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const pipeline = koa.middleware;
  koa.middleware = middleware as typeof pipeline;
  try {
    return koa.callback();
  } finally {
    koa.middleware = pipeline;
  }
}
