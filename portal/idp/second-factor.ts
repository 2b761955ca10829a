import { bodyParser } from '@koa/bodyparser';
import type Router from '@koa/router';
import type Provider from 'oidc-provider';
import QRCode from 'qrcode';
import { ACR_PASSWORD, ACR_SECOND_FACTOR, asksForSecondFactor as asksAcr } from '../../lib/factors/assurance.ts';
import type { FactorDirectory, FactorOwner } from '../../lib/factors/factor-directory.ts';
import { looksLikeRecoveryCode } from '../../lib/factors/recovery-codes.ts';
import { newTotpSecret, totpUri } from '../../lib/factors/totp.ts';
import type { UserDirectory } from '../../lib/directory/users.ts';
import { AtriumError, BadRequestError } from '../../lib/errors.ts';
import type { Context } from 'koa';
import type { Views } from '../http/views.ts';
import { secondStepAllowance, type LoginThrottle } from './login-throttle.ts';
import { waitInWords } from './wait-in-words.ts';
import { EMBEDDED_PREFIX } from './provider.ts';
import { passkeySignIn, type PasskeyRelyingParty } from './passkey-sign-in.ts';

/** How long after the password the second step may come. */
const PASSWORD_STEP_TTL_MS = 10 * 60 * 1000;

/**
 * What the interaction remembers between the password and the second factor, in the provider's
 * own interaction record (server-side, bound to the browser's interaction cookie).
 */
export interface PendingSignIn {
  accountId: string;
  /** When the password was checked (or the provider session proved it). */
  passwordAt: number;
  /** 'verify': the account has a factor; 'enrol': it must set one up before it gets a session. */
  step: 'verify' | 'enrol';
  /** Why enrolment is asked: a group that requires it, or an app that needs it. */
  because?: string;
  /** The authenticator-app secret being set up (enrol step only; never leaves this record but on the QR page). */
  secret?: string;
  /** Recovery codes were shown after enrolment; the next step finishes the sign-in. */
  enrolled?: boolean;
  /** A passkey challenge issued for this sign-in. */
  challenge?: string;
}

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

export function pendingOf(details: Details): PendingSignIn | undefined {
  const pending = (details.result as { atrium?: PendingSignIn } | undefined)?.atrium;
  if (!pending || typeof pending.accountId !== 'string' || typeof pending.passwordAt !== 'number') return undefined;
  return Date.now() - pending.passwordAt <= PASSWORD_STEP_TTL_MS ? pending : undefined;
}

/** Whether the sign-in request asks for a second factor (an app that needs one sent it). */
export function asksForSecondFactor(details: Details): boolean {
  return asksAcr(details.params.acr_values);
}

export interface SecondFactorDeps {
  provider: Provider;
  users: UserDirectory;
  factors: FactorDirectory;
  views: Views;
  throttle: LoginThrottle;
  passkeys: PasskeyRelyingParty;
}

/**
 * The second step of the embedded provider's sign-in: a code from an authenticator app, a recovery
 * code or a passkey after the password, for accounts that have a factor; enrolment of an
 * authenticator app for accounts that must have one and have none. The tokens then say what was
 * used: `amr` ["pwd"], ["pwd","otp"] or ["pwd","hwk"], and `acr` accordingly.
 */
export function secondFactorSteps(router: Router, deps: SecondFactorDeps) {
  const { provider, users, factors, views, throttle } = deps;
  const form = bodyParser({ enableTypes: ['form'], formLimit: '8kb' });
  const base = (uid: string) => `${EMBEDDED_PREFIX}/interaction/${uid}`;

  const owner = async (accountId: string): Promise<FactorOwner & { disabled: boolean }> => {
    const user = await users.bySub(accountId);
    if (!user) throw new BadRequestError('This sign-in page has expired. Go back to the app and sign in again.', { code: 'interaction_expired' });
    return { id: user.id, email: user.email, sub: user.sub, disabled: user.disabled };
  };

  const remember = (ctx: Context, pending: PendingSignIn) =>
    provider.interactionResult(ctx.req, ctx.res, { atrium: pending }, { mergeWithLastSubmission: false });

  const finish = async (ctx: Context, who: FactorOwner, amr: string[], method: string) => {
    const second = amr.length > 1;
    // A password-only sign-in is in the log already (session.sign_in, written by the portal).
    if (second) await factors.audit(who, 'session.second_factor', { method });
    return provider.interactionResult(ctx.req, ctx.res, { login: { accountId: who.sub, amr, acr: second ? ACR_SECOND_FACTOR : ACR_PASSWORD } }, { mergeWithLastSubmission: false });
  };

  const renderVerify = async (ctx: Context, uid: string, who: FactorOwner, error?: string) => {
    const passkeys = (await factors.passkeysOf(who.id)).length > 0;
    const totp = (await factors.list(who.id)).some((f) => f.kind === 'totp');
    ctx.type = 'html';
    ctx.body = views.render('idp-factor.njk', {
      title: 'Second step',
      action: `${base(uid)}/factor`,
      passkeyOptions: passkeys ? `${base(uid)}/passkey/options` : undefined,
      passkeyAction: `${base(uid)}/passkey`,
      totp,
      email: who.email,
      error,
      abort: `${base(uid)}/abort`,
    });
  };

  const renderEnrol = async (ctx: Context, uid: string, who: FactorOwner, pending: PendingSignIn, error?: string) => {
    const uri = totpUri(pending.secret as string, who.email ?? who.sub);
    ctx.type = 'html';
    ctx.body = views.render('idp-enrol.njk', {
      title: 'Set up a second factor',
      action: `${base(uid)}/enrol`,
      qr: await QRCode.toString(uri, { type: 'svg', margin: 1 }),
      secret: pending.secret,
      because: pending.because,
      error,
      abort: `${base(uid)}/abort`,
    });
  };

  /**
   * After a correct password (or, for an app that asks for a second factor, the provider session of
   * this browser): finishes the sign-in, or asks for the second step. Returns the provider's
   * redirect when the sign-in is done, else renders the page.
   */
  async function afterPassword(ctx: Context, details: Details, account: FactorOwner): Promise<string | undefined> {
    const uid = details.uid;
    const passwordAt = Date.now();
    if (await factors.hasFactor(account.id)) {
      await remember(ctx, { accountId: account.sub, passwordAt, step: 'verify' });
      await renderVerify(ctx, uid, account);
      return undefined;
    }
    const group = await factors.requiredFor(account.id);
    if (group || asksForSecondFactor(details)) {
      const pending: PendingSignIn = { accountId: account.sub, passwordAt, step: 'enrol', because: group ? `Members of ${group} sign in with a second factor.` : 'The app you are opening needs a sign-in with a second factor.', secret: newTotpSecret() };
      await remember(ctx, pending);
      await renderEnrol(ctx, uid, account, pending);
      return undefined;
    }
    return finish(ctx, account, ['pwd'], 'pwd');
  }

  /** The pending sign-in of this interaction, or a clear 400 when there is none (or it is too old). */
  const pendingFor = async (ctx: Context, step: PendingSignIn['step']) => {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid || details.prompt.name !== 'login') throw new BadRequestError('Unknown sign-in request.');
    const pending = pendingOf(details);
    if (!pending || pending.step !== step) throw new AtriumError(400, 'interaction_expired', 'This sign-in step has expired. Go back to the app and sign in again.');
    const who = await owner(pending.accountId);
    if (who.disabled) throw new AtriumError(403, 'account_disabled', 'This account is disabled.');
    return { details, pending, who };
  };

  router.post('/:uid/factor', form, async (ctx) => {
    const { details, who } = await pendingFor(ctx, 'verify');
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const code = typeof body.code === 'string' ? body.code.trim().slice(0, 64) : '';
    // Counted by the login throttle: guessing codes is guessing all the same.
    const allowance = secondStepAllowance(who.sub);
    const wait = await throttle.attempt(ctx.ip, allowance);
    const refuse = async (status: number, message: string) => {
      ctx.status = status;
      await renderVerify(ctx, details.uid, who, message);
    };
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      return refuse(429, `Too many failed attempts. Try again in ${waitInWords(wait)}.`);
    }
    let method: 'otp' | 'recovery' | undefined;
    if (looksLikeRecoveryCode(code)) {
      if (await factors.useRecoveryCode(who.id, code)) method = 'recovery';
    } else {
      const check = await factors.checkTotp(who.id, code);
      if (check === 'reused') {
        await factors.audit(who, 'session.second_factor_refused', { reason: 'code reused' });
        return refuse(401, 'That code was used already. Wait for the next code from your app and type that one.');
      }
      if (check === 'accepted') method = 'otp';
    }
    if (!method) {
      await factors.audit(who, 'session.second_factor_refused', { reason: 'wrong or expired code' });
      return refuse(401, 'That code is wrong or has expired. Type the six digits your app shows now, or a recovery code.');
    }
    await throttle.succeeded(ctx.ip, allowance);
    const redirectTo = await finish(ctx, who, ['pwd', 'otp'], method);
    ctx.status = 303;
    ctx.redirect(redirectTo);
  });

  router.post('/:uid/enrol', form, async (ctx) => {
    const { details, pending, who } = await pendingFor(ctx, 'enrol');
    if (pending.enrolled) {
      const redirectTo = await finish(ctx, who, ['pwd', 'otp'], 'otp-enrolled');
      ctx.status = 303;
      ctx.redirect(redirectTo);
      return;
    }
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const code = typeof body.code === 'string' ? body.code.trim().slice(0, 64) : '';
    const allowance = secondStepAllowance(who.sub);
    const wait = await throttle.attempt(ctx.ip, allowance);
    if (wait > 0) {
      ctx.status = 429;
      ctx.set('Retry-After', String(wait));
      return renderEnrol(ctx, details.uid, who, pending, `Too many failed attempts. Try again in ${waitInWords(wait)}.`);
    }
    let recoveryCodes: string[];
    try {
      ({ recoveryCodes } = await factors.enrolTotp(who.email ?? who.sub, who, { secret: pending.secret as string, code, label: 'Authenticator app' }));
    } catch (err) {
      if (!(err instanceof AtriumError) || err.status >= 500) throw err;
      ctx.status = err.status;
      return renderEnrol(ctx, details.uid, who, pending, err.message);
    }
    await throttle.succeeded(ctx.ip, allowance);
    await remember(ctx, { ...pending, secret: undefined, enrolled: true });
    ctx.type = 'html';
    ctx.body = views.render('idp-recovery-codes.njk', { title: 'Your recovery codes', codes: recoveryCodes, action: `${base(details.uid)}/enrol` });
  });

  passkeySignIn(router, { ...deps, pendingFor: (ctx) => pendingFor(ctx, 'verify'), remember, finish });

  return { afterPassword };
}
