import { bodyParser } from '@koa/bodyparser';
import type Router from '@koa/router';
import QRCode from 'qrcode';
import type { DirectoryAdmin } from '../../lib/directory/admin.ts';
import { AtriumError, BadRequestError, UnauthenticatedError } from '../../lib/errors.ts';
import { factorLabel, type FactorDirectory, type FactorOwner } from '../../lib/factors/factor-directory.ts';
import { passkeyRelyingParty, registrationOptions, verifyRegistration } from '../../lib/factors/passkeys.ts';
import { newTotpSecret, totpUri } from '../../lib/factors/totp.ts';
import type { PortalContext, PortalState } from '../http/context.ts';
import { assertCsrf } from '../http/csrf.ts';
import type { Views } from '../http/views.ts';
import { signedInSession } from '../sessions/user.ts';
import { waitInWords } from '../idp/wait-in-words.ts';
import { LoginThrottle } from '../idp/login-throttle.ts';

/** How long a started enrolment (a secret shown as a QR code, a passkey challenge) waits for its answer. */
const ENROLMENT_TTL_MS = 10 * 60 * 1000;

/** What an enrolment in progress keeps in the portal session (server-side): never sent back but on its own page. */
interface PendingEnrolment {
  totp?: { secret: string; at: number };
  passkey?: { challenge: string; at: number };
}

const pendingOf = (ctx: PortalContext): PendingEnrolment => ((ctx.session as unknown as { enrolment?: PendingEnrolment }).enrolment ??= {});

/**
 * The "Sign-in security" part of /profile, for local accounts of the embedded provider: add an
 * authenticator app (QR code, confirmed by a code), add a passkey, remove a factor, get new
 * recovery codes. Recovery codes are shown once, on the page that made them.
 */
export function signInSecurityRoutes(router: Router<PortalState>, deps: { factors: FactorDirectory; admin: DirectoryAdmin; views: Views; publicOrigin: string }): {
  section: (userId: number) => Promise<Record<string, unknown> | undefined>;
} {
  const { factors, admin, views, publicOrigin } = deps;
  const form = bodyParser({ enableTypes: ['form', 'json'], formLimit: '8kb', jsonLimit: '16kb' });
  const rp = passkeyRelyingParty(new URL(publicOrigin));

  /** The signed-in local account: factors belong to the embedded provider's accounts only. */
  const localOwner = async (ctx: PortalContext): Promise<FactorOwner & { csrf: string }> => {
    const session = signedInSession(ctx.session);
    if (!ctx.state.user || !session) throw new UnauthenticatedError();
    const account = await admin.resolveUser(session.uid);
    if (!account.local) throw new AtriumError(400, 'not_local_account', 'Second factors here are for local accounts; your sign-in service manages yours.');
    return { id: account.id, email: account.email, sub: account.sub, csrf: session.csrf };
  };

  const page = (ctx: PortalContext, template: string, data: Record<string, unknown>) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = views.render(template, { user: ctx.state.user, csrf: signedInSession(ctx.session)?.csrf, ...data });
  };

  const actorOf = (who: FactorOwner) => who.email ?? who.sub;

  // Wrong passwords here count like failed sign-ins (this instance's own counts, as on /profile/password).
  const throttle = new LoginThrottle();
  /**
   * Adding a factor or getting new recovery codes asks for the current password: a session alone
   * (a browser left open, a stolen cookie) must not be able to give itself a second factor.
   */
  const confirmPassword = async (ctx: PortalContext, who: FactorOwner, given: unknown) => {
    const allowance = `factor-change:${who.sub}`;
    const wait = await throttle.attempt(ctx.ip, allowance);
    if (wait > 0) {
      ctx.set('Retry-After', String(wait));
      throw new AtriumError(429, 'too_many_attempts', `Too many attempts. Try again in ${waitInWords(wait)}.`);
    }
    const password = typeof given === 'string' ? given.slice(0, 1024) : '';
    if (!(await factors.passwordMatches(who.id, password))) throw new BadRequestError('Your current password is not right.', { code: 'wrong_password' });
    await throttle.succeeded(ctx.ip, allowance);
  };

  router.get('/profile/factors/totp', async (ctx) => {
    const who = await localOwner(ctx);
    const pending = pendingOf(ctx);
    if (!pending.totp || Date.now() - pending.totp.at > ENROLMENT_TTL_MS) pending.totp = { secret: newTotpSecret(), at: Date.now() };
    const qr = await QRCode.toString(totpUri(pending.totp.secret, who.email ?? who.sub), { type: 'svg', margin: 1 });
    page(ctx, 'profile-totp.njk', { title: 'Add an authenticator app', qr, secret: pending.totp.secret });
  });

  router.post('/profile/factors/totp', form, async (ctx) => {
    const who = await localOwner(ctx);
    assertCsrf(ctx, publicOrigin);
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const pending = pendingOf(ctx);
    if (!pending.totp || Date.now() - pending.totp.at > ENROLMENT_TTL_MS) throw new BadRequestError('This set-up has expired. Start again from your profile.', { code: 'enrolment_expired' });
    const label = factorLabel(body.label, 'Authenticator app');
    const code = typeof body.code === 'string' ? body.code.slice(0, 20) : '';
    let recoveryCodes: string[];
    try {
      await confirmPassword(ctx, who, body.current);
      ({ recoveryCodes } = await factors.enrolTotp(actorOf(who), who, { secret: pending.totp.secret, code, label }));
    } catch (err) {
      if (!(err instanceof AtriumError) || err.status >= 500) throw err;
      ctx.status = err.status;
      const qr = await QRCode.toString(totpUri(pending.totp.secret, who.email ?? who.sub), { type: 'svg', margin: 1 });
      return page(ctx, 'profile-totp.njk', { title: 'Add an authenticator app', qr, secret: pending.totp.secret, error: err.message, label });
    }
    pending.totp = undefined;
    page(ctx, 'profile-recovery-codes.njk', { title: 'Your recovery codes', codes: recoveryCodes, added: label });
  });

  router.post('/profile/factors/recovery-codes', form, async (ctx) => {
    const who = await localOwner(ctx);
    assertCsrf(ctx, publicOrigin);
    if (!(await factors.hasFactor(who.id))) throw new BadRequestError('Recovery codes come with a second factor: add one first.', { code: 'no_factor' });
    await confirmPassword(ctx, who, ((ctx.request.body ?? {}) as Record<string, unknown>).current);
    page(ctx, 'profile-recovery-codes.njk', { title: 'Your recovery codes', codes: await factors.regenerateRecoveryCodes(actorOf(who), who), fresh: true });
  });

  router.post('/profile/factors/:id/remove', form, async (ctx) => {
    const who = await localOwner(ctx);
    assertCsrf(ctx, publicOrigin);
    const id = /^\d{1,12}$/.test(ctx.params.id ?? '') ? Number(ctx.params.id) : NaN;
    if (!Number.isSafeInteger(id)) throw new BadRequestError('Unknown factor.', { code: 'bad_factor' });
    // As adding one: an open browser alone must not take a factor away (and the recovery codes with the last).
    await confirmPassword(ctx, who, ((ctx.request.body ?? {}) as Record<string, unknown>).current);
    await factors.remove(actorOf(who), who, id);
    ctx.status = 303;
    ctx.redirect('/profile?factor=removed');
  });

  // Passkeys: JSON both ways, CSRF token in X-CSRF-Token (see passkey.js).
  router.post('/profile/factors/passkey/options', form, async (ctx) => {
    const who = await localOwner(ctx);
    assertCsrf(ctx, publicOrigin);
    await confirmPassword(ctx, who, ((ctx.request.body ?? {}) as Record<string, unknown>).current);
    const options = await registrationOptions(rp, who, await factors.passkeysOf(who.id));
    pendingOf(ctx).passkey = { challenge: options.challenge, at: Date.now() };
    ctx.body = options;
  });

  router.post('/profile/factors/passkey', form, async (ctx) => {
    const who = await localOwner(ctx);
    assertCsrf(ctx, publicOrigin);
    const pending = pendingOf(ctx);
    const challenge = pending.passkey && Date.now() - pending.passkey.at <= ENROLMENT_TTL_MS ? pending.passkey.challenge : undefined;
    // A challenge answers once, right or wrong.
    pending.passkey = undefined;
    if (!challenge) throw new BadRequestError('This set-up has expired. Start again from your profile.', { code: 'enrolment_expired' });
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const label = factorLabel(body.label, 'Passkey');
    const credential = await verifyRegistration(rp, body.credential, challenge);
    const { recoveryCodes } = await factors.addPasskey(actorOf(who), who, { ...credential, label });
    ctx.body = { added: label, recoveryCodes };
  });

  return {
    /** The section's data on /profile (local accounts only). */
    async section(userId: number) {
      const account = await admin.resolveUser(userId).catch(() => undefined);
      if (!account?.local) return undefined;
      const [list, left, required] = await Promise.all([factors.list(userId), factors.recoveryCodesLeft(userId), factors.requiredFor(userId)]);
      return { factors: list, recoveryLeft: left, requiredBy: required };
    },
  };
}
