import { decodeJwt } from 'jose';
import { highest, levelFromGrants, type Level } from '../levels.ts';
import type { ProviderClaims } from '../directory/users.ts';

/**
 * Reads a claim by name. A name that exists as a key is used as is (Auth0's namespaced claims are
 * URLs full of dots); otherwise dots walk into nested objects (Keycloak's `realm_access.roles`).
 */
export function readClaim(claims: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  let value: unknown = claims;
  for (const part of name.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** The access token's claims when it is a JWT; an opaque token has none. */
export function accessTokenClaims(accessToken: string | undefined): Record<string, unknown> {
  if (!accessToken) return {};
  try {
    return decodeJwt(accessToken) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/**
 * The level a token response grants: the configured claim in the access token, then in the ID
 * token; for an opaque access token, the `scope` the token endpoint reported.
 */
export function levelFromTokens(input: {
  accessClaims: Record<string, unknown>;
  idClaims: Record<string, unknown>;
  grantedScope: string | undefined;
  accessClaim: string;
}): Level | null {
  const { accessClaims, idClaims, grantedScope, accessClaim } = input;
  return highest(
    levelFromGrants(readClaim(accessClaims, accessClaim)),
    levelFromGrants(readClaim(idClaims, accessClaim)),
    accessClaim === 'scope' ? levelFromGrants(grantedScope) : null,
  );
}

/**
 * Whether an access token was issued to a client acting for itself (the client-credentials grant),
 * not to a user: RFC 9068 section 2.2 has such a token's `sub` name the client, as oidc-provider does.
 */
export function isClientCredentialsToken(claims: Record<string, unknown>): boolean {
  return typeof claims.client_id === 'string' && claims.sub === claims.client_id;
}

/** The identity fields the directory keeps, taken from ID token (or userinfo) claims. */
export function identityFromClaims(claims: Record<string, unknown>): ProviderClaims {
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const sub = text(claims.sub);
  if (!sub) throw new TypeError('the ID token has no subject');
  // An address the provider says it has not verified is not one the directory can match people by.
  const email = claims.email_verified === false ? null : text(claims.email);
  return { sub, email, name: text(claims.name), picture: text(claims.picture) };
}
