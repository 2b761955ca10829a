import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { AuditLog } from '../../lib/directory/audit.ts';
import type { UserDirectory } from '../../lib/directory/users.ts';
import { AtriumError, BadRequestError, ForbiddenError } from '../../lib/errors.ts';
import { GroupsClaimError } from '../../lib/providers/groups-claim.ts';
import type { Logger } from '../../lib/log.ts';
import { accessTokenClaims, identityFromClaims, levelFromTokens } from '../../lib/oidc/claims.ts';
import type { RelyingParty } from '../../lib/oidc/relying-party.ts';
import { safeReturnTo } from '../../lib/return-to.ts';
import type { PortalContext, PortalSession, PortalState } from '../http/context.ts';
import { assertCsrf, newCsrfToken } from '../http/csrf.ts';
import type { Views } from '../http/views.ts';
import { EMBEDDED_PREFIX } from '../idp/provider.ts';
import type { Identity } from './identity.ts';
import { LoginTransactionCookies } from './login-transactions.ts';
import { chosenProvider } from './provider-chooser.ts';
import { signedInSession } from './user.ts';
import { afterSignIn, askForSecondFactor, assuranceFields, stepUpRoutes } from './step-up.ts';

/** How long the "you are signed out" and "to continue to …" notes wait for the page that shows them. */
const NOTE_MAX_AGE_MS = 10 * 60 * 1000;
/** How long a browser is remembered as one that has signed in here (the longest browsers keep a cookie). */
const SIGNED_IN_HERE_MAX_AGE_MS = 400 * 24 * 60 * 60 * 1000;

/**
 * Small signed cookies that carry what a later page says, so no server-side state is needed:
 * - `signed-out`: set at logout; the provider sends the browser back to `/` (the registered
 *   post-logout URI), which shows the "signed out" page once instead of the launcher;
 * - `continue`: the app a sign-in started from, for the embedded provider's sign-in page ("to
 *   continue to Notes"), tied to that sign-in's `state`;
 * - `signed-in-here`: this browser has signed in before. Only such a browser is told which app it
 *   is signing in to: a stranger probing `/login?returnTo=/apps/…` learns nothing about which apps
 *   exist (as dispatch promises for `/apps/…` itself).
 */
function noteCookies(secure: boolean) {
  const name = (base: string) => (secure ? `__Secure-atrium.${base}` : `atrium.${base}`);
  const options = (path: string, maxAge: number) => ({ httpOnly: true, sameSite: 'lax' as const, secure, signed: true, overwrite: true, path, maxAge });
  const signedOut = { name: name('signed-out'), ...options('/', NOTE_MAX_AGE_MS) };
  const signedInHere = { name: name('signed-in-here'), ...options('/login', SIGNED_IN_HERE_MAX_AGE_MS) };
  const continueTo = { name: name('continue'), ...options(`${EMBEDDED_PREFIX}/interaction`, NOTE_MAX_AGE_MS) };
  const clear = (ctx: PortalContext, cookie: typeof signedOut) => ctx.cookies.set(cookie.name, '', { ...cookie, maxAge: 0 });
  return { signedOut, signedInHere, continueTo, clear };
}

/**
 * The app path a sign-in started from, as the embedded provider's sign-in page reads it: only for
 * the sign-in (`state`) it was written for, and only a same-origin path.
 */
export function continueHint(ctx: { cookies: PortalContext['cookies'] }, state: unknown, secure: boolean): string | undefined {
  const raw = ctx.cookies.get(noteCookies(secure).continueTo.name, { signed: true });
  if (!raw || typeof state !== 'string') return undefined;
  const dot = raw.indexOf('.');
  if (dot < 0 || raw.slice(0, dot) !== state) return undefined;
  try {
    const path = safeReturnTo(Buffer.from(raw.slice(dot + 1), 'base64url').toString('utf8'));
    return path === '/' ? undefined : path;
  } catch {
    return undefined;
  }
}

/**
 * Sign-in and sign-out. The login transaction (state, nonce, PKCE verifier, returnTo) waits in a
 * cookie of its own until the callback (see login-transactions.ts: at most a few per browser).
 * Every sign-in, refused sign-in and sign-out is audited, with the user as the actor.
 */
export function authRoutes(deps: {
  rp: RelyingParty;
  users: UserDirectory;
  audit: Pick<AuditLog, 'record'>;
  views: Views;
  log: Logger;
  publicOrigin: string;
  secureCookies: boolean;
  /**
   * Whether the token's own grants count. Not for the embedded provider: its `access:*` scopes are
   * a copy of the directory taken at login, and the live directory is fresher (a demotion must
   * apply at the next request, not when the token expires).
   */
  tokenGrantsLevel: boolean;
  /** The configured providers (the chooser offers them), their accounts and their groups. */
  identity: Pick<Identity, 'providers' | 'accounts' | 'groups'>;
  onLogin?: (userId: number, profile: Record<string, unknown>) => void;
}): Router<PortalState> {
  const { rp, users, log, publicOrigin, secureCookies, views } = deps;
  const router = new Router<PortalState>();
  const transactions = new LoginTransactionCookies(secureCookies);
  const notes = noteCookies(secureCookies);

  /** An audit line about the user's own session; a failure to write it is logged, never the user's problem. */
  const audit = async (action: string, who: { email: string | null; sub: string }, after?: Record<string, unknown>) => {
    const name = who.email ?? who.sub;
    try {
      await deps.audit.record({ actor: name, action, target: `user:${name}`, ...(after ? { after } : {}) });
    } catch (err) {
      log.error({ err, action, sub: who.sub }, 'could not write the audit log');
    }
  };
  /**
   * The same once the answer has gone out, and only if it is a success: the session is saved (or
   * ended) after the route returns, and a store that fails then turns a sign-in or sign-out into a
   * 503 that must not stand in the log as done.
   */
  const auditWhenDone = (ctx: PortalContext, action: string, who: { email: string | null; sub: string }) => {
    // 'close' rather than 'finish': it comes on a client that hung up too, once the store has saved.
    ctx.res.once('close', () => {
      if (ctx.status < 400) void audit(action, who);
    });
  };

  const page = (ctx: PortalContext, data: { title: string; heading: string; message: string; action: { href: string; label: string } }) => {
    ctx.set('Cache-Control', 'no-store');
    ctx.type = 'html';
    ctx.body = views.render('message.njk', data);
  };

  router.get('/login', async (ctx) => {
    const returnTo = safeReturnTo(ctx.query.returnTo);
    // Several providers: the chooser first (its links come back here naming one); one: straight on.
    const provider = chosenProvider(ctx, deps.identity.providers, views, signedInSession(ctx.session));
    if (!provider) return;
    const { url, transaction } = await provider.rp.startLogin(returnTo);
    transaction.provider = provider.config.id;
    askForSecondFactor(ctx.query, url, transaction);
    transactions.save(ctx, transaction);
    if (returnTo.startsWith('/apps/') && ctx.cookies.get(notes.signedInHere.name, { signed: true })) {
      ctx.cookies.set(notes.continueTo.name, `${transaction.state}.${Buffer.from(returnTo).toString('base64url')}`, notes.continueTo);
    }
    ctx.set('Cache-Control', 'no-store');
    ctx.redirect(url.href);
  });

  // The provider's logout sends the browser back to `/`: once after a logout, that is this page.
  router.get('/', async (ctx, next) => {
    if (!ctx.cookies.get(notes.signedOut.name, { signed: true })) return next();
    notes.clear(ctx, notes.signedOut);
    if (ctx.state.user) return next();
    ctx.status = 303;
    ctx.redirect('/signed-out');
  });

  router.get('/signed-out', (ctx) => {
    if (ctx.state.user) return ctx.redirect('/');
    page(ctx, { title: 'Signed out', heading: 'You are signed out', message: 'Your Atrium session has ended on this browser. Apps you opened through Atrium need a new sign-in too.', action: { href: '/login', label: 'Sign in again' } });
  });

  router.get('/auth/callback', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    const transaction = transactions.take(ctx, state);
    if (ctx.query.error === 'access_denied') {
      // The person pressed Cancel at the provider (or refused consent): not an access problem.
      const again = transaction && transaction.returnTo !== '/' ? `/login?returnTo=${encodeURIComponent(transaction.returnTo)}` : '/login';
      page(ctx, { title: 'Sign-in cancelled', heading: 'Sign-in cancelled', message: 'You cancelled signing in, so nothing was opened. You can sign in again whenever you are ready.', action: { href: again, label: 'Sign in again' } });
      return;
    }
    if (!transaction) {
      throw new BadRequestError('This sign-in link has expired or was already used. Start again from the app you wanted.', { code: 'login_expired' });
    }
    if (typeof ctx.query.error === 'string') {
      throw new ForbiddenError('The identity provider refused the sign-in.', {}, 'login_refused');
    }

    // The provider the sign-in was started with finishes it (and checks the code came from it).
    const provider = deps.identity.providers.of(transaction.provider);
    if (!provider) throw new BadRequestError('This sign-in link has expired or was already used. Start again from the app you wanted.', { code: 'login_expired' });
    const tokens = await provider.rp.finishLogin(new URL(ctx.url, publicOrigin), transaction);
    const identity = identityFromClaims(tokens.idClaims);
    const account = { issuer: (await provider.rp.provider()).issuer, embedded: provider.config.embedded, subjectPrefix: provider.config.subjectPrefix };
    let user: Awaited<ReturnType<typeof users.recordLogin>>;
    try {
      user = await deps.identity.accounts.signIn(account, identity);
    } catch (err) {
      if (err instanceof AtriumError) await audit('session.sign_in_refused', { email: identity.email ?? null, sub: `${provider.config.id}:${identity.sub}` }, { reason: err.code });
      throw err;
    }
    if (user.disabled) {
      await audit('session.sign_in_refused', user, { reason: 'account disabled' });
      throw new ForbiddenError('This account is disabled.', {}, 'account_disabled');
    }
    if (!provider.config.embedded) {
      try {
        await deps.identity.groups.atSignIn(provider.config, { userId: user.id, who: user.email ?? user.sub }, tokens);
      } catch (err) {
        if (err instanceof GroupsClaimError) await audit('session.sign_in_refused', user, { reason: err.code, provider: provider.config.id });
        throw err;
      }
    }

    const data: PortalSession = {
      uid: user.id,
      sub: user.sub,
      email: user.email,
      name: user.name,
      picture: user.picture,
      profile: user.profile,
      provider: provider.config.id,
      tokenLevel: !provider.tokenGrantsLevel ? null : levelFromTokens({
        accessClaims: accessTokenClaims(tokens.accessToken),
        idClaims: tokens.idClaims,
        grantedScope: tokens.scope,
        accessClaim: provider.config.accessClaim,
      }),
      tokens: { access: tokens.accessToken, refresh: tokens.refreshToken, id: tokens.idToken, expiresAt: tokens.expiresAt, issuedAt: tokens.issuedAt },
      ...(typeof tokens.idClaims.sid === 'string' ? { idpSid: tokens.idClaims.sid.slice(0, 255) } : {}),
      csrf: newCsrfToken(),
      authAt: Date.now(),
      seenAt: Date.now(),
      ...assuranceFields(tokens.idClaims),
    };
    // A new session id at every login: whatever id the browser had before (planted or not) is dropped.
    const session = ctx.session as NonNullable<typeof ctx.session>;
    for (const key of Object.keys(session.toJSON())) delete (session as unknown as Record<string, unknown>)[key];
    Object.assign(session, data);
    await session.regenerate();
    deps.onLogin?.(user.id, user.profile);
    log.info({ sub: user.sub, level: data.tokenLevel }, 'signed in');
    auditWhenDone(ctx, 'session.sign_in', user);
    ctx.cookies.set(notes.signedInHere.name, '1', notes.signedInHere);
    ctx.redirect(afterSignIn(transaction, data));
  });

  stepUpRoutes(router, { views });

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
    auditWhenDone(ctx, 'session.sign_out', current);
    ctx.cookies.set(notes.signedOut.name, '1', notes.signedOut);
    let target = '/';
    try {
      // Signed out where the session was signed in.
      const signedInWith = deps.identity.providers.of(current.provider)?.rp ?? rp;
      target = (await signedInWith.endSessionUrl(idToken, `${publicOrigin}/`))?.href ?? '/';
    } catch (err) {
      log.warn({ err }, 'provider logout URL unavailable; the session here has ended');
    }
    ctx.status = 303;
    ctx.redirect(target);
  });

  return router;
}
