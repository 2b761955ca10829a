import { describe, expect, it } from 'vitest';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { decide, type GatedApp } from '../../lib/gate.ts';
import { ACCESS_SCOPES, highest, isLevel, isTier, LEVELS, levelFromGrants, rank, reaches, scopesForLevel, TIERS, type Level } from '../../lib/levels.ts';

describe('levels', () => {
  it('orders the levels stable < ea < devel < admin, and tiers are every level but admin', () => {
    expect([...LEVELS]).toEqual(['stable', 'ea', 'devel', 'admin']);
    expect([...TIERS]).toEqual(['stable', 'ea', 'devel']);
    expect([rank(null), rank('stable'), rank('ea'), rank('devel'), rank('admin')]).toEqual([-1, 0, 1, 2, 3]);
  });

  it('recognises exactly the four level names', () => {
    for (const level of ['stable', 'ea', 'devel', 'admin']) expect(isLevel(level), level).toBe(true);
    for (const value of ['Admin', 'ADMIN', ' admin', 'root', '', 'toString', '__proto__', 'constructor', 'hasOwnProperty', null, undefined, 3, {}, ['admin']]) {
      expect(isLevel(value), String(value)).toBe(false);
    }
  });

  it('recognises the three tiers, never admin', () => {
    for (const tier of ['stable', 'ea', 'devel']) expect(isTier(tier), tier).toBe(true);
    for (const value of ['admin', 'toString', '', 'Stable', null, 1]) expect(isTier(value), String(value)).toBe(false);
  });

  it('picks the highest of several levels, ignoring missing ones', () => {
    expect(highest()).toBeNull();
    expect(highest(null, undefined)).toBeNull();
    expect(highest('stable')).toBe('stable');
    expect(highest(null, 'ea', undefined)).toBe('ea');
    expect(highest('devel', 'ea')).toBe('devel');
    expect(highest('ea', 'devel', 'stable')).toBe('devel');
    expect(highest('stable', 'admin', 'devel')).toBe('admin');
    expect(highest('ea', 'ea')).toBe('ea');
  });

  it('says whether a level reaches another, with no level reaching nothing', () => {
    const table: [Level | null, Level, boolean][] = [
      [null, 'stable', false],
      ['stable', 'stable', true],
      ['stable', 'ea', false],
      ['ea', 'stable', true],
      ['ea', 'ea', true],
      ['ea', 'devel', false],
      ['devel', 'ea', true],
      ['devel', 'devel', true],
      ['devel', 'admin', false],
      ['admin', 'admin', true],
      ['admin', 'devel', true],
      ['admin', 'stable', true],
    ];
    for (const [level, needed, expected] of table) expect(reaches(level, needed), `${level} reaches ${needed}`).toBe(expected);
  });

  it('reads the highest access:<level> grant from a scope string, an array or one string', () => {
    expect(levelFromGrants('openid profile access:ea email')).toBe('ea');
    expect(levelFromGrants('access:ea access:devel access:stable')).toBe('devel');
    expect(levelFromGrants('access:admin access:ea')).toBe('admin');
    expect(levelFromGrants('access:stable\taccess:devel\naccess:ea')).toBe('devel');
    expect(levelFromGrants('  access:ea   openid ')).toBe('ea');
    expect(levelFromGrants('access:stable')).toBe('stable');
    expect(levelFromGrants(['read:things', 'access:devel', 'access:ea'])).toBe('devel');
    expect(levelFromGrants(['access:ea', 'access:ea'])).toBe('ea');
  });

  it('counts only access:<level> grants, never bare roles or near misses', () => {
    for (const value of ['admin', 'openid admin devel', 'access:root', 'access:', 'access:Admin', 'ACCESS:admin', 'xaccess:admin', 'access:admin2', 'access:toString', 'access:__proto__', 'scope:access:admin', '']) {
      expect(levelFromGrants(value), value).toBeNull();
    }
    expect(levelFromGrants(['admin', 'devel'])).toBeNull();
    expect(levelFromGrants([])).toBeNull();
  });

  it('ignores values of other types, and non-strings inside an array', () => {
    for (const value of [undefined, null, 42, true, { scope: 'access:admin' }]) expect(levelFromGrants(value)).toBeNull();
    expect(levelFromGrants([7, null, { level: 'admin' }, ['access:admin'], 'access:ea'])).toBe('ea');
  });

  it('names the scopes that carry levels, and every scope up to a level', () => {
    expect(ACCESS_SCOPES).toEqual(['access:stable', 'access:ea', 'access:devel', 'access:admin']);
    expect(scopesForLevel(null)).toEqual([]);
    expect(scopesForLevel('stable')).toEqual(['access:stable']);
    expect(scopesForLevel('ea')).toEqual(['access:stable', 'access:ea']);
    expect(scopesForLevel('devel')).toEqual(['access:stable', 'access:ea', 'access:devel']);
    expect(scopesForLevel('admin')).toEqual(['access:stable', 'access:ea', 'access:devel', 'access:admin']);
  });
});

function user(level: Level | null, groups: string[] = []): AtriumUser {
  return { sub: `sub-${level}`, email: null, name: null, picture: null, level, groups, profile: {} };
}

describe('the gate', () => {
  const app = (tier: GatedApp['tier'], groups: string[] = []): GatedApp => ({ tier, groups });

  it('sends someone who is not signed in to sign in (401)', () => {
    expect(decide(undefined, app('stable'))).toEqual({ allowed: false, status: 401 });
    expect(decide(undefined, app('devel', ['team']))).toEqual({ allowed: false, status: 401 });
  });

  it('lets a level open every tier at or below it, and refuses the ones above with reason "level"', () => {
    const refused = { allowed: false, status: 403, reason: 'level' };
    expect(decide(user(null), app('stable'))).toEqual(refused);
    expect(decide(user('stable'), app('stable'))).toEqual({ allowed: true });
    expect(decide(user('stable'), app('ea'))).toEqual(refused);
    expect(decide(user('ea'), app('stable'))).toEqual({ allowed: true });
    expect(decide(user('ea'), app('ea'))).toEqual({ allowed: true });
    expect(decide(user('ea'), app('devel'))).toEqual(refused);
    expect(decide(user('devel'), app('devel'))).toEqual({ allowed: true });
  });

  it('requires membership of one of the groups an app names, after the level', () => {
    const groupsRefused = { allowed: false, status: 403, reason: 'groups' };
    expect(decide(user('ea', []), app('ea', ['team-a']))).toEqual(groupsRefused);
    expect(decide(user('ea', ['team-b']), app('ea', ['team-a']))).toEqual(groupsRefused);
    expect(decide(user('ea', ['team-b']), app('ea', ['team-a', 'team-b']))).toEqual({ allowed: true });
    expect(decide(user('ea', ['team-a', 'other']), app('ea', ['team-a']))).toEqual({ allowed: true });
    expect(decide(user('ea', ['team-a']), app('stable', ['team-a']))).toEqual({ allowed: true });
    // The level is checked first: a member of the group without the level is refused for the level.
    expect(decide(user('stable', ['team-a']), app('ea', ['team-a']))).toEqual({ allowed: false, status: 403, reason: 'level' });
    // A group name is matched exactly.
    expect(decide(user('ea', ['team-a2', 'Team-a']), app('ea', ['team-a']))).toEqual(groupsRefused);
  });

  it('lets admins through every gate, groups or not', () => {
    expect(decide(user('admin'), app('devel'))).toEqual({ allowed: true });
    expect(decide(user('admin', []), app('devel', ['team-a']))).toEqual({ allowed: true });
    expect(decide(user('admin', []), app('stable', ['team-a']))).toEqual({ allowed: true });
  });
});
