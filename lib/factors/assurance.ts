/**
 * How strongly a sign-in was authenticated, as the ID token says it (`amr`, RFC 8176; `acr`). The
 * embedded provider states both; an external provider states what it does, and this decides.
 */

/** `acr` of an embedded sign-in with the password only, and with a second factor. */
export const ACR_PASSWORD = 'urn:atrium:acr:pwd';
export const ACR_SECOND_FACTOR = 'urn:atrium:acr:mfa';

/**
 * `acr` values that mean "a second factor was used": ours, and the OpenID PAPE multi-factor policy
 * that Auth0 and Okta answer with. Asked for (`acr_values`) when an app needs a second factor.
 */
export const SECOND_FACTOR_ACRS: readonly string[] = [ACR_SECOND_FACTOR, 'http://schemas.openid.net/pape/policies/2007/06/multi-factor'];

/**
 * RFC 8176 methods that are a factor besides a password: one-time codes, hardware or software
 * keys, phones, smart cards, biometrics, and the summary value `mfa` (Auth0, Entra ID).
 */
const SECOND_FACTOR_METHODS = new Set(['mfa', 'otp', 'hwk', 'swk', 'sms', 'tel', 'sc', 'fpt', 'face', 'iris', 'retina', 'vbm']);

/** Whether an authorization request's `acr_values` asks for a second factor. */
export function asksForSecondFactor(acrValues: unknown): boolean {
  return typeof acrValues === 'string' && acrValues.split(' ').some((v) => SECOND_FACTOR_ACRS.includes(v));
}

export interface Assurance {
  /** Methods the provider says it used, at most a few short strings. */
  amr?: string[];
  acr?: string;
  /** Whether that sign-in used a second factor: what an app with `"mfa": true` asks of a session. */
  mfa: boolean;
}

/** The assurance stated by ID token claims; anything that is not a list of strings counts as nothing. */
export function assuranceOf(claims: Record<string, unknown>): Assurance {
  const amr = Array.isArray(claims.amr) ? claims.amr.filter((m): m is string => typeof m === 'string' && m.length <= 32).slice(0, 10) : undefined;
  const acr = typeof claims.acr === 'string' && claims.acr.length <= 200 ? claims.acr : undefined;
  const mfa = (amr ?? []).some((m) => SECOND_FACTOR_METHODS.has(m)) || (acr !== undefined && SECOND_FACTOR_ACRS.includes(acr));
  return { ...(amr ? { amr } : {}), ...(acr ? { acr } : {}), mfa };
}
