import type { AtriumUser } from './app-kit.ts';
import { reaches, type Tier } from './levels.ts';

/** What the gate needs to know about an app. */
export interface GatedApp {
  tier: Tier;
  groups: readonly string[];
  /** The app's manifest: `mfa: true` asks for a sign-in with a second factor. */
  manifest?: { mfa?: boolean | undefined };
}

export type GateDecision =
  | { allowed: true }
  | { allowed: false; status: 401 }
  | { allowed: false; status: 403; reason: 'level' | 'groups' | 'mfa' };

const ALLOWED: GateDecision = { allowed: true };
const NEEDS_SECOND_FACTOR: GateDecision = { allowed: false, status: 403, reason: 'mfa' };

/**
 * The access rule, in one place for HTTP, websockets, socket.io and the launcher: signed in, a
 * level that reaches the app's tier, and — when the app names groups — membership of one of them.
 * Admins pass the level and group checks. An app with `"mfa": true` also needs a session whose
 * sign-in used a second factor — admins' included: that is a property of the sign-in, not a grant.
 */
export function decide(user: AtriumUser | undefined, app: GatedApp): GateDecision {
  if (!user) return { allowed: false, status: 401 };
  if (user.level !== 'admin') {
    if (!reaches(user.level, app.tier)) return { allowed: false, status: 403, reason: 'level' };
    if (app.groups.length > 0 && !app.groups.some((g) => user.groups.includes(g))) {
      return { allowed: false, status: 403, reason: 'groups' };
    }
  }
  if (app.manifest?.mfa === true && user.mfa !== true) return NEEDS_SECOND_FACTOR;
  return ALLOWED;
}
