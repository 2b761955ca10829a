import type { AtriumUser } from '../../lib/app-kit.ts';
import { LEVELS, type Level } from '../../lib/levels.ts';

/**
 * Byte budgets for what an upstream app receives about its user. Servers limit headers: nginx and
 * gunicorn 8 KB per header line, Node 16 KB for all of them together. Within these budgets the
 * identity headers come to about 3.5 KB at most and the assertion (which repeats the scalars and
 * the groups as JSON, then base64url) to about 6 KB, leaving Node room for the browser's own.
 */
export const IDENTITY_BUDGET = Object.freeze({
  /** X-Atrium-User, -Email, -Name each; also each value's JSON in the assertion. */
  scalarBytes: 512,
  /** The groups list, counted as JSON (`"name",` per group), which also bounds the header. */
  groupsBytes: 2048,
  /** X-Atrium-Profile (base64url JSON); not in the assertion. */
  profileBytes: 2048,
});

/** What the signed assertion says, beside issuer, audience and times: the same as the headers. */
export interface AssertionClaims {
  sub?: string;
  email?: string | null;
  name?: string | null;
  level: Level | null;
  groups: string[];
  /** How many of the user's groups the list leaves out (absent when none). */
  groups_omitted?: number;
}

/** The identity one user presents to one upstream app, computed once and reused (see UpstreamIdentities). */
export interface UpstreamIdentity {
  readonly headers: Readonly<Record<string, string>>;
  /** Stable while the identity is cached, so the signer can reuse its token for it. */
  readonly claims: Readonly<AssertionClaims>;
}

/** Visible ASCII: a header carries it exactly, and nothing needs decoding. */
const HEADER_SAFE = /^[\x21-\x7e]*$/;
const BUILT_IN_GROUPS: readonly string[] = LEVELS;

/**
 * The identity headers and assertion claims for `user` at an app whose manifest names
 * `manifestGroups`:
 *
 * - `X-Atrium-User`, `X-Atrium-Email`: the value exactly when it is visible ASCII (subjects and
 *   nearly every address are); anything else is percent-encoded (UTF-8) and `X-Atrium-Encoded`
 *   names the header (`user`, `email`), so a plain value is never decoded by mistake.
 * - `X-Atrium-Name`: always percent-encoded (names are often not ASCII). `X-Atrium-Level` as is.
 * - `X-Atrium-Groups`: the groups the manifest names, then the built-in level groups, then the rest
 *   in order, as many as fit the budget; `X-Atrium-Groups-Omitted` says how many were left out.
 * - `X-Atrium-Profile`: base64url JSON, left out when over budget.
 * - `X-Atrium-Omitted`: the headers left out for size (`user`, `email`, `name`, `profile`), when any.
 */
export function upstreamIdentity(user: AtriumUser, manifestGroups: readonly string[]): UpstreamIdentity {
  const headers: Record<string, string> = {};
  const claims: AssertionClaims = { level: user.level, groups: [] };
  const encoded: string[] = [];
  const omitted: string[] = [];

  const scalar = (field: 'user' | 'email' | 'name', value: string | null, alwaysEncode: boolean): boolean => {
    const raw = value ?? '';
    const plain = !alwaysEncode && HEADER_SAFE.test(raw);
    const header = plain ? raw : encodeURIComponent(raw);
    if (Math.max(header.length, Buffer.byteLength(JSON.stringify(value))) > IDENTITY_BUDGET.scalarBytes) {
      omitted.push(field);
      return false;
    }
    if (!plain && !alwaysEncode) encoded.push(field);
    headers[`x-atrium-${field}`] = header;
    return true;
  };
  if (scalar('user', user.sub, false)) claims.sub = user.sub;
  if (scalar('email', user.email, false)) claims.email = user.email;
  if (scalar('name', user.name, true)) claims.name = user.name;
  headers['x-atrium-level'] = user.level ?? '';

  const { listed, left } = chooseGroups(user.groups, manifestGroups);
  headers['x-atrium-groups'] = listed.map(encodeURIComponent).join(',');
  claims.groups = listed;
  if (left > 0) {
    headers['x-atrium-groups-omitted'] = String(left);
    claims.groups_omitted = left;
  }

  const profile = Buffer.from(JSON.stringify(user.profile)).toString('base64url');
  if (profile.length <= IDENTITY_BUDGET.profileBytes) headers['x-atrium-profile'] = profile;
  else omitted.push('profile');

  if (encoded.length > 0) headers['x-atrium-encoded'] = encoded.join(', ');
  if (omitted.length > 0) headers['x-atrium-omitted'] = omitted.join(', ');
  return { headers: Object.freeze(headers), claims: Object.freeze(claims) };
}

/**
 * The groups an app is told about, in the user's order: first choice the ones its manifest names
 * (what it gates on and most likely reads), then the built-in level groups, then the rest, each
 * taken while it fits the budget.
 */
function chooseGroups(groups: readonly string[], manifestGroups: readonly string[]): { listed: string[]; left: number } {
  const wanted = new Set(manifestGroups);
  const builtIn = new Set(BUILT_IN_GROUPS);
  const byPreference = [
    ...groups.filter((g) => wanted.has(g)),
    ...groups.filter((g) => !wanted.has(g) && builtIn.has(g)),
    ...groups.filter((g) => !wanted.has(g) && !builtIn.has(g)),
  ];
  const chosen = new Set<string>();
  let bytes = 2; // the JSON array's brackets
  for (const group of byPreference) {
    const cost = encodeURIComponent(group).length + 3; // quotes and a comma
    if (bytes + cost > IDENTITY_BUDGET.groupsBytes) continue;
    bytes += cost;
    chosen.add(group);
  }
  return { listed: groups.filter((g) => chosen.has(g)), left: groups.length - chosen.size };
}

const MAX_USERS_PER_APP = 10_000;

interface Cached {
  identity: UpstreamIdentity;
  email: string | null;
  name: string | null;
  level: Level | null;
  groups: readonly string[];
  profile: unknown;
  manifestGroups: readonly string[];
}

/**
 * Identities per app and user, so a request pays a lookup and a few reference comparisons, not
 * an encoding of a thousand groups. The directory hands out the same frozen groups array and
 * profile object until something changes, so any change (a new group, a profile edit, a new
 * manifest) makes the entry stale at the next request.
 */
export class UpstreamIdentities {
  private readonly byApp = new Map<string, Map<string, Cached>>();

  of(user: AtriumUser, app: string, manifestGroups: readonly string[]): UpstreamIdentity {
    let users = this.byApp.get(app);
    if (!users) this.byApp.set(app, (users = new Map()));
    const hit = users.get(user.sub);
    if (
      hit &&
      hit.groups === user.groups &&
      hit.profile === user.profile &&
      hit.manifestGroups === manifestGroups &&
      hit.level === user.level &&
      hit.email === user.email &&
      hit.name === user.name
    ) {
      return hit.identity;
    }
    const identity = upstreamIdentity(user, manifestGroups);
    if (users.size >= MAX_USERS_PER_APP) users.clear();
    users.set(user.sub, { identity, email: user.email, name: user.name, level: user.level, groups: user.groups, profile: user.profile, manifestGroups });
    return identity;
  }
}
