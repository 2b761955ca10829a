import type { RelyingParty, TokenSet } from '../../lib/oidc/relying-party.ts';

const REMEMBER_MS = 60_000;

/**
 * One refresh per refresh token, however many requests notice the expiry at once: they all wait
 * for the same exchange. The result is remembered for a minute under the old refresh token, so a
 * request that read the session just before the new tokens were saved reuses them instead of
 * presenting an already-rotated refresh token (which a provider treats as theft).
 */
export class TokenRefresher {
  private readonly inFlight = new Map<string, { result: Promise<TokenSet>; until: number }>();
  private count = 0;

  constructor(private readonly rp: RelyingParty) {}

  /** How many refreshes reached the provider (tests and metrics). */
  get refreshes(): number {
    return this.count;
  }

  refresh(refreshToken: string): Promise<TokenSet> {
    const now = Date.now();
    for (const [token, entry] of this.inFlight) if (entry.until < now) this.inFlight.delete(token);
    const existing = this.inFlight.get(refreshToken);
    if (existing) return existing.result;
    this.count += 1;
    const result = this.rp.refresh(refreshToken);
    const entry = { result, until: Number.POSITIVE_INFINITY };
    this.inFlight.set(refreshToken, entry);
    result.then(
      () => (entry.until = Date.now() + REMEMBER_MS),
      () => this.inFlight.delete(refreshToken),
    );
    return result;
  }
}
