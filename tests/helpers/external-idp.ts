import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import mount from 'koa-mount';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { Agent, type AgentResponse } from './agent.ts';

export type ProviderShape = 'auth0' | 'keycloak' | 'generic';

export const EXTERNAL_AUDIENCE = 'https://api.atrium.test';
export const NAMESPACED_ROLES = 'https://atrium.example/roles';
/** Where the Auth0-shaped provider puts a user's groups (an Action's namespaced claim); Keycloak's is `groups`. */
export const NAMESPACED_GROUPS = 'https://atrium.example/groups';
const ACCESS_SCOPES = 'access:stable access:ea access:devel access:admin';
/** The OpenID PAPE multi-factor policy, as Auth0 takes it in `acr_values`. */
export const PAPE_MULTI_FACTOR = 'http://schemas.openid.net/pape/policies/2007/06/multi-factor';

export interface ExternalIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Query parameters of every authorization request the provider received. */
  authRequests: Record<string, unknown>[];
  provider: Provider;
  /**
   * What the provider says about an account's groups from now on (the next sign-in or refresh): a
   * list, or any other value to play a broken provider; undefined leaves the claim out. Keycloak
   * puts it in `groups` (ID and access token), Auth0 in NAMESPACED_GROUPS (ID token), generic in `groups`.
   */
  setGroups(account: string, groups: unknown): void;
  /** A back-channel logout token for this portal's client, signed with the provider's own key, as the provider sends one. */
  logoutToken(claims: { sub?: string; sid?: string }): Promise<string>;
  /** Any JWT signed with the provider's key (`iss` defaults to its issuer, `aud` to the API audience): for forged or foreign tokens. */
  sign(claims: Record<string, unknown>): Promise<string>;
  close(): Promise<void>;
}

export interface ExternalIdpOptions {
  /** Access token lifetime in seconds (default 300): short, to make the portal refresh soon. */
  accessTokenTtl?: number;
  /** Registers the portal's back-channel logout URI with sessions required, so ID tokens carry `sid`. */
  backchannel?: boolean;
}

/** People the external provider knows, and what it grants each, per shape. */
const PEOPLE: Record<string, { email: string; name: string; permissions: string[]; roles: string[] }> = {
  'ext-ea': { email: 'ext.ea@corp.example', name: 'External EA', permissions: ['access:ea', 'read:reports'], roles: ['access:ea'] },
  'ext-devel': { email: 'ext.devel@corp.example', name: 'External Devel', permissions: ['access:devel'], roles: ['offline_access', 'access:devel'] },
  'ext-none': { email: 'ext.none@corp.example', name: 'External Nobody', permissions: [], roles: ['uma_authorization'] },
};

/**
 * A second OpenID provider (oidc-provider again, on its own port) playing an "external" one in the
 * shape of Auth0 (permissions claim in the access token, a namespaced claim in the ID token, an
 * `audience` parameter, no end_session_endpoint), Keycloak (issuer under /realms/<realm>, roles in
 * `realm_access.roles`) or a generic provider (levels as scopes). Sign-in is automatic: the account
 * is the `login_hint`.
 */
export async function startExternalIdp(shape: ProviderShape, portalOrigin: string, options: ExternalIdpOptions = {}): Promise<ExternalIdp> {
  const groupsOf = new Map<string, unknown>();
  const groupsClaim = shape === 'auth0' ? NAMESPACED_GROUPS : 'groups';
  const withGroups = (sub: string) => (groupsOf.has(sub) && groupsOf.get(sub) !== undefined ? { [groupsClaim]: groupsOf.get(sub) } : {});
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = shape === 'keycloak' ? '/realms/atrium' : '';
  const issuer = shape === 'auth0' ? `http://127.0.0.1:${port}/` : `http://127.0.0.1:${port}${base}`;
  const clientId = `portal-${shape}`;
  const clientSecret = `secret-for-${shape}-${'x'.repeat(24)}`;
  const authRequests: Record<string, unknown>[] = [];

  // One RSA key (no `alg`), so the provider may sign with RS256 and, Keycloak-style, PS256.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const configuration: Configuration = {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: `${shape}-key`, use: 'sig' }] },
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [`${portalOrigin}/auth/callback`],
        post_logout_redirect_uris: [`${portalOrigin}/`],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        ...(options.backchannel ? { backchannel_logout_uri: `${portalOrigin}/auth/backchannel-logout`, backchannel_logout_session_required: true } : {}),
      },
    ],
    claims: { openid: ['sub', 'amr', NAMESPACED_ROLES, NAMESPACED_GROUPS, 'groups'], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const person = PEOPLE[sub];
      if (!person) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, email: person.email, email_verified: true, name: person.name, [NAMESPACED_ROLES]: shape === 'auth0' ? person.roles : undefined, ...withGroups(sub) };
        },
      };
    },
    interactions: { url: (_ctx, interaction) => `${base}/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: shape !== 'auth0' },
      backchannelLogout: { enabled: options.backchannel === true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => EXTERNAL_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: async () => ({
          scope: shape === 'generic' ? ACCESS_SCOPES : 'read:reports',
          audience: EXTERNAL_AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: options.accessTokenTtl ?? 300,
          jwt: { sign: { alg: shape === 'keycloak' ? 'PS256' : 'RS256' } },
        }),
      },
    },
    async extraTokenClaims(_ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const person = PEOPLE[token.accountId ?? ''];
      if (!person) return undefined;
      if (shape === 'auth0') return { permissions: person.permissions };
      if (shape === 'keycloak') return { realm_access: { roles: person.roles }, ...withGroups(token.accountId ?? '') };
      return undefined;
    },
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    async loadExistingGrant(ctx: KoaContextWithOIDC) {
      const client = ctx.oidc.client;
      const session = ctx.oidc.session;
      if (!client || !session?.accountId) return undefined;
      const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope('openid profile email offline_access');
      grant.addOIDCClaims([NAMESPACED_ROLES, NAMESPACED_GROUPS, 'groups']);
      grant.addResourceScope(EXTERNAL_AUDIENCE, shape === 'generic' ? 'access:stable access:ea' : 'read:reports');
      await grant.save();
      return grant;
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('external idp error', err));

  const app = new Koa();
  app.use(async (ctx, next) => {
    if (ctx.path === `${base}/auth`) authRequests.push({ ...ctx.query });
    const match = new RegExp(`^${base}/interaction/([^/]+)$`).exec(ctx.path);
    if (!match) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const account = typeof details.params.login_hint === 'string' ? details.params.login_hint : 'ext-ea';
    // Like Auth0, the Auth0 shape answers a request for the multi-factor policy with amr ["mfa"];
    // the others, like a Keycloak without step-up flows, ignore it.
    const mfa = shape === 'auth0' && String(details.params.acr_values ?? '').split(' ').includes(PAPE_MULTI_FACTOR);
    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: account, ...(mfa ? { amr: ['pwd', 'mfa'] } : {}) } }, { mergeWithLastSubmission: false });
    ctx.redirect(redirectTo);
  });
  app.use(base ? mount(base, provider) : mount(provider));
  server.on('request', app.callback());
  return {
    issuer,
    clientId,
    clientSecret,
    authRequests,
    provider,
    setGroups: (account, groups) => void groupsOf.set(account, groups),
    logoutToken: (claims) =>
      new SignJWT({ ...claims, events: { 'http://schemas.openid.net/event/backchannel-logout': {} } })
        .setProtectedHeader({ alg: 'RS256', kid: `${shape}-key`, typ: 'logout+jwt' })
        .setIssuer(issuer)
        .setAudience(clientId)
        .setIssuedAt()
        .setJti(randomUUID())
        .sign(privateKey),
    sign: (claims) =>
      new SignJWT({ iss: issuer, aud: EXTERNAL_AUDIENCE, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300, ...claims })
        .setProtectedHeader({ alg: 'RS256', kid: `${shape}-key`, typ: 'at+jwt' })
        .sign(privateKey),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The code flow across two origins, as a browser does it (each side keeps its own cookies): from
 * `start` on the portal (`/login?returnTo=/me`, or a chooser link) through the provider, signing in
 * as `account` (the provider's `login_hint`), until an answer that is no redirect.
 */
export async function signInAt(portal: Agent, idp: ExternalIdp, account: string, start = '/login?returnTo=/me'): Promise<AgentResponse> {
  const idpAgent = new Agent(new URL(idp.issuer).origin);
  const first = await portal.get(start);
  if (!first.location) return first;
  const authorize = new URL(first.location, portal.origin);
  if (authorize.origin !== portal.origin) authorize.searchParams.set('login_hint', account);
  let next: string | undefined = authorize.href;
  let last = first;
  for (let hops = 0; next && hops < 15; hops++) {
    const url: string = new URL(next, portal.origin).href;
    const client = new URL(url).origin === portal.origin ? portal : idpAgent;
    last = await client.get(url, { Accept: 'application/json, text/html' });
    next = last.status >= 300 && last.status < 400 ? last.location : undefined;
  }
  return last;
}
