import type { AtriumUser } from './app-kit.ts';
import { reaches, type Tier } from './levels.ts';

/** What the gate needs to know about an app. */
export interface GatedApp {
  tier: Tier;
  groups: readonly string[];
}

export type GateDecision =
  | { allowed: true }
  | { allowed: false; status: 401 }
  | { allowed: false; status: 403; reason: 'level' | 'groups' };

/**
 * The access rule, in one place for HTTP and websockets: signed in, a level that reaches the app's
 * tier, and — when the app names groups — membership of one of them. Admins pass every gate.
 */
export function decide(user: AtriumUser | undefined, app: GatedApp): GateDecision {
  if (!user) return { allowed: false, status: 401 };
  if (user.level === 'admin') return { allowed: true };
  if (!reaches(user.level, app.tier)) return { allowed: false, status: 403, reason: 'level' };
  if (app.groups.length > 0 && !app.groups.some((g) => user.groups.includes(g))) {
    return { allowed: false, status: 403, reason: 'groups' };
  }
  return { allowed: true };
}
