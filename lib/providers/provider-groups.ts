import { UnauthenticatedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { accessTokenClaims } from '../oidc/claims.ts';
import type { TokenSet } from '../oidc/relying-party.ts';
import { mapGroups } from './group-rules.ts';
import type { ProviderGroupSync } from './group-sync.ts';
import { GroupsClaimError, readGroupsClaim } from './groups-claim.ts';
import type { ProviderConfig } from './provider-config.ts';

export interface GroupsOwner {
  userId: number;
  /** How the audit log names the user (email, else subject). */
  who: string;
}

/**
 * Turns what a token response says about the user's provider groups into their provider-managed
 * memberships (ProviderGroupSync), at sign-in and at every refresh.
 *
 * - At sign-in the ID token is always there: no groups claim in it (nor in the access token) means
 *   no groups, so every membership from this provider goes.
 * - At a refresh the provider may send no new ID token; if the access token does not carry the
 *   claim either, the response says nothing about groups and the memberships stay as they are.
 * - A claim that is not a list of names, or lists more than MAX_PROVIDER_GROUPS, removes every
 *   membership from this provider (a sync must fail closed) and refuses the sign-in (403) or ends
 *   the session at the refresh (401).
 * - A provider without a groups claim configured manages no memberships: any it had go.
 */
export class ProviderGroups {
  constructor(
    private readonly sync: ProviderGroupSync,
    private readonly log: Logger,
  ) {}

  async atSignIn(provider: ProviderConfig, owner: GroupsOwner, tokens: TokenSet): Promise<void> {
    await this.apply(provider, owner, tokens, 'sign-in');
  }

  async atRefresh(provider: ProviderConfig, owner: GroupsOwner, fresh: TokenSet): Promise<void> {
    try {
      await this.apply(provider, owner, fresh, 'refresh');
    } catch (err) {
      if (!(err instanceof GroupsClaimError)) throw err;
      throw new UnauthenticatedError('Your session has ended: the identity provider sent groups Atrium cannot use. Sign in again, or ask an administrator.', { cause: err, code: 'groups_claim_invalid' });
    }
  }

  private async apply(provider: ProviderConfig, owner: GroupsOwner, tokens: TokenSet, when: 'sign-in' | 'refresh'): Promise<void> {
    const replace = (groups: readonly string[]) => this.sync.replace({ userId: owner.userId, who: owner.who, provider: provider.id, groups });
    if (!provider.groupsClaim) {
      await replace([]);
      return;
    }
    let list: ReturnType<typeof readGroupsClaim>;
    try {
      list = readGroupsClaim(provider.groupsClaim, tokens.idClaims, accessTokenClaims(tokens.accessToken));
    } catch (err) {
      if (err instanceof GroupsClaimError) {
        this.log.warn({ provider: provider.id, userId: owner.userId, when, reason: err.message }, 'groups claim refused; provider memberships removed');
        await replace([]);
      }
      throw err;
    }
    if (list === undefined && when === 'refresh' && tokens.idToken === undefined) return;
    const mapped = mapGroups(list?.names ?? [], provider.groupRules);
    if (mapped.refusedBuiltins.length > 0 || mapped.unusable.length > 0 || (list?.skipped ?? 0) > 0) {
      this.log.warn(
        { provider: provider.id, userId: owner.userId, builtinRefused: mapped.refusedBuiltins.slice(0, 20), unusable: mapped.unusable.length, skipped: list?.skipped ?? 0 },
        'some provider groups were not mapped (a wildcard never grants a built-in group; names must make valid group names)',
      );
    }
    await replace(mapped.groups);
  }
}
