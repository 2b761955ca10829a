import { Secret, TOTP } from 'otpauth';

/**
 * Time-based one-time passwords (RFC 6238 through otpauth): SHA-1, 6 digits, 30-second steps, as
 * every authenticator app expects. A code is accepted for the step before and after the current
 * one (clock drift); older ones have expired.
 */
const PERIOD_S = 30;
const DIGITS = 6;
const WINDOW = 1;
const ISSUER = 'Atrium';

function totp(secret: string, label = ''): TOTP {
  return new TOTP({ issuer: ISSUER, label, algorithm: 'SHA1', digits: DIGITS, period: PERIOD_S, secret: Secret.fromBase32(secret) });
}

/** A new shared secret (160 random bits, base32). */
export function newTotpSecret(): string {
  return new Secret({ size: 20 }).base32;
}

/** The `otpauth://` URI an authenticator app scans (the QR code's content). */
export function totpUri(secret: string, account: string): string {
  return totp(secret, account).toString();
}

/** The time step a code is valid for at `now`, or undefined when it is wrong or has expired. */
export function totpStep(secret: string, code: string, now = Date.now()): number | undefined {
  const token = code.replace(/\s+/g, '');
  if (!/^\d{6}$/.test(token)) return undefined;
  const delta = totp(secret).validate({ token, timestamp: now, window: WINDOW });
  if (delta === null) return undefined;
  return Math.floor(now / 1000 / PERIOD_S) + delta;
}
