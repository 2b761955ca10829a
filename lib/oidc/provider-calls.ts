/**
 * The longest any call to the identity provider may take — discovery, code exchange, refresh,
 * JWKS, userinfo — before it counts as an outage. Providers answer in milliseconds; a provider
 * that accepts a connection and never answers must not hold a request for longer than this.
 */
export const PROVIDER_TIMEOUT_MS = 5_000;

/**
 * A fetch for openid-client ([client.customFetch]) that gives up after `ms` whatever the library
 * asked for: its own `timeout` signal is kept, and this deadline covers reading the body as well.
 */
export function fetchWithin(ms: number): (url: string, options: RequestInit) => Promise<Response> {
  return (url, options) => {
    const deadline = AbortSignal.timeout(ms);
    return fetch(url, { ...options, signal: options.signal ? AbortSignal.any([options.signal, deadline]) : deadline });
  };
}
