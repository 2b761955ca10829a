import { Redis, type RedisOptions } from 'ioredis';

/** A command Redis has not answered in this long has failed (Redis answers in well under a millisecond). */
export const COMMAND_TIMEOUT_MS = 500;
const CONNECT_TIMEOUT_MS = 2_000;
const MAX_RECONNECT_DELAY_MS = 2_000;

/**
 * Reconnecting after a lost connection: 100 ms, doubling up to 2 s, with jitter so that several
 * instances do not all knock at the same moment when Redis comes back. It never gives up.
 */
export function reconnectDelay(attempt: number): number {
  const base = Math.min(MAX_RECONNECT_DELAY_MS, 100 * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/**
 * The client requests use (sessions, login limits, publishing). It fails fast while Redis is away
 * — no offline queue, nothing retried, a command timeout for a server that accepts and never
 * answers — so a request learns at once and its caller can fall back (last good session, local
 * limits) instead of waiting seconds for a 500.
 */
export function commandClient(url: string): Redis {
  const options: RedisOptions = {
    lazyConnect: true,
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    // With no offline queue, this only says: commands in flight when the connection drops fail then.
    maxRetriesPerRequest: 0,
    commandTimeout: COMMAND_TIMEOUT_MS,
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: reconnectDelay,
  };
  return new Redis(url, options);
}

/**
 * A subscriber (session events, the socket.io adapter). Nobody waits on it, so its commands queue
 * while Redis is away and go out once it is back, and ioredis subscribes again to every channel
 * on reconnection: broadcasts between instances flow again by themselves.
 */
export function subscriberClient(url: string): Redis {
  return new Redis(url, { lazyConnect: true, maxRetriesPerRequest: null, connectTimeout: CONNECT_TIMEOUT_MS, retryStrategy: reconnectDelay });
}

/**
 * The client the socket.io adapter publishes with. The adapter never awaits publish() (a broadcast
 * is fire-and-forget), so with Redis away each one would be an unhandled rejection; here a failed
 * publish settles quietly. The sockets of this instance still get the broadcast; those of other
 * instances miss what was sent while Redis was away, as they would any message on a dead line.
 */
export function quietPublisher(redis: Redis): Redis {
  return new Proxy(redis, {
    get(target, property) {
      if (property === 'publish') return (...args: Parameters<Redis['publish']>) => target.publish(...args).catch(() => 0);
      const value: unknown = Reflect.get(target, property, target);
      // Methods run on the real client (its state lives there); `constructor` stays as it is (the adapter reads its name).
      return typeof value === 'function' && property !== 'constructor' ? value.bind(target) : value;
    },
  });
}

/**
 * Ends a client without waiting on Redis: QUIT when connected (in-flight replies arrive first),
 * else at once. A client left reconnecting would keep the process alive, and a QUIT queued behind
 * a subscriber's offline commands would never be answered.
 */
export async function closeClient(client: Redis): Promise<void> {
  if (client.status !== 'ready') return client.disconnect();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, CONNECT_TIMEOUT_MS)));
  await Promise.race([client.quit().catch(() => undefined), late]);
  clearTimeout(timer);
  client.disconnect();
}
