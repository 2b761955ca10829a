/** Access levels, lowest first. A user at level L opens every tier at or below L. */
export const LEVELS = ['stable', 'ea', 'devel', 'admin'] as const;
export type Level = (typeof LEVELS)[number];

/** The tiers apps can live in: every level but admin (admin opens everything). */
export const TIERS = ['stable', 'ea', 'devel'] as const;
export type Tier = (typeof TIERS)[number];

const RANK: Record<Level, number> = { stable: 0, ea: 1, devel: 2, admin: 3 };

export function isLevel(value: unknown): value is Level {
  return typeof value === 'string' && Object.hasOwn(RANK, value);
}

export function isTier(value: unknown): value is Tier {
  return isLevel(value) && value !== 'admin';
}

/** Rank of a level; no level ranks below every level. */
export function rank(level: Level | null): number {
  return level === null ? -1 : RANK[level];
}

export function highest(...levels: (Level | null | undefined)[]): Level | null {
  let best: Level | null = null;
  for (const level of levels) if (level && rank(level) > rank(best)) best = level;
  return best;
}

export function reaches(level: Level | null, needed: Level): boolean {
  return rank(level) >= RANK[needed];
}

const SCOPE_PREFIX = 'access:';

/**
 * The highest level named by a set of grants. Accepts what identity providers put in a claim:
 * a space-separated `scope` string, an array (Auth0 `permissions`, Keycloak roles), or a single string.
 * Only `access:<level>` counts: a bare role such as `admin` may mean something else at the provider.
 */
export function levelFromGrants(value: unknown): Level | null {
  const items = typeof value === 'string' ? value.split(/\s+/) : Array.isArray(value) ? value : [];
  let best: Level | null = null;
  for (const item of items) {
    if (typeof item !== 'string') continue;
    if (!item.startsWith(SCOPE_PREFIX)) continue;
    const name = item.slice(SCOPE_PREFIX.length);
    if (isLevel(name) && rank(name) > rank(best)) best = name;
  }
  return best;
}

/** The scopes that carry a level: `access:stable` … `access:admin`. */
export const ACCESS_SCOPES = LEVELS.map((level) => `${SCOPE_PREFIX}${level}`);

/** Every scope up to and including `level`, so a token for `devel` also says `access:ea` etc. */
export function scopesForLevel(level: Level | null): string[] {
  return level === null ? [] : LEVELS.slice(0, rank(level) + 1).map((l) => `${SCOPE_PREFIX}${l}`);
}
