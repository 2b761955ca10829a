import type { Config } from '../../lib/config.ts';
import { AtriumError } from '../../lib/errors.ts';
import { ACCESS_SCOPES } from '../../lib/levels.ts';
import type { Logger } from '../../lib/log.ts';
import { isClientCredentialsToken } from '../../lib/oidc/claims.ts';
import { RelyingParty } from '../../lib/oidc/relying-party.ts';
import { localKeys, remoteKeys, TokenVerifier } from '../../lib/oidc/token-verifier.ts';
import { ProviderGroupSync } from '../../lib/providers/group-sync.ts';
import { ProviderAccounts } from '../../lib/providers/provider-accounts.ts';
import type { ProviderConfig } from '../../lib/providers/provider-config.ts';
import { ProviderGroups } from '../../lib/providers/provider-groups.ts';
import { embeddedProviderSessions } from '../../lib/sessions/provider-sessions.ts';
import type { Directory } from '../directory/directory.ts';
import type { Views } from '../http/views.ts';
import { createEmbeddedProvider, type EmbeddedProvider } from '../idp/provider.ts';
import type { Storage } from '../storage/storage.ts';
import { ProviderTokens } from './provider-tokens.ts';
import { TokenRefresher } from './refresher.ts';
import { SignInProviders, type SignInProvider } from './sign-in-providers.ts';

/** Who signs users in (the embedded provider, external ones, or both) and how their tokens are checked. */
export interface Identity {
  /** The embedded provider at /idp; undefined when no configured provider is the embedded one. */
  embedded: EmbeddedProvider | undefined;
  /** Every configured provider; the first is the one a session that names none belongs to. */
  providers: SignInProviders;
  /** The first provider's relying party (readiness asks it). */
  rp: RelyingParty;
  /** Checks providers' JWTs, each with its issuer's keys: bearer tokens and back-channel logout tokens. */
  verifier: ProviderTokens;
  refresher: TokenRefresher;
  /** Provider accounts (issuer and subject) and the users they stand for. */
  accounts: ProviderAccounts;
  /** Provider groups into provider-managed memberships, at sign-in and refresh. */
  groups: ProviderGroups;
  /** The first provider's bearer audience. */
  audience: string | undefined;
  /** Whether the first provider's token scopes grant a level (external providers); the embedded provider's users get theirs from the directory. */
  tokenGrantsLevel: boolean;
}

export async function buildIdentity(deps: { config: Config; storage: Storage; directory: Directory; views: Views; log: Logger }): Promise<Identity> {
  const { config, storage, directory, views, log } = deps;
  const origin = config.publicUrl.origin;
  const embedded = config.providers.some((p) => p.embedded)
    ? await createEmbeddedProvider({ config, sessionKeys: storage.sessionKeys, database: storage.database, users: directory.users, access: directory.access, views, log })
    : undefined;
  // Revoking a user's sessions must end the embedded provider's too, or its cookie signs them back in.
  if (embedded) storage.sessions.providerSessions = embeddedProviderSessions(storage.database);

  const signInProvider = (settings: ProviderConfig): SignInProvider => {
    const own = settings.embedded ? embedded : undefined;
    const rp = new RelyingParty({
      issuer: own?.issuer ?? (settings.issuer as URL),
      clientId: own?.client.id ?? settings.clientId,
      clientSecret: own?.client.secret ?? settings.clientSecret,
      redirectUri: `${origin}/auth/callback`,
      // The embedded provider grants `access:*` scopes only when asked for them.
      scope: own ? `${settings.scope} ${ACCESS_SCOPES.join(' ')}` : settings.scope,
      audience: own ? undefined : settings.audience,
      accessClaim: settings.accessClaim,
      logoutUrl: settings.logoutUrl,
    });
    // The provider's JWTs (bearer tokens, logout tokens): the embedded provider's keys are local; an
    // external provider's come from its JWKS, cached and refetched when it rotates keys.
    let remote: ReturnType<typeof remoteKeys> | undefined;
    const verifier = new TokenVerifier({
      issuer: async () => (await rp.provider()).issuer,
      keys: async () => {
        if (own) return localKeys(own.publicJwks);
        remote ??= remoteKeys((await rp.provider()).jwksUri ?? '');
        return remote;
      },
      // The embedded provider's user tokens carry a copy of the directory taken at sign-in: the live
      // directory decides for its users, and only its machine clients' scopes are theirs to grant.
      tokenGrantsLevel: own ? isClientCredentialsToken : () => true,
    });
    return { config: settings, rp, verifier, tokenGrantsLevel: !own, audience: own?.audience ?? settings.audience };
  };
  const providers = new SignInProviders(config.providers.map(signInProvider));

  const accounts = new ProviderAccounts(storage.database, directory.users);
  const groups = new ProviderGroups(new ProviderGroupSync({ database: storage.database, audit: directory.audit, log, onChange: () => directory.watcher.refresh() }), log);
  const refresher = new TokenRefresher(providers.primary.rp, {
    rpFor: (id) => providers.of(id)?.rp,
    levelSettingsFor: (id) => {
      const provider = providers.of(id);
      return provider && { accessClaim: provider.config.accessClaim, tokenGrantsLevel: provider.tokenGrantsLevel };
    },
    afterRefresh: async (owner, fresh) => {
      const provider = providers.of(owner.provider);
      if (!provider || provider.config.embedded) return;
      try {
        await groups.atRefresh(provider.config, { userId: owner.uid, who: owner.email ?? owner.sub }, fresh);
      } catch (err) {
        // A groups claim that cannot be used ends the session; a database that cannot take the sync
        // must not throw away the tokens the provider just rotated: the next refresh syncs again.
        if (err instanceof AtriumError && err.status === 401) throw err;
        log.error({ err, sub: owner.sub }, 'provider groups could not be synced at a token refresh');
      }
    },
  });
  return {
    embedded,
    providers,
    rp: providers.primary.rp,
    verifier: new ProviderTokens(providers, accounts),
    refresher,
    accounts,
    groups,
    audience: providers.primary.audience,
    tokenGrantsLevel: providers.primary.tokenGrantsLevel,
  };
}
