import type { AtriumUser } from '../../lib/app-kit.ts';
import { BadRequestError } from '../../lib/errors.ts';
import { LEVELS, type Level } from '../../lib/levels.ts';

/**
 * Byte budgets for what an upstream app receives about its user. Servers limit headers: nginx and
 * gunicorn 8 KB per header line, Node 16 KB for all of them together. Within these budgets the
 * identity headers come to about 3.5 KB at most and the assertion (which repeats the scalars and
 * the groups as JSON, then base64url) to about 6 KB, leaving Node room for the browser's own.
 */
export const IDENTITY_BUDGET = Object.freeze({
  /**
   * X-Atrium-User, -Email, -Name each; also the e-mail's and name's JSON in the assertion. A subject
   * over it is refused rather than left out (see upstreamIdentity); the assertion always carries it.
   */
  scalarBytes: 512,
  /** The groups list, counted as JSON (`"name",` per group), which also bounds the header. */
  groupsBytes: 2048,
  /** X-Atrium-Profile (base64url JSON); not in the assertion. */
  profileBytes: 2048,
});

/** What the signed assertion says, beside issuer, audience and times: the same as the headers. */
export interface AssertionClaims {
  /** Always there: an assertion never stands for nobody. */
  sub: string;
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

/**
 * Visible ASCII but `%`: a header carries it exactly, and nothing needs decoding. `%` is left out
 * so that a value sent as is never holds one: an upstream that decodes every value (as the old
 * contract had it: everything percent-encoded) still reads `a%40b@x` right, sent as `a%2540b%40x`.
 */
const HEADER_SAFE = /^[\x21-\x24\x26-\x7e]*$/;
const BUILT_IN_GROUPS: readonly string[] = LEVELS;

/**
 * The identity headers and assertion claims for `user` at an app whose manifest names
 * `manifestGroups`:
 *
 * - `X-Atrium-User`, `X-Atrium-Email`: the value exactly when it is visible ASCII without `%`
 *   (subjects and nearly every address are); anything else is percent-encoded (UTF-8) and
 *   `X-Atrium-Encoded` names the header (`user`, `email`), so a plain value is never decoded by
 *   mistake, and one decoded anyway comes out the same.
 * - `X-Atrium-Name`: always percent-encoded (names are often not ASCII). `X-Atrium-Level` as is.
 * - `X-Atrium-Groups`: the groups the manifest names, then the built-in level groups, then the rest
 *   in order, as many as fit the budget; `X-Atrium-Groups-Omitted` says how many were left out.
 * - `X-Atrium-Profile`: base64url JSON, left out when over budget.
 * - `X-Atrium-Omitted`: the headers left out for size (`email`, `name`, `profile`), when any.
 *
 * The subject is never left out: an upstream told of a user without one would see nobody, or
 * whoever a missing header means to it. One too long for a header (SUBJECT_TOO_LONG) is refused.
 */
export function upstreamIdentity(user: AtriumUser, manifestGroups: readonly string[]): UpstreamIdentity {
  const headers: Record<string, string> = {};
  const encoded: string[] = [];
  const omitted: string[] = [];

  // First, and before any other work: a subject that cannot be sent refuses the request.
  const subPlain = HEADER_SAFE.test(user.sub);
  const subHeader = subPlain ? user.sub : encodeURIComponent(user.sub);
  if (subHeader.length > IDENTITY_BUDGET.scalarBytes) throw subjectTooLong();
  headers['x-atrium-user'] = subHeader;
  if (!subPlain) encoded.push('user');
  const claims: AssertionClaims = { sub: user.sub, level: user.level, groups: [] };

  const scalar = (field: 'email' | 'name', value: string | null, alwaysEncode: boolean): boolean => {
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

/** The code of the 400 for a subject no header can carry (over IDENTITY_BUDGET.scalarBytes as written). */
export const SUBJECT_TOO_LONG = 'subject_too_long';

function subjectTooLong(): BadRequestError {
  return new BadRequestError(
    `Your account's identifier is longer than the ${IDENTITY_BUDGET.scalarBytes} bytes an app can be told, so this app cannot be told who you are. Ask an administrator.`,
    { code: SUBJECT_TOO_LONG },
  );
}

/**
 * The groups an app is told about, in this order: the ones its manifest names (what it gates on
 * and most likely reads), then the built-in level groups, then the rest; each in the user's order
 * and taken while it fits the budget.
 */
function chooseGroups(groups: readonly string[], manifestGroups: readonly string[]): { listed: string[]; left: number } {
  const wanted = new Set(manifestGroups);
  const builtIn = new Set(BUILT_IN_GROUPS);
  const byPreference = [
    ...groups.filter((g) => wanted.has(g)),
    ...groups.filter((g) => !wanted.has(g) && builtIn.has(g)),
    ...groups.filter((g) => !wanted.has(g) && !builtIn.has(g)),
  ];
  const listed: string[] = [];
  let bytes = 2; // the JSON array's brackets
  for (const group of byPreference) {
    const cost = encodeURIComponent(group).length + 3; // quotes and a comma
    if (bytes + cost > IDENTITY_BUDGET.groupsBytes) continue;
    bytes += cost;
    listed.push(group);
  }
  return { listed, left: groups.length - listed.length };
}

const MAX_USERS_PER_APP = 10_000;

interface Cached {
  identity: UpstreamIdentity;
  email: string | null;
  name: string | null;
  level: Level | null;
  groups: readonly string[];
  profile: unknown;
  /** The profile as JSON, for a profile object that is new but says the same (see `of`). */
  profileJson: string;
  manifestGroups: readonly string[];
}

/**
 * Identities per app and user, so a request pays a lookup and a few reference comparisons, not
 * an encoding of a thousand groups. The directory hands out the same frozen groups array and
 * profile object until something changes, so any change (a new group, a profile edit, a new
 * manifest) makes the entry stale at the next request. A profile object that is new but equal
 * (the profile cache's refresh re-reads rows, a session's own copy) is compared by content, once
 * for that object, and the entry kept: the identity (and with it the signed assertion, whose
 * cache is keyed on these claims) stays the same.
 */
export class UpstreamIdentities {
  private readonly byApp = new Map<string, Map<string, Cached>>();

  of(user: AtriumUser, app: string, manifestGroups: readonly string[]): UpstreamIdentity {
    let users = this.byApp.get(app);
    if (!users) this.byApp.set(app, (users = new Map()));
    const hit = users.get(user.sub);
    let profileJson: string | undefined;
    if (
      hit &&
      hit.groups === user.groups &&
      hit.manifestGroups === manifestGroups &&
      hit.level === user.level &&
      hit.email === user.email &&
      hit.name === user.name
    ) {
      if (hit.profile === user.profile) return hit.identity;
      profileJson = JSON.stringify(user.profile);
      if (profileJson === hit.profileJson) {
        hit.profile = user.profile;
        return hit.identity;
      }
    }
    const identity = upstreamIdentity(user, manifestGroups);
    if (users.size >= MAX_USERS_PER_APP) users.clear();
    profileJson ??= JSON.stringify(user.profile);
    users.set(user.sub, { identity, email: user.email, name: user.name, level: user.level, groups: user.groups, profile: user.profile, profileJson, manifestGroups });
    return identity;
  }
}
