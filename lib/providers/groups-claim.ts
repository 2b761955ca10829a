import { ForbiddenError } from '../errors.ts';
import { readClaim } from '../oidc/claims.ts';

/**
 * The most provider groups one sign-in may carry. Entra ID stops putting groups in a token at 200
 * (it sends an overage claim instead) and Okta at 100; a claim beyond this is not a directory but a
 * flood, and the sign-in (or refresh) is refused rather than cut at an arbitrary name.
 */
export const MAX_PROVIDER_GROUPS = 1_000;
/** Longer names are not groups anyone administers; they are skipped (and counted), not refused. */
export const MAX_GROUP_NAME_CHARS = 256;

/** A groups claim Atrium will not read: the sign-in or refresh it came with ends with a 403. */
export class GroupsClaimError extends ForbiddenError {
  constructor(claim: string, why: string) {
    super(`The identity provider sent a "${claim}" claim Atrium cannot use (${why}). Ask an administrator to check the provider's group settings.`, { claim }, 'groups_claim_invalid');
  }
}

export interface ProviderGroupList {
  names: string[];
  /** Names skipped: empty, over MAX_GROUP_NAME_CHARS, or holding control characters. */
  skipped: number;
}

/**
 * What the tokens say about the user's provider groups: the claim in the ID token, else in the
 * access token (a JWT's claims; an opaque one has none). `undefined` when neither carries it.
 *
 * Only a list of strings is a groups claim. A string, an object, numbers, `null` or nested lists
 * are refused whole (GroupsClaimError): a provider sending those is misconfigured or tampered
 * with, and guessing what it meant could grant a group nobody granted.
 */
export function readGroupsClaim(claimName: string, idClaims: Record<string, unknown>, accessClaims: Record<string, unknown>): ProviderGroupList | undefined {
  const fromId = readClaim(idClaims, claimName);
  const value = fromId !== undefined ? fromId : readClaim(accessClaims, claimName);
  if (value === undefined) {
    // Entra ID's "overage": too many groups for a token, so it names a Graph call instead. Reading
    // that as "no groups" would quietly take every group away; say what is wrong instead.
    if (overage(idClaims, claimName) || overage(accessClaims, claimName)) {
      throw new GroupsClaimError(claimName, 'the provider sent a reference to look the groups up elsewhere (too many groups for a token); have it send only the groups assigned to this application');
    }
    return undefined;
  }
  if (!Array.isArray(value)) throw new GroupsClaimError(claimName, `a list of group names was expected, got ${describe(value)}`);
  if (value.length > MAX_PROVIDER_GROUPS) throw new GroupsClaimError(claimName, `${value.length} groups, more than the ${MAX_PROVIDER_GROUPS} Atrium accepts`);
  const names = new Set<string>();
  let skipped = 0;
  for (const item of value) {
    if (typeof item !== 'string') throw new GroupsClaimError(claimName, `the list holds ${describe(item)}, not only names`);
    // Control characters have no place in a name someone administers; such a name is not a group.
    if (item.trim() === '' || item.length > MAX_GROUP_NAME_CHARS || /[\u0000-\u001f\u007f]/.test(item)) skipped += 1;
    else names.add(item);
  }
  return { names: [...names], skipped };
}

function overage(claims: Record<string, unknown>, claimName: string): boolean {
  const names = claims._claim_names;
  return names !== null && typeof names === 'object' && Object.hasOwn(names, claimName);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a nested list';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}
