import type Router from '@koa/router';
import { ACR_PASSWORD, ACR_SECOND_FACTOR, assuranceOf, SECOND_FACTOR_ACRS } from '../../lib/factors/assurance.ts';
import type { LoginTransaction } from '../../lib/oidc/relying-party.ts';
import { safeReturnTo } from '../../lib/return-to.ts';
import type { PortalContext, PortalSession, PortalState } from '../http/context.ts';
import type { Views } from '../http/views.ts';

/**
 * Step-up: an app whose manifest says `"mfa": true` opens only for a session whose sign-in used a
 * second factor (the gate decides from `mfa`, recorded here at sign-in: no per-request work). A
 * session without one is sent to sign in again, asking the provider for a second factor, and comes
 * back to the app. When the provider signs the user in without one all the same (it cannot, or the
 * account has none there), the page says so instead of sending the browser round again.
 */

/** The query parameter `/login` takes to ask for a second factor. */
export const STEP_UP_PARAM = 'mfa';
const FAILED_PATH = '/login/second-factor-needed';

/** Where a browser goes to sign in again with a second factor, then back to `returnTo`. */
export function stepUpLoginUrl(returnTo: string): string {
  return `/login?returnTo=${encodeURIComponent(returnTo)}&${STEP_UP_PARAM}=1`;
}

type StepUpTransaction = LoginTransaction & { stepUp?: true };

/**
 * At `/login?mfa=1`: the authorization request asks for a second factor (`acr_values`) and a fresh
 * sign-in (`prompt=login`, `max_age=0`), so a provider session made with a password alone is not
 * simply reused; the transaction remembers that it asked.
 */
export function askForSecondFactor(query: Record<string, unknown>, url: URL, transaction: LoginTransaction): void {
  if (query[STEP_UP_PARAM] !== '1') return;
  url.searchParams.set('acr_values', SECOND_FACTOR_ACRS.join(' '));
  url.searchParams.set('prompt', 'login');
  url.searchParams.set('max_age', '0');
  (transaction as StepUpTransaction).stepUp = true;
}

/** The session fields that say how the sign-in was made (from the ID token's `amr` and `acr`). */
export function assuranceFields(idClaims: Record<string, unknown>): Pick<PortalSession, 'amr' | 'acr' | 'mfa'> {
  const { amr, acr, mfa } = assuranceOf(idClaims);
  return { ...(amr ? { amr } : {}), ...(acr ? { acr } : {}), mfa };
}

/**
 * Where the callback sends the browser: back to `returnTo`, unless it asked for a second factor
 * and did not get one; then to the page that explains, rather than to the app (which would send it
 * round again).
 */
export function afterSignIn(transaction: LoginTransaction, session: Pick<PortalSession, 'mfa'>): string {
  if ((transaction as StepUpTransaction).stepUp && !session.mfa) return `${FAILED_PATH}?returnTo=${encodeURIComponent(transaction.returnTo)}`;
  return transaction.returnTo;
}

/** The explanation page: a 403, with what the provider said it did. */
export function stepUpRoutes(router: Router<PortalState>, deps: { views: Views }): void {
  router.get(FAILED_PATH, (ctx: PortalContext) => {
    const session = ctx.session as unknown as Partial<PortalSession> | null;
    // The embedded provider always states one of its own `acr` values; any other sign-in was elsewhere.
    const external = session?.acr !== ACR_PASSWORD && session?.acr !== ACR_SECOND_FACTOR;
    const returnTo = safeReturnTo(ctx.query.returnTo);
    ctx.status = 403;
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    const said = session?.amr?.length || session?.acr ? `It reported ${[session.amr?.length ? `methods ${session.amr.join(', ')}` : '', session.acr ? `level ${session.acr}` : ''].filter(Boolean).join(' and ')}.` : 'It reported no second factor.';
    ctx.body = deps.views.render('error.njk', {
      title: 'Second factor needed',
      status: 403,
      heading: 'This app needs a sign-in with a second factor',
      message: external
        ? `Your sign-in service signed you in without a second factor. ${said} If your account there has one (an authenticator app, a security key), it may not offer it to Atrium: ask its administrators to turn on multi-factor sign-in for this portal.`
        : `You signed in without a second factor. ${said} Add an authenticator app or a passkey under Sign-in security on your profile, then open the app again.`,
      details: { signIn: stepUpLoginUrl(returnTo), ...(external ? {} : { profile: '/profile' }) },
      user: ctx.state.user,
      csrf: ctx.state.csrf,
    });
  });
}
