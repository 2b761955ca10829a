import { randomBytes } from 'node:crypto';
import { initSetting } from '../../lib/db/settings.ts';
import Provider, { errors, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Config } from '../../lib/config.ts';
import type { Database } from '../../lib/db/schema.ts';
import type { AccessIndex } from '../../lib/directory/access.ts';
import type { UserDirectory } from '../../lib/directory/users.ts';
import type { Logger } from '../../lib/log.ts';
import { ACCESS_SCOPES, scopesForLevel } from '../../lib/levels.ts';
import type { JWK } from 'jose';
import type { Views } from '../http/views.ts';
import { sqlAdapter } from './adapter.ts';
import { ACR_PASSWORD, ACR_SECOND_FACTOR, asksForSecondFactor } from '../../lib/factors/assurance.ts';
import { FactorDirectory } from '../../lib/factors/factor-directory.ts';
import { AuditLog } from '../../lib/directory/audit.ts';
import { secondFactorPolicy } from './second-factor-policy.ts';
import { loadSigningKeys } from './keys.ts';

export const EMBEDDED_PREFIX = '/idp';
const OIDC_SCOPES = 'openid profile email offline_access';

export interface EmbeddedProvider {
  provider: Provider;
  issuer: URL;
  /** The first-party client: the portal itself. */
  client: { id: string; secret: string };
  /** The API audience (resource indicator) its access tokens are minted for. */
  audience: string;
  /** The public half of the signing keys, for verifying its tokens without a network call. */
  publicJwks: { keys: JWK[] };
}

/**
 * A machine client that names no scope in its client-credentials request asks for every level it
 * was registered with, as Auth0 grants a client all its authorised scopes by default; without this
 * its token would carry no `access:*` scope and open nothing. Called while oidc-provider resolves
 * the request's resource server, before it reads the requested scopes (its client_credentials
 * handler); a request that names scopes keeps exactly what it asked for (less, never more).
 */
function askForRegisteredScopesByDefault(ctx: KoaContextWithOIDC, registered: string): void {
  const { oidc } = ctx;
  if (oidc.route !== 'token' || oidc.params?.grant_type !== 'client_credentials' || oidc.params.scope !== undefined) return;
  if (registered !== '') oidc.params.scope = registered;
}

/**
 * The embedded OpenID provider (oidc-provider), used when no OIDC_ISSUER is configured: local
 * accounts from the directory, the portal as a first-party client that never sees a consent
 * screen, JWT access tokens whose `access:*` scopes come from the user's (nested) groups.
 */
export async function createEmbeddedProvider(deps: {
  config: Config;
  sessionKeys: string[];
  database: Database;
  users: UserDirectory;
  access: AccessIndex;
  views: Views;
  log: Logger;
}): Promise<EmbeddedProvider> {
  const { config, sessionKeys, database, users, access, views, log } = deps;
  const origin = config.publicUrl.origin;
  const issuer = new URL(`${origin}${EMBEDDED_PREFIX}`);
  const audience = config.oidc.audience ?? origin;
  // Generated once and kept with the provider's keys, so every instance agrees on it, whatever
  // happens to SESSION_SECRET (a rolling key rotation must not break sign-in).
  const client = { id: config.oidc.clientId, secret: await initSetting(database, 'idp_client_secret', randomBytes(32).toString('base64url')) };

  const jwks = await loadSigningKeys(database);
  const publicJwks = { keys: jwks.keys.map(({ d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub }) => pub) };
  const configuration: Configuration = {
    adapter: sqlAdapter(database),
    jwks,
    clients: [
      {
        client_id: client.id,
        client_secret: client.secret,
        redirect_uris: [`${origin}/auth/callback`],
        post_logout_redirect_uris: [`${origin}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        backchannel_logout_uri: `${origin}/auth/backchannel-logout`,
        backchannel_logout_session_required: true,
      },
    ],
    // The portal's cookies and the provider's are read through the same Koa context: same keys.
    cookies: {
      keys: sessionKeys,
      // Named under `atrium.` so the proxy can keep every portal cookie away from upstream apps.
      names: { session: 'atrium.idp', interaction: 'atrium.idp.interaction', resume: 'atrium.idp.resume' },
      long: { signed: true, httpOnly: true, sameSite: 'lax', secure: config.secureCookies },
      short: { signed: true, httpOnly: true, sameSite: 'lax', secure: config.secureCookies },
    },
    claims: {
      // Every ID token says how the user signed in: `amr` (RFC 8176 methods) and `acr` (see
      // second-factor.ts), and when (`auth_time`), so the portal can tell a sign-in with a second factor.
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name', 'picture', 'updated_at'],
    },
    conformIdTokenClaims: false,
    // What the ID token's `acr` says of a sign-in: the password alone, or with a second factor
    // (`amr` says which: see second-factor.ts). An app that needs a second factor asks for the latter.
    acrValues: [ACR_PASSWORD, ACR_SECOND_FACTOR],
    // Machine clients carry their allowed `access:*` scopes in this extra metadata (see getResourceServerInfo).
    extraClientMetadata: { properties: ['atrium_scope'] },
    // oidc-provider refuses to call loopback and private addresses (SSRF protection). Its one call
    // to the portal itself — back-channel logout — is allowed through; everything else stays guarded.
    async fetch(url, options) {
      if (new URL(url).origin === origin) {
        const { dispatcher: _guarded, ...rest } = options as RequestInit & { dispatcher?: unknown };
        return globalThis.fetch(url, rest);
      }
      return globalThis.fetch(url, options);
    },
    async findAccount(_ctx, sub) {
      const user = await users.bySub(sub);
      if (!user || user.disabled) return undefined;
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            email: user.email ?? undefined,
            email_verified: user.email !== null,
            name: user.name ?? undefined,
            picture: user.picture ?? undefined,
            updated_at: Math.floor(user.createdAt / 1000),
          };
        },
      };
    },
    interactions: {
      url: (_ctx, interaction) => `${EMBEDDED_PREFIX}/interaction/${interaction.uid}`,
      policy: secondFactorPolicy({
        users,
        factors: new FactorDirectory({ database, access, audit: new AuditLog(database) }),
        asked: asksForSecondFactor,
      }),
    },
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      // Logout at the provider reaches every client's sessions, the portal's included.
      backchannelLogout: { enabled: true },
      // Machine clients (npm run atrium -- clients add) get tokens without a user.
      clientCredentials: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(ctx, form) {
          ctx.type = 'html';
          ctx.body = views.render('idp-logout.njk', { title: 'Signing out', form });
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'html';
          ctx.body = views.render('message.njk', { title: 'Signed out', heading: 'You are signed out', message: 'Your Atrium session has ended.' });
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        async getResourceServerInfo(ctx, resourceIndicator, oidcClient) {
          if (resourceIndicator !== audience) throw new errors.InvalidTarget();
          // The portal may ask for any level (the grant decides what it gets); a machine client only
          // for the levels it was registered with.
          const allowed = oidcClient.clientId === client.id ? ACCESS_SCOPES.join(' ') : String(oidcClient.atrium_scope ?? '');
          askForRegisteredScopesByDefault(ctx, allowed);
          return {
            scope: allowed,
            audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: config.idpAccessTokenTtlSeconds,
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    /**
     * The portal is first-party: it gets a grant without a consent screen, and the `access:*`
     * scopes in it are exactly those the user's directory groups give now (the rest are marked
     * rejected, so the provider does not ask for consent for them either).
     */
    async loadExistingGrant(ctx: KoaContextWithOIDC) {
      const oidcClient = ctx.oidc.client;
      const session = ctx.oidc.session;
      if (!oidcClient || !session?.accountId) return undefined;
      const grantId = ctx.oidc.result?.consent?.grantId ?? session.grantIdFor(oidcClient.clientId);
      const existing = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
      if (oidcClient.clientId !== client.id) return existing;

      const grant = existing ?? new ctx.oidc.provider.Grant({ clientId: oidcClient.clientId, accountId: session.accountId });
      const user = await users.bySub(session.accountId);
      const granted = scopesForLevel(user ? access.grantFor(user.id).level : null);
      grant.resources = {};
      grant.rejected = undefined;
      grant.addOIDCScope(OIDC_SCOPES);
      if (granted.length > 0) grant.addResourceScope(audience, granted.join(' '));
      const rejected = ACCESS_SCOPES.filter((s) => !granted.includes(s));
      if (rejected.length > 0) grant.rejectResourceScope(audience, rejected.join(' '));
      await grant.save();
      return grant;
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = views.render('error.njk', {
        title: 'Sign-in problem',
        status: ctx.status,
        heading: 'Sign-in could not continue',
        message: out.error_description ?? out.error,
        details: {},
      });
    },
    ttl: {
      AccessToken: config.idpAccessTokenTtlSeconds,
      ClientCredentials: config.idpAccessTokenTtlSeconds,
      AuthorizationCode: 60,
      IdToken: 60 * 60,
      Interaction: 60 * 60,
      Grant: 14 * 24 * 60 * 60,
      Session: 14 * 24 * 60 * 60,
      RefreshToken: 14 * 24 * 60 * 60,
    },
  };

  const provider = new Provider(issuer.href, configuration);
  provider.proxy = config.secureCookies;
  // The provider renders its own errors; make sure the server-side ones reach the log too.
  provider.on('server_error', (_ctx, err) => log.error({ err }, 'embedded provider error'));
  provider.on('backchannel.error', (_ctx, err, client) => log.warn({ err, client: client.clientId }, 'back-channel logout delivery failed'));
  return { provider, issuer, client, audience, publicJwks };
}
