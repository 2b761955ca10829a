import { randomUUID } from 'node:crypto';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Redis } from 'ioredis';
import type { Logger } from '../../lib/log.ts';
import type { CachedSessionStore, SessionEvent } from '../../lib/sessions/cached-store.ts';
import { OutageGraceStore } from '../../lib/sessions/outage-grace.ts';
import { RedisSessionStore } from '../../lib/sessions/redis-store.ts';
import type { SessionStore } from '../../lib/sessions/store.ts';
import { closeClient, commandClient, quietPublisher, subscriberClient } from './redis-clients.ts';

const CHANNEL = 'atrium:sessions';

/**
 * What several portal instances share through Redis (REDIS_URL): the session store itself, the
 * socket.io adapter (a broadcast reaches sockets on every instance), and session events, so a
 * logout or revocation on one instance drops the cached session and disconnects the sockets on all
 * of them at once.
 *
 * Redis may go away: requests never wait for it (redis-clients.ts), signed-in users carry on from
 * their last good sessions for a while (OutageGraceStore), and everything resumes by itself when it
 * is back — subscriptions, broadcasts, and the session writes kept meanwhile.
 */
export class Cluster {
  readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly adapterSub: Redis;
  private readonly instance = randomUUID();
  /** Clients that reported an error since they were last ready: one warning per client and outage. */
  private readonly failing = new Set<string>();

  constructor(url: string, private readonly log: Logger) {
    this.redis = commandClient(url);
    this.subscriber = subscriberClient(url);
    this.adapterSub = subscriberClient(url);
    const clients = { commands: this.redis, 'session events': this.subscriber, 'socket.io': this.adapterSub };
    for (const [name, client] of Object.entries(clients)) {
      client.on('error', (err: unknown) => {
        if (this.failing.has(name)) return this.log.debug({ err, client: name }, 'redis still unreachable');
        this.failing.add(name);
        this.log.warn({ err, client: name }, 'redis unreachable; retrying');
      });
      client.on('ready', () => {
        if (this.failing.delete(name)) this.log.info({ client: name }, 'redis reachable again');
      });
    }
  }

  async connect(): Promise<void> {
    await Promise.all([this.redis.connect(), this.subscriber.connect(), this.adapterSub.connect()]);
  }

  /**
   * The session store, in Redis, that carries signed-in users through an outage for `graceMs`
   * (SESSION_OUTAGE_GRACE; see OutageGraceStore).
   */
  sessionStore(graceMs: number): SessionStore {
    const store = new OutageGraceStore(new RedisSessionStore(this.redis), this.log, graceMs);
    // Back after an outage: the writes kept meanwhile go to Redis (a no-op at the first connection).
    this.redis.on('ready', () => void store.flushPending());
    return store;
  }

  socketAdapter(): ReturnType<typeof createAdapter> {
    return createAdapter(quietPublisher(this.redis), this.adapterSub, { key: 'atrium:socket.io' });
  }

  /** Relays session events between this instance's cache and the others'. */
  async shareSessions(sessions: CachedSessionStore): Promise<void> {
    sessions.publish = (event: SessionEvent) => {
      // Away: nobody would hear it, and the others' cached copies age out by themselves.
      if (this.redis.status !== 'ready') return;
      this.redis.publish(CHANNEL, JSON.stringify({ from: this.instance, ...event })).catch((err: unknown) => this.log.warn({ err }, 'session event not published'));
    };
    await this.subscriber.subscribe(CHANNEL);
    this.subscriber.on('message', (_channel, message) => {
      try {
        const event = JSON.parse(message) as SessionEvent & { from: string };
        if (event.from === this.instance || !Array.isArray(event.ids)) return;
        sessions.receive({ kind: event.kind === 'ended' ? 'ended' : 'changed', ids: event.ids.filter((id) => typeof id === 'string') });
      } catch {
        // not ours
      }
    });
  }

  /** Readiness: PONG within the command timeout; false at once while the connection is down. */
  async ping(): Promise<boolean> {
    if (this.redis.status !== 'ready') return false;
    try {
      return (await this.redis.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.redis, this.subscriber, this.adapterSub].map(closeClient));
  }
}
