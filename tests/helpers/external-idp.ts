import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import mount from 'koa-mount';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';

export type ProviderShape = 'auth0' | 'keycloak' | 'generic';

export const EXTERNAL_AUDIENCE = 'https://api.atrium.test';
export const NAMESPACED_ROLES = 'https://atrium.example/roles';
const ACCESS_SCOPES = 'access:stable access:ea access:devel access:admin';

export interface ExternalIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Query parameters of every authorization request the provider received. */
  authRequests: Record<string, unknown>[];
  provider: Provider;
  close(): Promise<void>;
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
export async function startExternalIdp(shape: ProviderShape, portalOrigin: string): Promise<ExternalIdp> {
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
      },
    ],
    claims: { openid: ['sub', NAMESPACED_ROLES], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const person = PEOPLE[sub];
      if (!person) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, email: person.email, email_verified: true, name: person.name, [NAMESPACED_ROLES]: shape === 'auth0' ? person.roles : undefined };
        },
      };
    },
    interactions: { url: (_ctx, interaction) => `${base}/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: shape !== 'auth0' },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => EXTERNAL_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: async () => ({
          scope: shape === 'generic' ? ACCESS_SCOPES : 'read:reports',
          audience: EXTERNAL_AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: shape === 'keycloak' ? 'PS256' : 'RS256' } },
        }),
      },
    },
    async extraTokenClaims(_ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const person = PEOPLE[token.accountId ?? ''];
      if (!person) return undefined;
      if (shape === 'auth0') return { permissions: person.permissions };
      if (shape === 'keycloak') return { realm_access: { roles: person.roles } };
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
      grant.addOIDCClaims([NAMESPACED_ROLES]);
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
    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: account } }, { mergeWithLastSubmission: false });
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
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
