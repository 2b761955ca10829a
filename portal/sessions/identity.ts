import type { Config } from '../../lib/config.ts';
import { ACCESS_SCOPES } from '../../lib/levels.ts';
import type { Logger } from '../../lib/log.ts';
import { isClientCredentialsToken } from '../../lib/oidc/claims.ts';
import { RelyingParty } from '../../lib/oidc/relying-party.ts';
import { localKeys, remoteKeys, TokenVerifier } from '../../lib/oidc/token-verifier.ts';
import { embeddedProviderSessions } from '../../lib/sessions/provider-sessions.ts';
import type { Directory } from '../directory/directory.ts';
import type { Views } from '../http/views.ts';
import { createEmbeddedProvider, type EmbeddedProvider } from '../idp/provider.ts';
import type { Storage } from '../storage/storage.ts';
import { TokenRefresher } from './refresher.ts';

/** Who signs users in (the embedded provider or an external one) and how its tokens are checked. */
export interface Identity {
  /** The embedded provider at /idp; undefined with OIDC_ISSUER. */
  embedded: EmbeddedProvider | undefined;
  rp: RelyingParty;
  /** Checks the provider's JWTs: bearer tokens and back-channel logout tokens. */
  verifier: TokenVerifier;
  refresher: TokenRefresher;
  /** The audience bearer tokens must carry. */
  audience: string | undefined;
  /** Whether a token's scopes grant a level (external providers); the embedded provider's users get theirs from the directory. */
  tokenGrantsLevel: boolean;
}

export async function buildIdentity(deps: { config: Config; storage: Storage; directory: Directory; views: Views; log: Logger }): Promise<Identity> {
  const { config, storage, directory, views, log } = deps;
  const origin = config.publicUrl.origin;
  const embedded =
    config.oidc.issuer === undefined
      ? await createEmbeddedProvider({ config, sessionKeys: storage.sessionKeys, database: storage.database, users: directory.users, access: directory.access, views, log })
      : undefined;
  // Revoking a user's sessions must end the embedded provider's too, or its cookie signs them back in.
  if (embedded) storage.sessions.providerSessions = embeddedProviderSessions(storage.database);
  const rp = new RelyingParty({
    issuer: embedded?.issuer ?? (config.oidc.issuer as URL),
    clientId: embedded?.client.id ?? config.oidc.clientId,
    clientSecret: embedded?.client.secret ?? config.oidc.clientSecret,
    redirectUri: `${origin}/auth/callback`,
    // The embedded provider grants `access:*` scopes only when asked for them.
    scope: embedded ? `${config.oidc.scope} ${ACCESS_SCOPES.join(' ')}` : config.oidc.scope,
    audience: embedded ? undefined : config.oidc.audience,
    accessClaim: config.oidc.accessClaim,
    logoutUrl: config.oidc.logoutUrl,
  });
  // The provider's JWTs (bearer tokens, logout tokens): the embedded provider's keys are local; an
  // external provider's come from its JWKS, cached and refetched when it rotates keys.
  let remote: ReturnType<typeof remoteKeys> | undefined;
  const verifier = new TokenVerifier({
    issuer: async () => (await rp.provider()).issuer,
    keys: async () => {
      if (embedded) return localKeys(embedded.publicJwks);
      remote ??= remoteKeys((await rp.provider()).jwksUri ?? '');
      return remote;
    },
    // The embedded provider's user tokens carry a copy of the directory taken at sign-in: the live
    // directory decides for its users, and only its machine clients' scopes are theirs to grant.
    tokenGrantsLevel: embedded ? isClientCredentialsToken : () => true,
  });
  return {
    embedded,
    rp,
    verifier,
    refresher: new TokenRefresher(rp),
    audience: embedded?.audience ?? config.oidc.audience,
    tokenGrantsLevel: !embedded,
  };
}
