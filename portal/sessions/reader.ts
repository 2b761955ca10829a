import { ServerResponse, type IncomingMessage } from 'node:http';
import type Koa from 'koa';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { sessionEnded, type SessionLimits } from '../../lib/sessions/lifetime.ts';
import type { SessionStore, StoredSession } from '../../lib/sessions/store.ts';
import type { PortalSession } from '../http/context.ts';
import { carriesTwice, SESSION_ID, sessionCookieOf } from './cookie-session.ts';
import { signedInSession, userFromSession, type UserResolver } from './user.ts';

export interface SessionIdentity {
  sessionId: string;
  session: PortalSession;
  user: AtriumUser;
}

/**
 * Reads a session outside Koa's pipeline — socket.io handshakes and websocket upgrades — with
 * exactly the cookie rules koa-session uses (the name it was installed with on this app, the same
 * signing keys, the same expiry check, and no session when the cookie comes twice).
 */
export class SessionReader {
  constructor(
    private readonly app: Koa<any, any>,
    private readonly store: SessionStore,
    private readonly resolver: UserResolver,
    private readonly limits: SessionLimits,
  ) {}

  sessionIdOf(req: IncomingMessage): string | undefined {
    const id = this.signedCookie(req, sessionCookieOf(this.app));
    return id && SESSION_ID.test(id) ? id : undefined;
  }

  /** A signed cookie of a raw request, checked with the portal's keys; none when it comes twice. */
  signedCookie(req: IncomingMessage, name: string): string | undefined {
    const header = req.headers.cookie;
    if (!header || carriesTwice(header, name)) return undefined;
    // A throwaway response: only the request's cookies are read, nothing is ever written to it.
    return this.app.createContext(req, new ServerResponse(req)).cookies.get(name, { signed: true }) || undefined;
  }

  async read(req: IncomingMessage): Promise<SessionIdentity | undefined> {
    const sessionId = this.sessionIdOf(req);
    return sessionId === undefined ? undefined : this.readById(sessionId);
  }

  /** `fresh`: past the cache, to the store (when the store keeps a cache: CachedSessionStore.getFresh). */
  async readById(sessionId: string, options: { fresh?: boolean } = {}): Promise<SessionIdentity | undefined> {
    const store = this.store as SessionStore & { getFresh?(id: string): Promise<StoredSession | undefined> };
    const stored = await (options.fresh && store.getFresh ? store.getFresh(sessionId) : store.get(sessionId));
    const data = stored?.data as (Record<string, unknown> & { _expire?: unknown }) | undefined;
    if (!data || (typeof data._expire === 'number' && data._expire < Date.now())) return undefined;
    const session = signedInSession(data);
    if (!session || sessionEnded(session, this.limits)) return undefined;
    const user = userFromSession(session, this.resolver);
    return user ? { sessionId, session, user } : undefined;
  }

  /**
   * When a session ends by itself unless it is used again: the sooner of its lifetime's end and its
   * idle limit's (the moment after which readById no longer finds it).
   */
  deadlineOf(session: PortalSession): number {
    return Math.min(session.authAt + this.limits.lifetimeMs, (session.seenAt ?? session.authAt) + this.limits.idleMs);
  }

  /** The user a known session stands for now (after a directory change), without a store read. */
  userOf(session: PortalSession): AtriumUser | undefined {
    return userFromSession(session, this.resolver);
  }
}
