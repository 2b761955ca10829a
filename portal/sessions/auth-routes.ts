import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { UserDirectory } from '../../lib/directory/users.ts';
import { BadRequestError, ForbiddenError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { accessTokenClaims, identityFromClaims, levelFromTokens } from '../../lib/oidc/claims.ts';
import type { LoginTransaction, RelyingParty } from '../../lib/oidc/relying-party.ts';
import { safeReturnTo } from '../../lib/return-to.ts';
import type { PortalContext, PortalSession, PortalState } from '../http/context.ts';
import { assertCsrf, newCsrfToken } from '../http/csrf.ts';
import { signedInSession } from './user.ts';

/**
 * `atrium.auth.<state>`; over https `__Secure-` prefixed, so a browser takes it only from a secure
 * origin with Secure set: a plain-http sibling on the same host cannot plant a login transaction of
 * its own (which would sign the visitor in to the planter's account). Not `__Host-`: that needs
 * Path=/, and the cookie is scoped to the callback.
 */
function transactionCookie(secure: boolean): string {
  return secure ? '__Secure-atrium.auth' : 'atrium.auth';
}

const TRANSACTION_TTL_MS = 10 * 60 * 1000;
const STATE = /^[A-Za-z0-9_-]{16,128}$/;

/**
 * Sign-in and sign-out. The login transaction (state, nonce, PKCE verifier, returnTo) waits in a
 * signed, HttpOnly cookie scoped to the callback path and named by its state, so anonymous
 * visitors cost the server no storage and several tabs can sign in at once.
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
  const cookieOptions = { httpOnly: true, sameSite: 'lax' as const, secure: secureCookies, signed: true, path: '/auth/callback', overwrite: true };
  const transactionName = transactionCookie(secureCookies);

  router.get('/login', async (ctx) => {
    const returnTo = safeReturnTo(ctx.query.returnTo);
    const { url, transaction } = await rp.startLogin(returnTo);
    ctx.cookies.set(`${transactionName}.${transaction.state}`, Buffer.from(JSON.stringify(transaction)).toString('base64url'), { ...cookieOptions, maxAge: TRANSACTION_TTL_MS });
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect(url.href);
  });

  router.get('/auth/callback', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    const transaction = STATE.test(state) ? readTransaction(ctx, `${transactionName}.${state}`, state) : undefined;
    if (!transaction) {
      throw new BadRequestError('This sign-in link has expired or was already used. Start again from the app you wanted.', { code: 'login_expired' });
    }
    ctx.cookies.set(`${transactionName}.${state}`, '', { ...cookieOptions, maxAge: 0 });
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

function readTransaction(ctx: PortalContext, cookie: string, state: string): LoginTransaction | undefined {
  const raw = ctx.cookies.get(cookie, { signed: true });
  if (!raw) return undefined;
  try {
    const t = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<LoginTransaction>;
    if (t.state !== state || typeof t.nonce !== 'string' || typeof t.verifier !== 'string' || typeof t.createdAt !== 'number') return undefined;
    if (Date.now() - t.createdAt > TRANSACTION_TTL_MS) return undefined;
    return { ...(t as LoginTransaction), returnTo: safeReturnTo(t.returnTo) };
  } catch {
    return undefined;
  }
}
