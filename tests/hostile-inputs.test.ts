import { describe, expect, it } from 'vitest';
import { BadRequestError } from '../lib/errors.ts';
import { highest, levelFromGrants, reaches, scopesForLevel } from '../lib/levels.ts';
import { readClaim, levelFromTokens } from '../lib/oidc/claims.ts';
import { assertSafePath } from '../lib/paths.ts';
import { safeReturnTo } from '../lib/return-to.ts';

describe('returnTo is only ever a same-origin path', () => {
  it.each([
    ['/apps/ea/notes/?x=1#top', '/apps/ea/notes/?x=1#top'],
    ['/', '/'],
    ['/me', '/me'],
  ])('keeps %s', (input, expected) => expect(safeReturnTo(input)).toBe(expected));

  it.each([
    'https://evil.example/',
    'http:evil.example',
    '//evil.example/path',
    '///evil.example',
    '/\\evil.example',
    '\\\\evil.example',
    '/%2F%2Fevil.example',
    '/%2fevil.example',
    '%2F%2Fevil.example',
    '/%5Cevil.example',
    '/%5cevil.example',
    '/%255C%255Cevil.example'.replace('%255C%255C', '%5C%5C'),
    'javascript:alert(1)',
    '/.//evil.example',
    '/..//evil.example',
    '/a/..//evil.example',
    '/%2e//evil.example',
    ' /apps',
    '/apps\r\nSet-Cookie: x=1',
    '/apps\u0000',
    '/%E0%A4%A',
    '',
    'apps/ea',
    '/login?returnTo=//evil',
    '/logout',
    '/auth/callback?code=x',
    '/' + 'a'.repeat(3000),
  ])('sends %j to /', (input) => expect(safeReturnTo(input)).toBe('/'));

  it('ignores non-strings (repeated query parameters arrive as arrays)', () => {
    expect(safeReturnTo(['/a', '//evil'])).toBe('/');
    expect(safeReturnTo(undefined)).toBe('/');
    expect(safeReturnTo({ toString: () => '/x' })).toBe('/');
  });
});

describe('request paths that could confuse dispatch are refused', () => {
  it.each([
    '/apps/ea/notes/../../devel/inspector/',
    '/apps/ea/notes/%2e%2e/%2e%2e/devel/inspector/',
    '/apps/ea/notes/%2E%2E/x',
    '/apps/ea/notes/.%2e/x',
    '/apps/./devel/inspector/',
    '/apps/ea%2fnotes/',
    '/apps/ea%2Fnotes/',
    '/apps/ea/notes%5c..%5c..%5cdevel/',
    '/apps/ea/notes\\..\\devel/',
    '/apps//devel/inspector/',
    '/apps/devel/inspector/%00',
    '/apps/devel/inspector/a\u0000b',
    '/apps/ea/notes/%252e%252e/',
    '/apps/ea/notes/%252f',
    '/apps/ea/notes/%E0%A4%A',
    'apps/ea/notes/',
  ])('refuses %j with 400', (path) => {
    expect(() => assertSafePath(path)).toThrow(BadRequestError);
    try {
      assertSafePath(path);
    } catch (err) {
      expect((err as BadRequestError).status).toBe(400);
    }
  });

  it.each(['/', '/apps/ea/notes/', '/apps/ea/notes/api/notes', '/apps/ea/notes/file.name.txt', '/apps/ea/notes/%20space', '/idp/.well-known/openid-configuration'])(
    'lets %j through',
    (path) => expect(() => assertSafePath(path)).not.toThrow(),
  );
});

describe('levels from grants', () => {
  it('takes the highest access:* value from strings and arrays', () => {
    expect(levelFromGrants('openid access:ea profile access:stable')).toBe('ea');
    expect(levelFromGrants(['access:devel', 'access:admin'])).toBe('admin');
    expect(levelFromGrants('openid profile')).toBeNull();
  });

  it('ignores look-alikes and junk', () => {
    expect(levelFromGrants('admin')).toBeNull(); // a bare role may mean something else at the provider
    expect(levelFromGrants('access:Admin access:root access:admin2 xaccess:admin')).toBeNull();
    expect(levelFromGrants([1, null, { scope: 'access:admin' }, ['access:admin']])).toBeNull();
    expect(levelFromGrants(42)).toBeNull();
    expect(levelFromGrants('access:__proto__ access:constructor access:toString')).toBeNull();
  });

  it('orders levels and derives scopes', () => {
    expect(reaches('admin', 'devel')).toBe(true);
    expect(reaches('ea', 'devel')).toBe(false);
    expect(reaches(null, 'stable')).toBe(false);
    expect(highest(null, 'ea', 'stable', undefined)).toBe('ea');
    expect(scopesForLevel('devel')).toEqual(['access:stable', 'access:ea', 'access:devel']);
    expect(scopesForLevel(null)).toEqual([]);
  });

  it('reads namespaced and nested claims', () => {
    const claims = { 'https://atrium.example.com/roles': ['access:ea'], realm_access: { roles: ['access:devel'] }, permissions: ['access:stable'] };
    expect(readClaim(claims, 'https://atrium.example.com/roles')).toEqual(['access:ea']);
    expect(readClaim(claims, 'realm_access.roles')).toEqual(['access:devel']);
    expect(readClaim(claims, 'realm_access.__proto__')).toBeUndefined();
    expect(readClaim(claims, 'missing.path')).toBeUndefined();
    expect(levelFromTokens({ accessClaims: claims, idClaims: {}, grantedScope: 'access:admin', accessClaim: 'permissions' })).toBe('stable');
    expect(levelFromTokens({ accessClaims: {}, idClaims: {}, grantedScope: 'openid access:ea', accessClaim: 'scope' })).toBe('ea');
  });
});
