import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { UserDirectory } from '../../lib/directory/users.ts';
import { BadRequestError, ForbiddenError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { accessTokenClaims, identityFromClaims, levelFromTokens } from '../../lib/oidc/claims.ts';
import type { RelyingParty } from '../../lib/oidc/relying-party.ts';
import { safeReturnTo } from '../../lib/return-to.ts';
import type { PortalSession, PortalState } from '../http/context.ts';
import { assertCsrf, newCsrfToken } from '../http/csrf.ts';
import { LoginTransactionCookies } from './login-transactions.ts';
import { signedInSession } from './user.ts';

/**
 * Sign-in and sign-out. The login transaction (state, nonce, PKCE verifier, returnTo) waits in a
 * cookie of its own until the callback (see login-transactions.ts: at most a few per browser).
 */
export function authRoutes(deps: {
  rp: RelyingParty;
  users: UserDirectory;
  log: Logger;
  publicOrigin: string;
  secureCookies: boolean;
  /**
   * Whether the token's own grants count. Not for the embedded provider: its `access:*` scopes are
   * a copy of the directory taken at login, and the live directory is fresher (a demotion must
   * apply at the next request, not when the token expires).
   */
  tokenGrantsLevel: boolean;
  onLogin?: (userId: number, profile: Record<string, unknown>) => void;
}): Router<PortalState> {
  const { rp, users, log, publicOrigin, secureCookies } = deps;
  const router = new Router<PortalState>();
  const transactions = new LoginTransactionCookies(secureCookies);

  router.get('/login', async (ctx) => {
    const returnTo = safeReturnTo(ctx.query.returnTo);
    const { url, transaction } = await rp.startLogin(returnTo);
    transactions.save(ctx, transaction);
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect(url.href);
  });

  router.get('/auth/callback', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    const transaction = transactions.take(ctx, state);
    if (!transaction) {
      throw new BadRequestError('This sign-in link has expired or was already used. Start again from the app you wanted.', { code: 'login_expired' });
    }
    if (typeof ctx.query.error === 'string') {
      throw new ForbiddenError(
        ctx.query.error === 'access_denied' ? 'The sign-in was cancelled.' : 'The identity provider refused the sign-in.',
        {},
        'login_refused',
      );
    }

    const tokens = await rp.finishLogin(new URL(ctx.url, publicOrigin), transaction);
    const identity = identityFromClaims(tokens.idClaims);
    const user = await users.recordLogin(identity);
    if (user.disabled) throw new ForbiddenError('This account is disabled.', {}, 'account_disabled');

    const data: PortalSession = {
      uid: user.id,
      sub: user.sub,
      email: user.email,
      name: user.name,
      picture: user.picture,
      profile: user.profile,
      tokenLevel: !deps.tokenGrantsLevel ? null : levelFromTokens({
        accessClaims: accessTokenClaims(tokens.accessToken),
        idClaims: tokens.idClaims,
        grantedScope: tokens.scope,
        accessClaim: deps.rp.accessClaim,
      }),
      tokens: { access: tokens.accessToken, refresh: tokens.refreshToken, id: tokens.idToken, expiresAt: tokens.expiresAt, issuedAt: tokens.issuedAt },
      ...(typeof tokens.idClaims.sid === 'string' ? { idpSid: tokens.idClaims.sid.slice(0, 255) } : {}),
      csrf: newCsrfToken(),
      authAt: Date.now(),
      seenAt: Date.now(),
    };
    // A new session id at every login: whatever id the browser had before (planted or not) is dropped.
    const session = ctx.session as NonNullable<typeof ctx.session>;
    for (const key of Object.keys(session.toJSON())) delete (session as unknown as Record<string, unknown>)[key];
    Object.assign(session, data);
    await session.regenerate();
    deps.onLogin?.(user.id, user.profile);
    log.info({ sub: user.sub, level: data.tokenLevel }, 'signed in');
    ctx.redirect(transaction.returnTo);
  });

  router.post('/logout', bodyParser({ enableTypes: ['form', 'json'], formLimit: '4kb', jsonLimit: '4kb' }), async (ctx) => {
    const current = signedInSession(ctx.session);
    if (!current) {
      ctx.status = 303;
      ctx.redirect('/');
      return;
    }
    assertCsrf(ctx, publicOrigin);
    const idToken = current.tokens.id;
    ctx.session = null;
    log.info({ sub: current.sub }, 'signed out');
    let target = '/';
    try {
      target = (await rp.endSessionUrl(idToken, `${publicOrigin}/`))?.href ?? '/';
    } catch (err) {
      log.warn({ err }, 'provider logout URL unavailable; the session here has ended');
    }
    ctx.status = 303;
    ctx.redirect(target);
  });

  return router;
}
