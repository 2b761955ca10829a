import { randomUUID } from 'node:crypto';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import type { Logger } from '../../lib/log.ts';
import type { CachedSessionStore, SessionEvent } from '../../lib/sessions/cached-store.ts';

const CHANNEL = 'atrium:sessions';

/**
 * What several portal instances share through Redis (REDIS_URL): the session store itself, the
 * socket.io adapter (a broadcast reaches sockets on every instance), and session events, so a
 * logout or revocation on one instance drops the cached session and disconnects the sockets on all
 * of them at once.
 */
export class Cluster {
  readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly adapterSub: Redis;
  private readonly instance = randomUUID();

  constructor(url: string, private readonly log: Logger) {
    const options = { maxRetriesPerRequest: 3, enableAutoPipelining: true, lazyConnect: true };
    this.redis = new Redis(url, options);
    this.subscriber = new Redis(url, options);
    this.adapterSub = new Redis(url, options);
    for (const client of [this.redis, this.subscriber, this.adapterSub]) client.on('error', (err) => this.log.warn({ err }, 'redis error'));
  }

  async connect(): Promise<void> {
    await Promise.all([this.redis.connect(), this.subscriber.connect(), this.adapterSub.connect()]);
  }

  socketAdapter(): ReturnType<typeof createAdapter> {
    return createAdapter(this.redis, this.adapterSub, { key: 'atrium:socket.io' });
  }

  /** Relays session events between this instance's cache and the others'. */
  async shareSessions(sessions: CachedSessionStore): Promise<void> {
    sessions.publish = (event: SessionEvent) => {
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

  async ping(): Promise<boolean> {
    try {
      return (await this.redis.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.redis.quit(), this.subscriber.quit(), this.adapterSub.quit()].map((p) => p.catch(() => undefined)));
  }
}
