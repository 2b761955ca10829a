import { createServer, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import Koa from 'koa';
import mount from 'koa-mount';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { freePort } from '../../lib/free-port.ts';

export const OUTAGE_AUDIENCE = 'https://api.outage.test';

/** How the provider behaves right now. */
export type IdpMode = 'up' | 'hang' | 'down';

export interface OutageIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Token requests (code and refresh grants) it answered. */
  tokenRequests: number;
  /**
   * `up`: answers; `hang`: accepts connections and requests and never answers (a wedged provider);
   * `down`: not listening, connections are refused. The provider's state (grants, refresh tokens)
   * lives on across the modes, as a restarted real provider's would in its database.
   */
  set(mode: IdpMode): Promise<void>;
  close(): Promise<void>;
}

/**
 * An external OpenID provider (oidc-provider, generic shape: levels as scopes, JWT access tokens
 * for OUTAGE_AUDIENCE) with short-lived access tokens, that a test can make hang or go away and
 * bring back on the same port. Sign-in is automatic, as the account `ext-ea`.
 */
export async function startOutageIdp(portalOrigin: string, accessTokenTtlSeconds: number): Promise<OutageIdp> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const clientId = 'portal-outage';
  const clientSecret = `secret-for-outage-${'x'.repeat(24)}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const configuration: Configuration = {
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'outage-key', use: 'sig', alg: 'RS256' }] },
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
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    async findAccount(_ctx, sub) {
      return { accountId: sub, claims: async () => ({ sub, email: 'ext.ea@corp.example', email_verified: true, name: 'External EA' }) };
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => OUTAGE_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: async () => ({
          scope: 'access:stable access:ea',
          audience: OUTAGE_AUDIENCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTokenTtlSeconds,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
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
      grant.addResourceScope(OUTAGE_AUDIENCE, 'access:stable access:ea');
      await grant.save();
      return grant;
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (_ctx, err) => console.error('outage idp error', err));

  const state = { tokenRequests: 0 };
  const app = new Koa();
  app.use(async (ctx, next) => {
    if (ctx.path === '/token') state.tokenRequests += 1;
    const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (!match) return next();
    await provider.interactionDetails(ctx.req, ctx.res);
    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: 'ext-ea' } }, { mergeWithLastSubmission: false });
    ctx.redirect(redirectTo);
  });
  app.use(mount(provider));
  const answer = app.callback();

  let mode: IdpMode = 'up';
  const held = new Set<ServerResponse>();
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    if (mode === 'hang') {
      held.add(res);
      return;
    }
    void answer(req, res);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const listen = () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const unlisten = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  const releaseHeld = () => {
    for (const res of held) res.socket?.destroy();
    held.clear();
  };
  await listen();

  return {
    issuer,
    clientId,
    clientSecret,
    get tokenRequests() {
      return state.tokenRequests;
    },
    async set(next) {
      if (next === mode) return;
      if (mode === 'hang') releaseHeld();
      if (next === 'down') await unlisten();
      if (mode === 'down') await listen();
      mode = next;
    },
    async close() {
      releaseHeld();
      if (server.listening) await unlisten();
    },
  };
}
