import type { Duplex } from 'node:stream';
import type { Socket } from 'socket.io';
import { decide, type GatedApp } from '../../lib/gate.ts';
import type { Logger } from '../../lib/log.ts';
import { tokenRefreshAt, tokenRefreshDue } from '../../lib/sessions/lifetime.ts';
import type { SessionIdentity, SessionReader } from '../sessions/reader.ts';

/** What a socket.io socket keeps of the session it was admitted with (socket.data). */
export interface AdmittedSocketData extends Partial<SessionIdentity> {}

/** One session's open connections: socket.io sockets and proxied websockets, each with its app. */
interface SessionConnections {
  sockets: Map<Socket, GatedApp>;
  tunnels: Map<Duplex, GatedApp & { prefix: string }>;
  /** Re-reads the session when it would end by itself (lifetime, idle), unless an event came first. */
  deadline?: NodeJS.Timeout;
}

/** setTimeout's longest delay; a session further from its end is looked at again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A deadline is checked a moment after it passes, so the session is surely over when read. */
const PAST_DEADLINE_MS = 50;
/** A token refresh that could not be done (the provider is away), or a read the store did not answer, is tried again after this long. */
const REFRESH_RETRY_MS = 30_000;

/** Refreshes a session's tokens if due (sessionKeeper without the touch); false when that ended it. */
export type TokenKeeper = (identity: SessionIdentity) => Promise<boolean>;

/**
 * The open sockets and proxied websockets of each session, held to the rules the HTTP gate applies,
 * without polling: each connection is re-checked when something it depends on changes.
 *
 * - a session ended (logout, revocation, here or on another instance): its connections close at once;
 * - a session changed (a token refresh that changed the level, a touch that moved the idle limit,
 *   here or on another instance): that session is read again and its connections re-checked;
 * - the directory changed (groups, demotions, disabling, and revocations made by the CLI, which
 *   bump the directory's revision): every session with connections is read once and re-checked;
 * - a session reaches its idle or lifetime limit: a timer per session (not per socket) reads it then;
 * - a session's access token is due for a refresh and nothing else refreshes it (a client that only
 *   holds a socket makes no HTTP requests): the same timer refreshes it (with keepTokensWith), so a
 *   level or a provider group taken away at the provider reaches the socket at that refresh.
 *
 * The cost is per event and per session with connections, never per message or per socket per second.
 */
export class SessionSockets {
  private readonly bySession = new Map<string, SessionConnections>();
  private keepTokens: TokenKeeper | undefined;

  constructor(
    private readonly reader: SessionReader,
    private readonly log: Logger,
  ) {}

  /** How sessions with connections get their tokens refreshed when due (see TokenKeeper). */
  keepTokensWith(keeper: TokenKeeper): void {
    this.keepTokens = keeper;
  }

  /** A socket.io socket admitted for `app`; forgotten when it disconnects. */
  addSocket(socket: Socket, app: GatedApp): void {
    const sessionId = (socket.data as AdmittedSocketData).sessionId;
    if (!sessionId) {
      socket.disconnect(true);
      return;
    }
    const { entry, first } = this.entry(sessionId);
    entry.sockets.set(socket, app);
    const session = (socket.data as AdmittedSocketData).session;
    if (first && session) this.schedule(sessionId, entry, this.nextCheck(session));
    socket.once('disconnect', () => {
      entry.sockets.delete(socket);
      this.dropIfEmpty(sessionId, entry);
    });
  }

  /** A proxied websocket opened for `app`; forgotten when it closes. */
  addTunnel(socket: Duplex, sessionId: string, app: GatedApp & { prefix: string }): void {
    const { entry, first } = this.entry(sessionId);
    entry.tunnels.set(socket, app);
    // The upgrade's session is not kept with the tunnel: read at once, which sets the deadline.
    if (first) this.schedule(sessionId, entry, 0);
    socket.once('close', () => {
      entry.tunnels.delete(socket);
      this.dropIfEmpty(sessionId, entry);
    });
  }

  /**
   * Closes every proxied websocket to an app that is being replaced or removed: each was admitted
   * under the app's old manifest (tier, groups, mfa), as socket.io sockets are, whose namespace goes.
   */
  endApp(prefix: string): void {
    for (const entry of this.bySession.values()) {
      for (const [tunnel, app] of entry.tunnels) if (app.prefix === prefix) tunnel.destroy();
    }
  }

  /** Closes every connection of these sessions. */
  end(ids: Iterable<string>): void {
    for (const id of ids) {
      const entry = this.bySession.get(id);
      if (entry) this.close(id, entry);
    }
  }

  /** Reads these sessions again (those with connections) and re-checks their connections. */
  async changed(ids: Iterable<string>): Promise<void> {
    for (const id of ids) {
      const entry = this.bySession.get(id);
      if (entry) await this.recheck(id, entry, await this.reader.readById(id));
    }
  }

  /**
   * Every session with connections, re-checked: read again from the store, past the cache (`readSessions`), or
   * with the directory as it is now on the session already held (cheaper; enough for group changes).
   */
  async recheckAll(readSessions: boolean): Promise<void> {
    for (const [id, entry] of [...this.bySession]) {
      if (readSessions) {
        await this.recheck(id, entry, await this.reader.readById(id, { fresh: true }));
        continue;
      }
      const session = heldSession(entry);
      // Only tunnels: nothing held to re-check with, so the session is read.
      if (!session) {
        await this.recheck(id, entry, await this.reader.readById(id));
        continue;
      }
      const user = this.reader.userOf(session);
      await this.recheck(id, entry, user && { sessionId: id, session, user });
    }
  }

  /** Every proxied websocket open now (a graceful stop says goodbye to each). */
  tunnels(): Duplex[] {
    const all: Duplex[] = [];
    for (const entry of this.bySession.values()) all.push(...entry.tunnels.keys());
    return all;
  }

  /** How many sessions have connections (for tests and metrics). */
  get sessions(): number {
    return this.bySession.size;
  }

  /** Stops the deadline timers (the portal is stopping). */
  stop(): void {
    for (const entry of this.bySession.values()) clearTimeout(entry.deadline);
  }

  /** The session's entry; `first` when this connection is its first (then its deadline is set). */
  private entry(sessionId: string): { entry: SessionConnections; first: boolean } {
    const held = this.bySession.get(sessionId);
    if (held) return { entry: held, first: false };
    const entry: SessionConnections = { sockets: new Map(), tunnels: new Map() };
    this.bySession.set(sessionId, entry);
    return { entry, first: true };
  }

  /** When a session must be looked at again: its end (idle, lifetime), or its token refresh if sooner. */
  private nextCheck(session: SessionIdentity['session']): number {
    const end = this.reader.deadlineOf(session);
    const refresh = this.keepTokens ? tokenRefreshAt(session.tokens) : undefined;
    return refresh === undefined ? end : Math.min(end, refresh);
  }

  /** The timer's work: the session read again, its tokens refreshed if due, its connections re-checked. */
  private async due(id: string, entry: SessionConnections): Promise<void> {
    let identity = await this.reader.readById(id);
    let retryAt: number | undefined;
    if (identity && this.keepTokens && tokenRefreshDue(identity.session.tokens)) {
      try {
        identity = (await this.keepTokens(identity)) ? await this.reader.readById(id) : undefined;
      } catch (err) {
        // The provider cannot be reached past the session's grace: HTTP requests get a 502 meanwhile;
        // the sockets stay with what they had and the refresh is tried again.
        this.log.warn({ err }, 'token refresh for open sockets failed');
      }
      // Still due (the provider is away, within the grace): again in a while, not at once.
      if (identity && tokenRefreshDue(identity.session.tokens)) retryAt = Date.now() + REFRESH_RETRY_MS;
    }
    await this.recheck(id, entry, identity, retryAt);
  }

  private async recheck(id: string, entry: SessionConnections, identity: SessionIdentity | undefined, retryAt?: number): Promise<void> {
    if (this.bySession.get(id) !== entry) return;
    if (!identity) {
      this.close(id, entry);
      return;
    }
    for (const [socket, app] of entry.sockets) {
      if (!decide(identity.user, app).allowed) {
        socket.disconnect(true);
        continue;
      }
      const data = socket.data as AdmittedSocketData;
      data.user = identity.user;
      data.session = identity.session;
    }
    for (const [tunnel, app] of entry.tunnels) if (!decide(identity.user, app).allowed) tunnel.destroy();
    // A refresh to try again: at retryAt, unless the session ends first.
    this.schedule(id, entry, retryAt === undefined ? this.nextCheck(identity.session) : Math.min(this.reader.deadlineOf(identity.session), retryAt));
  }

  private schedule(id: string, entry: SessionConnections, deadline: number): void {
    clearTimeout(entry.deadline);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now()) + PAST_DEADLINE_MS);
    entry.deadline = setTimeout(() => {
      this.due(id, entry).catch((err: unknown) => {
        // The store did not answer (an outage): the session is looked at again later, not forgotten.
        this.log.warn({ err }, 'socket re-check failed');
        if (this.bySession.get(id) === entry) this.schedule(id, entry, Date.now() + REFRESH_RETRY_MS);
      });
    }, delay);
    entry.deadline.unref();
  }

  private close(id: string, entry: SessionConnections): void {
    clearTimeout(entry.deadline);
    this.bySession.delete(id);
    for (const socket of entry.sockets.keys()) socket.disconnect(true);
    for (const tunnel of entry.tunnels.keys()) tunnel.destroy();
  }

  private dropIfEmpty(id: string, entry: SessionConnections): void {
    if (entry.sockets.size > 0 || entry.tunnels.size > 0 || this.bySession.get(id) !== entry) return;
    clearTimeout(entry.deadline);
    this.bySession.delete(id);
  }
}

/** The session one of the entry's sockets was admitted with (tunnels keep none: they are read). */
function heldSession(entry: SessionConnections): SessionIdentity['session'] | undefined {
  for (const socket of entry.sockets.keys()) {
    const session = (socket.data as AdmittedSocketData).session;
    if (session) return session;
  }
  return undefined;
}
