import { describe, expect, it } from 'vitest';
import { safeReturnTo } from '../../lib/return-to.ts';

describe('safeReturnTo', () => {
  it('keeps same-origin paths with their query and fragment', () => {
    expect(safeReturnTo('/')).toBe('/');
    expect(safeReturnTo('/apps/ea/chat/')).toBe('/apps/ea/chat/');
    expect(safeReturnTo('/apps/ea/chat/room?id=7&x=%2F#top')).toBe('/apps/ea/chat/room?id=7&x=%2F#top');
    expect(safeReturnTo('/profile#fields')).toBe('/profile#fields');
    expect(safeReturnTo('/caf%C3%A9')).toBe('/caf%C3%A9');
  });

  it('ends anything that is not a string at "/"', () => {
    for (const value of [undefined, null, 5, {}, ['/apps/ea/chat/'], true]) expect(safeReturnTo(value)).toBe('/');
  });

  it('ends empty and overlong values at "/", and keeps one of the largest allowed length', () => {
    expect(safeReturnTo('')).toBe('/');
    const longest = `/${'a'.repeat(2047)}`;
    expect(longest).toHaveLength(2048);
    expect(safeReturnTo(longest)).toBe(longest);
    expect(safeReturnTo(`${longest}a`)).toBe('/');
  });

  it('refuses absolute and protocol-relative URLs and other schemes', () => {
    for (const value of ['https://evil.example/', 'http://atrium.invalid/x', '//evil.example/', '///evil.example', 'javascript:alert(1)', 'evil.example', ' /x', 'x/', '%2Fevil.example', '%2f%2fevil.example']) {
      expect(safeReturnTo(value), value).toBe('/');
    }
  });

  it('refuses backslash tricks and control characters, raw or encoded', () => {
    for (const value of ['/\\evil.example', '/\\/evil.example', '\\\\evil.example', '/x\\y', '/%5cevil.example', '/%5C%5Cevil.example', '/\t/evil.example', '/x\ny', '/x\x00', '/x\x1f', '/x\x7f', '/%09/evil.example', '/x%0d%0aSet-Cookie:x', '/x%7f', '/x%00']) {
      expect(safeReturnTo(value), JSON.stringify(value)).toBe('/');
    }
  });

  it('refuses encoded protocol-relative paths', () => {
    for (const value of ['/%2F%2Fevil.example', '/%2fevil.example', '/%2F/evil.example']) expect(safeReturnTo(value), value).toBe('/');
  });

  it('refuses malformed percent-encoding', () => {
    for (const value of ['/%', '/%zz', '/%e0%a4%a']) expect(safeReturnTo(value), value).toBe('/');
  });

  it('checks again after the parser has resolved dot segments', () => {
    expect(safeReturnTo('/.//evil.example')).toBe('/');
    expect(safeReturnTo('/x/..//evil.example')).toBe('/');
    // Dot segments that stay on this origin resolve as the browser would resolve them.
    expect(safeReturnTo('/apps/ea/../stable/x')).toBe('/apps/stable/x');
  });

  it('never returns to the auth routes themselves', () => {
    for (const value of ['/login', '/login?returnTo=/x', '/logout', '/auth/callback', '/auth/callback?code=1', '/x/../login']) {
      expect(safeReturnTo(value), value).toBe('/');
    }
  });

  it('does not mistake paths that merely contain those words for the auth routes', () => {
    expect(safeReturnTo('/apps/ea/login')).toBe('/apps/ea/login');
    expect(safeReturnTo('/apps/ea/chat/?next=/logout')).toBe('/apps/ea/chat/?next=/logout');
    expect(safeReturnTo('/authors')).toBe('/authors');
    expect(safeReturnTo('/auth')).toBe('/auth');
  });
});
