import { RateLimiterMemory, RateLimiterRedis, type RateLimiterAbstract, type RateLimiterRes } from 'rate-limiter-flexible';
import type { Redis } from 'ioredis';

/**
 * The throttle allowance second steps count against: the login throttle's, under a key of its own.
 * Not the password's: a correct password clears that one, and whoever knows the password could
 * then guess codes ten at a time for ever. This one clears only when a second step succeeds.
 */
export function secondStepAllowance(sub: string): string {
  return `second-factor:${sub}`;
}

const WINDOW_S = 15 * 60;
const PER_ACCOUNT = 10;
const PER_ADDRESS = 50;

/**
 * Slows password guessing at the embedded provider's sign-in form (rate-limiter-flexible): at most
 * 10 failed attempts per account and 50 per client address in 15 minutes, then 429 until the window
 * passes. A successful sign-in clears the account's count. (Anyone can use up an account's allowance
 * and so lock it for 15 minutes: the price of slowing guessing without CAPTCHAs.) With Redis the counts are shared by
 * every instance; while Redis is away each instance counts on its own.
 */
export class LoginThrottle {
  private readonly byAccount: RateLimiterAbstract;
  private readonly byAddress: RateLimiterAbstract;

  constructor(redis?: Redis) {
    const make = (keyPrefix: string, points: number) => {
      const local = new RateLimiterMemory({ keyPrefix, points, duration: WINDOW_S });
      // While Redis is away the counts are this instance's own (the insurance limiter), not an error:
      // guessing stays slowed, and sign-in does not fail on the throttle.
      return redis
        ? new RateLimiterRedis({ storeClient: redis, keyPrefix: `atrium:${keyPrefix}`, points, duration: WINDOW_S, insuranceLimiter: local, rejectIfRedisNotReady: true })
        : local;
    };
    this.byAccount = make('login-account', PER_ACCOUNT);
    this.byAddress = make('login-address', PER_ADDRESS);
  }

  /**
   * Takes one attempt from both allowances before the password is checked, so parallel guesses
   * cannot all slip past a check that only counts failures afterwards. Returns the seconds to wait
   * when either allowance is used up, else 0. `account` names the allowance as the caller decided
   * (the account an address matched, or the canonical address when none): used as given, since
   * folding it here could only merge or split what the directory's exact look-up decided.
   */
  async attempt(address: string, account: string): Promise<number> {
    const results = await Promise.allSettled([this.byAccount.consume(account), this.byAddress.consume(address)]);
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    const broken = refused.find((r) => r instanceof Error);
    if (broken) throw broken;
    return refused.length === 0 ? 0 : Math.ceil(Math.max(...(refused as RateLimiterRes[]).map((r) => r.msBeforeNext)) / 1000);
  }

  /** A correct password gives back what the attempt took. */
  async succeeded(address: string, account: string): Promise<void> {
    await Promise.all([this.byAccount.delete(account), this.byAddress.reward(address, 1)]);
  }
}
