import { describe, expect, it } from 'vitest';
import { sessionEnded, tokenRefreshDue, touchIntervalMs } from '../../lib/sessions/lifetime.ts';

const limits = { idleMs: 30 * 60_000, lifetimeMs: 8 * 60 * 60_000 };
const T = 1_700_000_000_000;

describe('sessionEnded', () => {
  it('keeps a session alive up to and including its limits', () => {
    expect(sessionEnded({ authAt: T }, limits, T)).toBeUndefined();
    expect(sessionEnded({ authAt: T, seenAt: T }, limits, T + limits.idleMs)).toBeUndefined();
    expect(sessionEnded({ authAt: T, seenAt: T + limits.lifetimeMs - 1000 }, limits, T + limits.lifetimeMs)).toBeUndefined();
  });

  it('ends a session unused for longer than the idle timeout', () => {
    expect(sessionEnded({ authAt: T, seenAt: T }, limits, T + limits.idleMs + 1)).toBe('idle');
    expect(sessionEnded({ authAt: T - 60_000, seenAt: T }, limits, T + limits.idleMs + 1)).toBe('idle');
  });

  it('counts idleness from sign-in when the session was never seen since', () => {
    expect(sessionEnded({ authAt: T }, limits, T + limits.idleMs)).toBeUndefined();
    expect(sessionEnded({ authAt: T }, limits, T + limits.idleMs + 1)).toBe('idle');
  });

  it('uses seenAt rather than authAt once the session has been seen', () => {
    const seenAt = T + 4 * 60 * 60_000;
    expect(sessionEnded({ authAt: T, seenAt }, limits, seenAt + limits.idleMs)).toBeUndefined();
  });

  it('ends a session past its absolute lifetime however busy it is, and says so before idleness', () => {
    expect(sessionEnded({ authAt: T, seenAt: T + limits.lifetimeMs }, limits, T + limits.lifetimeMs + 1)).toBe('lifetime');
    expect(sessionEnded({ authAt: T, seenAt: T }, limits, T + limits.lifetimeMs + 1)).toBe('lifetime');
    expect(sessionEnded({ authAt: T }, { idleMs: 1_000, lifetimeMs: 500 }, T + 600)).toBe('lifetime');
  });

  it('reads the clock when no time is given', () => {
    expect(sessionEnded({ authAt: 0 }, limits)).toBe('lifetime');
    expect(sessionEnded({ authAt: Date.now() + 60_000 }, limits)).toBeUndefined();
  });
});

describe('touchIntervalMs', () => {
  it('is a tenth of the idle timeout, between one second and one minute', () => {
    expect(touchIntervalMs({ idleMs: 100_000, lifetimeMs: 0 })).toBe(10_000);
    expect(touchIntervalMs({ idleMs: 123_456, lifetimeMs: 0 })).toBe(12_345);
    expect(touchIntervalMs({ idleMs: 600_000, lifetimeMs: 0 })).toBe(60_000);
    expect(touchIntervalMs({ idleMs: 30 * 60_000, lifetimeMs: 0 })).toBe(60_000);
    expect(touchIntervalMs({ idleMs: 10_000, lifetimeMs: 0 })).toBe(1_000);
    expect(touchIntervalMs({ idleMs: 5_000, lifetimeMs: 0 })).toBe(1_000);
    expect(touchIntervalMs({ idleMs: 0, lifetimeMs: 0 })).toBe(1_000);
  });
});

describe('tokenRefreshDue', () => {
  const issuedAt = T;
  const expiresAt = T + 3_600_000; // an hour's token: refreshed a minute before it expires

  it('is never due without a refresh token or an expiry', () => {
    expect(tokenRefreshDue({ expiresAt, issuedAt }, expiresAt + 1)).toBe(false);
    expect(tokenRefreshDue({ refresh: '', expiresAt, issuedAt }, expiresAt + 1)).toBe(false);
    expect(tokenRefreshDue({ refresh: 'r', issuedAt }, expiresAt + 1)).toBe(false);
    expect(tokenRefreshDue({ refresh: 'r', expiresAt: undefined }, T)).toBe(false);
  });

  it('is due at most a minute before a long-lived token expires', () => {
    expect(tokenRefreshDue({ refresh: 'r', expiresAt, issuedAt }, expiresAt - 60_001)).toBe(false);
    expect(tokenRefreshDue({ refresh: 'r', expiresAt, issuedAt }, expiresAt - 60_000)).toBe(true);
    expect(tokenRefreshDue({ refresh: 'r', expiresAt, issuedAt }, expiresAt + 10)).toBe(true);
  });

  it('is due within a quarter of a short token’s life', () => {
    const short = { refresh: 'r', issuedAt: T, expiresAt: T + 100_000 };
    expect(tokenRefreshDue(short, T + 74_999)).toBe(false);
    expect(tokenRefreshDue(short, T + 75_000)).toBe(true);
  });

  it('assumes a four-minute life when the issue time is unknown (a minute before expiry)', () => {
    expect(tokenRefreshDue({ refresh: 'r', expiresAt }, expiresAt - 60_001)).toBe(false);
    expect(tokenRefreshDue({ refresh: 'r', expiresAt }, expiresAt - 60_000)).toBe(true);
    expect(tokenRefreshDue({ refresh: 'r', expiresAt, issuedAt: undefined }, expiresAt - 60_000)).toBe(true);
  });

  it('treats an issue time after the expiry as no margin at all', () => {
    const odd = { refresh: 'r', issuedAt: T + 10_000, expiresAt: T };
    expect(tokenRefreshDue(odd, T - 1)).toBe(false);
    expect(tokenRefreshDue(odd, T)).toBe(true);
  });

  it('reads the clock when no time is given', () => {
    expect(tokenRefreshDue({ refresh: 'r', expiresAt: Date.now() - 1 })).toBe(true);
    expect(tokenRefreshDue({ refresh: 'r', expiresAt: Date.now() + 3_600_000, issuedAt: Date.now() })).toBe(false);
  });
});
