/** A readiness probe must answer before a balancer's own timeout (commonly 2 s and up). */
const PROBE_TIMEOUT_MS = 1_500;
/** Balancers probe every few seconds; several probing at once share one request. */
const PROBE_CACHE_MS = 1_500;

/**
 * Whether the identity provider answers right now: a GET of its discovery document (cheap, static)
 * within PROBE_TIMEOUT_MS, remembered for PROBE_CACHE_MS. Discovery done once at start says
 * nothing about the provider now, so readiness asks it.
 */
export class ProviderProbe {
  private last: { at: number; result: Promise<boolean> } | undefined;
  private readonly url: URL;

  constructor(issuer: URL) {
    // The OpenID Connect rule: the well-known path goes after the issuer's own path.
    this.url = new URL(`${issuer.href.replace(/\/$/, '')}/.well-known/openid-configuration`);
  }

  /** Never rejects: an error, a non-2xx answer or no answer in time is `false`. */
  answers(): Promise<boolean> {
    const now = Date.now();
    if (this.last && now - this.last.at < PROBE_CACHE_MS) return this.last.result;
    const result = this.ask();
    this.last = { at: now, result };
    return result;
  }

  private async ask(): Promise<boolean> {
    try {
      const response = await fetch(this.url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS), redirect: 'manual', headers: { Accept: 'application/json' } });
      await response.body?.cancel();
      return response.ok;
    } catch {
      return false;
    }
  }
}
