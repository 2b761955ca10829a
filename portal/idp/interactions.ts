import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type Provider from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Config } from '../../lib/config.ts';
import { DEMO_ACCOUNTS, DEMO_PASSWORD } from '../../lib/directory/demo.ts';
import { verifyPassword } from '../../lib/directory/passwords.ts';
import { canonicalEmail, type UserDirectory } from '../../lib/directory/users.ts';
import { AtriumError, BadRequestError } from '../../lib/errors.ts';
import type { Views } from '../http/views.ts';
import { continueHint } from '../sessions/auth-routes.ts';
import type { FactorDirectory } from '../../lib/factors/factor-directory.ts';
import { passkeyRelyingParty } from '../../lib/factors/passkeys.ts';
import type { LoginThrottle } from './login-throttle.ts';
import { asksForSecondFactor, secondFactorSteps } from './second-factor.ts';
import { EMBEDDED_PREFIX } from './provider.ts';

const UID = /^[A-Za-z0-9_-]{1,64}$/;

import { waitInWords } from './wait-in-words.ts';

// Kept here too for the pages and tests that name it from the sign-in routes.
export { waitInWords };

const APP_PATH = /^\/apps\/([a-z]+)\/([a-z0-9-]+)(?:[/?#]|$)/;

/**
 * The embedded provider's own pages: the sign-in form for local accounts. The interaction is bound
 * to the provider's SameSite cookie, so a form posted from another site finds no interaction.
 */
export function interactionRoutes(deps: {
  provider: Provider;
  users: UserDirectory;
  views: Views;
  config: Config;
  demo: boolean;
  throttle: LoginThrottle;
  /** Second factors of local accounts (TOTP, passkeys, recovery codes). */
  factors: FactorDirectory;
  /** The title of the app mounted at a tier and name, for "to continue to Notes". */
  appTitle?: (tier: string, name: string) => string | undefined;
}): Router {
  const { provider, users, views, demo, throttle } = deps;
  const router = new Router({ prefix: `${EMBEDDED_PREFIX}/interaction` });
  const form = bodyParser({ enableTypes: ['form'], formLimit: '8kb' });

  router.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    if (ctx.params.uid !== undefined && !UID.test(ctx.params.uid)) throw new BadRequestError('Unknown sign-in request.');
    try {
      await next();
    } catch (err) {
      if (err instanceof errors.SessionNotFound || err instanceof errors.InvalidRequest) {
        throw new AtriumError(400, 'interaction_expired', 'This sign-in page has expired. Go back to the app and sign in again.', { cause: err });
      }
      throw err;
    }
  });

  /** The app the sign-in started from, when the portal noted one for this sign-in (see auth-routes.ts). */
  const continuingTo = (ctx: { cookies: Parameters<typeof continueHint>[0]['cookies'] }, state: unknown): string | undefined => {
    const match = APP_PATH.exec(continueHint(ctx, state, deps.config.secureCookies) ?? '');
    return match ? deps.appTitle?.(match[1] as string, match[2] as string) : undefined;
  };

  const renderLogin = (uid: string, data: { email?: string; error?: string; app?: string | undefined; focus?: 'email' | 'password' }) =>
    views.render('idp-login.njk', {
      title: data.app ? `Sign in to continue to ${data.app}` : 'Sign in',
      action: `${EMBEDDED_PREFIX}/interaction/${uid}/login`,
      abort: `${EMBEDDED_PREFIX}/interaction/${uid}/abort`,
      email: data.email ?? '',
      error: data.error,
      app: data.app,
      // After a refusal the email is there already: the password is what to type again.
      focus: data.focus ?? (data.error && data.email ? 'password' : 'email'),
      demo: demo ? { password: DEMO_PASSWORD, accounts: DEMO_ACCOUNTS } : undefined,
    });

  const steps = secondFactorSteps(router, { provider, users, factors: deps.factors, views, throttle, passkeys: passkeyRelyingParty(deps.config.publicUrl) });

  router.get('/:uid', async (ctx) => {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid) throw new BadRequestError('Unknown sign-in request.');
    if (details.prompt.name !== 'login') {
      // Only the first-party portal uses interactive flows and it never needs consent.
      throw new BadRequestError('This client needs a consent step the embedded provider does not offer.');
    }
    // An app asks for a second factor and this browser's provider session already proved the
    // password of an account that has a factor: only the second step is asked. (Without a factor
    // the password is asked again before one is set up: a session alone does not add a factor.)
    const known = details.session?.accountId ? await users.bySub(details.session.accountId) : undefined;
    if (known && !known.disabled && asksForSecondFactor(details) && (await deps.factors.hasFactor(known.id))) {
      const redirectTo = await steps.afterPassword(ctx, details, known);
      if (redirectTo) ctx.redirect(redirectTo);
      return;
    }
    const hint = typeof details.params.login_hint === 'string' ? details.params.login_hint.slice(0, 320) : '';
    ctx.type = 'html';
    ctx.body = renderLogin(details.uid, { email: hint, app: continuingTo(ctx, details.params.state) });
  });

  router.post('/:uid/login', form, async (ctx) => {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid || details.prompt.name !== 'login') throw new BadRequestError('Unknown sign-in request.');
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const email = typeof body.email === 'string' ? body.email.trim().slice(0, 320) : '';
    const password = typeof body.password === 'string' ? body.password.slice(0, 1024) : '';
    const address = ctx.ip;
    const account = email ? await users.localAccount(email) : undefined;
    // Counted against the account the address found, so no other spelling of it gets fresh guesses;
    // an address that finds none is counted as itself, in the canonical form look-ups use.
    const allowance = account ? `account:${account.sub}` : `email:${canonicalEmail(email)}`;
    const wait = await throttle.attempt(address, allowance);
    if (wait > 0) {
      ctx.status = 429;
      ctx.set('Retry-After', String(wait));
      ctx.type = 'html';
      ctx.body = renderLogin(details.uid, { email, error: `Too many failed attempts. Try again in ${waitInWords(wait)}.`, app: continuingTo(ctx, details.params.state) });
      return;
    }
    // verifyPassword runs even without an account, so a wrong email costs the same time as a wrong password.
    const ok = (await verifyPassword(password, account?.passwordHash)) && account !== undefined && !account.disabled;
    if (!ok) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = renderLogin(details.uid, { email, error: 'That email and password do not match an active account.', app: continuingTo(ctx, details.params.state) });
      return;
    }
    await throttle.succeeded(address, allowance);
    const redirectTo = await steps.afterPassword(ctx, details, account);
    if (!redirectTo) return; // the second step's page is drawn
    ctx.status = 303;
    ctx.redirect(redirectTo);
  });

  router.get('/:uid/abort', async (ctx) => {
    await provider.interactionDetails(ctx.req, ctx.res);
    const redirectTo = await provider.interactionResult(
      ctx.req,
      ctx.res,
      { error: 'access_denied', error_description: 'The sign-in was cancelled.' },
      { mergeWithLastSubmission: false },
    );
    ctx.redirect(redirectTo);
  });

  return router;
}
