import { bodyParser } from '@koa/bodyparser';
import type Router from '@koa/router';
import type Provider from 'oidc-provider';
import type { FactorDirectory, FactorOwner } from '../../lib/factors/factor-directory.ts';
import { authenticationOptions, verifyAuthentication, type PasskeyRelyingParty } from '../../lib/factors/passkeys.ts';
import { AtriumError } from '../../lib/errors.ts';
import type { Context } from 'koa';
import { secondStepAllowance, type LoginThrottle } from './login-throttle.ts';
import type { PendingSignIn } from './second-factor.ts';

export type { PasskeyRelyingParty };

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

/**
 * A passkey as the second step of the embedded provider's sign-in: the page fetches options (a
 * challenge kept in the interaction record), the browser signs it, the assertion is posted as JSON
 * and verified against the account's own passkeys. Failures are counted like wrong codes.
 */
export function passkeySignIn(
  router: Router,
  deps: {
    factors: FactorDirectory;
    throttle: LoginThrottle;
    passkeys: PasskeyRelyingParty;
    pendingFor: (ctx: Context) => Promise<{ details: Details; pending: PendingSignIn; who: FactorOwner }>;
    remember: (ctx: Context, pending: PendingSignIn) => Promise<string>;
    finish: (ctx: Context, who: FactorOwner, amr: string[], method: string) => Promise<string>;
  },
): void {
  const { factors, throttle, passkeys: rp } = deps;
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '16kb' });

  router.post('/:uid/passkey/options', async (ctx) => {
    const { pending, who } = await deps.pendingFor(ctx);
    const mine = await factors.passkeysOf(who.id);
    if (mine.length === 0) throw new AtriumError(400, 'no_passkey', 'This account has no passkey.');
    const options = await authenticationOptions(rp, mine);
    await deps.remember(ctx, { ...pending, challenge: options.challenge });
    ctx.body = options;
  });

  router.post('/:uid/passkey', json, async (ctx) => {
    const { pending, who } = await deps.pendingFor(ctx);
    const allowance = secondStepAllowance(who.sub);
    const wait = await throttle.attempt(ctx.ip, allowance);
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      throw new AtriumError(429, 'too_many_attempts', 'Too many failed attempts. Try again later.');
    }
    if (!pending.challenge) throw new AtriumError(400, 'passkey_refused', 'Ask for a passkey challenge first.');
    // A challenge is good for one answer, right or wrong.
    await deps.remember(ctx, { ...pending, challenge: undefined });
    let verified: Awaited<ReturnType<typeof verifyAuthentication>>;
    try {
      verified = await verifyAuthentication(rp, ctx.request.body, pending.challenge, await factors.passkeysOf(who.id));
    } catch (err) {
      await factors.audit(who, 'session.second_factor_refused', { reason: 'passkey assertion refused' });
      throw err;
    }
    await factors.passkeyUsed(verified.passkey.id, verified.counter);
    await throttle.succeeded(ctx.ip, allowance);
    ctx.body = { redirectTo: await deps.finish(ctx, who, ['pwd', 'hwk'], 'passkey') };
  });
}
