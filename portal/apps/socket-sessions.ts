import type { Duplex } from 'node:stream';
import type { Socket } from 'socket.io';
import { decide, type GatedApp } from '../../lib/gate.ts';
import type { Logger } from '../../lib/log.ts';
import type { SessionIdentity, SessionReader } from '../sessions/reader.ts';

/** What a socket.io socket keeps of the session it was admitted with (socket.data). */
export interface AdmittedSocketData extends Partial<SessionIdentity> {}

/** One session's open connections: socket.io sockets and proxied websockets, each with its app. */
interface SessionConnections {
  sockets: Map<Socket, GatedApp>;
  tunnels: Map<Duplex, GatedApp>;
  /** Re-reads the session when it would end by itself (lifetime, idle), unless an event came first. */
  deadline?: NodeJS.Timeout;
}

/** setTimeout's longest delay; a session further from its end is looked at again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** A deadline is checked a moment after it passes, so the session is surely over when read. */
const PAST_DEADLINE_MS = 50;

/**
 * The open sockets and proxied websockets of each session, held to the rules the HTTP gate applies,
 * without polling: each connection is re-checked when something it depends on changes.
 *
 * - a session ended (logout, revocation, here or on another instance): its connections close at once;
 * - a session changed (a token refresh that changed the level, a touch that moved the idle limit,
 *   here or on another instance): that session is read again and its connections re-checked;
 * - the directory changed (groups, demotions, disabling, and revocations made by the CLI, which
 *   bump the directory's revision): every session with connections is read once and re-checked;
 * - a session reaches its idle or lifetime limit: a timer per session (not per socket) reads it then.
 *
 * The cost is per event and per session with connections, never per message or per socket per second.
 */
export class SessionSockets {
  private readonly bySession = new Map<string, SessionConnections>();

  constructor(
    private readonly reader: SessionReader,
    private readonly log: Logger,
  ) {}

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
    if (first && session) this.schedule(sessionId, entry, this.reader.deadlineOf(session));
    socket.once('disconnect', () => {
      entry.sockets.delete(socket);
      this.dropIfEmpty(sessionId, entry);
    });
  }

  /** A proxied websocket opened for `app`; forgotten when it closes. */
  addTunnel(socket: Duplex, sessionId: string, app: GatedApp): void {
    const { entry, first } = this.entry(sessionId);
    entry.tunnels.set(socket, app);
    // The upgrade's session is not kept with the tunnel: read at once, which sets the deadline.
    if (first) this.schedule(sessionId, entry, 0);
    socket.once('close', () => {
      entry.tunnels.delete(socket);
      this.dropIfEmpty(sessionId, entry);
    });
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

  private async recheck(id: string, entry: SessionConnections, identity: SessionIdentity | undefined): Promise<void> {
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
    this.schedule(id, entry, this.reader.deadlineOf(identity.session));
  }

  private schedule(id: string, entry: SessionConnections, deadline: number): void {
    clearTimeout(entry.deadline);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, deadline - Date.now()) + PAST_DEADLINE_MS);
    entry.deadline = setTimeout(() => {
      this.reader.readById(id).then(
        (identity) => this.recheck(id, entry, identity),
        (err: unknown) => this.log.warn({ err }, 'socket re-check failed'),
      );
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
