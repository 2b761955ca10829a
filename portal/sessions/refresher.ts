import { AtriumError, UnauthenticatedError } from '../../lib/errors.ts';
import type { RelyingParty, TokenSet } from '../../lib/oidc/relying-party.ts';
import type { PortalSession } from '../http/context.ts';

/** What a refresh is for: the session's user and provider (absent: the first provider). */
export type RefreshOwner = Pick<PortalSession, 'uid' | 'sub' | 'email' | 'provider'>;

export interface RefresherHooks {
  /** The relying party of the provider a session belongs to; undefined: that provider is no longer configured. */
  rpFor?: (provider: string | undefined) => RelyingParty | undefined;
  /**
   * Runs once per refresh, before any request waiting on it carries on (the provider's groups are
   * synced here, so the request already sees them). A 401 from it ends the session, like the
   * provider refusing the grant.
   */
  afterRefresh?: (owner: RefreshOwner, fresh: TokenSet) => Promise<void>;
  /** Where the session's provider reads levels (its ACCESS_CLAIM) and whether its tokens grant them. */
  levelSettingsFor?: (provider: string | undefined) => { accessClaim: string; tokenGrantsLevel: boolean } | undefined;
}

/** How long a refresh result is shared at most; never past the access token it returned, though. */
const REMEMBER_MS = 60_000;
/** After a failed refresh, requests get that failure at once for this long rather than ask again. */
const RETRY_AFTER_FAILURE_MS = 5_000;

/** A refusal of the grant (revoked, expired, reused) is the provider's answer, not an outage. */
const refused = (err: unknown) => err instanceof AtriumError && err.status === 401;

/**
 * One refresh per refresh token, however many requests notice the expiry at once: they all wait
 * for the same exchange. The result is remembered under the old refresh token, so a request that
 * read the session just before the new tokens were saved reuses them instead of presenting an
 * already-rotated refresh token (which a provider treats as theft) — for a minute at most, and
 * never past the new access token's expiry: a remembered result must not hand out an expired token.
 *
 * A failure is remembered too, for a few seconds, so that while the provider is down the requests
 * of a session do not each wait for it; and it tells whether the provider is down (providerDown).
 */
export class TokenRefresher {
  private readonly remembered = new Map<string, { result: Promise<TokenSet>; until: number }>();
  private count = 0;
  private down = false;

  constructor(
    private readonly rp: RelyingParty,
    private readonly hooks: RefresherHooks = {},
  ) {}

  /** How many refreshes reached the provider (tests and metrics). */
  get refreshes(): number {
    return this.count;
  }

  /** How the session's provider reads levels from tokens; undefined: as RenewalDeps says (one provider). */
  levelSettingsFor(provider: string | undefined): { accessClaim: string; tokenGrantsLevel: boolean } | undefined {
    return this.hooks.levelSettingsFor?.(provider);
  }

  /** Whether the last refresh to finish failed for want of an answer from the provider. */
  get providerDown(): boolean {
    return this.down;
  }

  refresh(refreshToken: string, owner?: RefreshOwner): Promise<TokenSet> {
    const now = Date.now();
    for (const [token, entry] of this.remembered) if (entry.until <= now) this.remembered.delete(token);
    const existing = this.remembered.get(refreshToken);
    if (existing) return existing.result;
    this.count += 1;
    const result = this.exchange(refreshToken, owner);
    const entry = { result, until: Number.POSITIVE_INFINITY };
    this.remembered.set(refreshToken, entry);
    result.then(
      (fresh) => {
        this.down = false;
        entry.until = Math.min(Date.now() + REMEMBER_MS, fresh.expiresAt ?? Number.POSITIVE_INFINITY);
      },
      (err: unknown) => {
        this.down = !refused(err);
        entry.until = Date.now() + RETRY_AFTER_FAILURE_MS;
      },
    );
    return result;
  }

  private async exchange(refreshToken: string, owner: RefreshOwner | undefined): Promise<TokenSet> {
    const rp = this.hooks.rpFor ? this.hooks.rpFor(owner?.provider) : this.rp;
    if (!rp) throw new UnauthenticatedError('The way you signed in is no longer offered here; please sign in again.', { code: 'provider_removed' });
    const fresh = await rp.refresh(refreshToken);
    if (owner && this.hooks.afterRefresh) await this.hooks.afterRefresh(owner, fresh);
    return fresh;
  }
}
