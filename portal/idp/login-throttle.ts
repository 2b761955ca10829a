import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, type RateLimiterRes } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';

const WINDOW_S = 15 * 60;
const PER_ACCOUNT = 10;
const PER_ADDRESS = 50;

/**
 * Slows password guessing at the embedded provider's sign-in form (rate-limiter-flexible): at most
 * 10 failed attempts per account and 50 per client address in 15 minutes, then 429 until the window
 * passes. A successful sign-in clears the account's count. With Redis the counts are shared by
 * every instance.
 */
export class LoginThrottle {
  private readonly byAccount: RateLimiterAbstract;
  private readonly byAddress: RateLimiterAbstract;

  constructor(redis?: Redis) {
    const make = (keyPrefix: string, points: number) =>
      redis
        ? new RateLimiterRedis({ storeClient: redis, keyPrefix: `atrium:${keyPrefix}`, points, duration: WINDOW_S })
        : new RateLimiterMemory({ keyPrefix, points, duration: WINDOW_S });
    this.byAccount = make('login-account', PER_ACCOUNT);
    this.byAddress = make('login-address', PER_ADDRESS);
  }

  /** Seconds to wait before another attempt is allowed, or 0. */
  async retryAfter(address: string, account: string): Promise<number> {
    const [a, b] = await Promise.all([this.byAccount.get(account.toLowerCase()), this.byAddress.get(address)]);
    const blocked = [a && a.consumedPoints >= PER_ACCOUNT ? a : null, b && b.consumedPoints >= PER_ADDRESS ? b : null].filter(Boolean) as RateLimiterRes[];
    return blocked.length === 0 ? 0 : Math.ceil(Math.max(...blocked.map((r) => r.msBeforeNext)) / 1000);
  }

  async failed(address: string, account: string): Promise<void> {
    // Over the limit, consume() rejects: that is the point, not an error.
    await Promise.allSettled([this.byAccount.consume(account.toLowerCase()), this.byAddress.consume(address)]);
  }

  async succeeded(account: string): Promise<void> {
    await this.byAccount.delete(account.toLowerCase());
  }
}
