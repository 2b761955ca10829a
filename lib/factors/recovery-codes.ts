import { createHash, randomInt } from 'node:crypto';

/** Ten codes of ten characters (about 50 bits each) from an alphabet without look-alikes (0/O, 1/I/L). */
const COUNT = 10;
const ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ';
const LENGTH = 10;

/** Fresh recovery codes, shown once as `XXXXX-XXXXX`. */
export function newRecoveryCodes(): string[] {
  return Array.from({ length: COUNT }, () => {
    const chars = Array.from({ length: LENGTH }, () => ALPHABET[randomInt(ALPHABET.length)]).join('');
    return `${chars.slice(0, 5)}-${chars.slice(5)}`;
  });
}

/** What is stored of a code: the SHA-256 of its canonical form (upper case, no spaces or dashes). */
export function recoveryCodeHash(code: string): string {
  return createHash('sha256').update(canonicalRecoveryCode(code)).digest('hex');
}

export function canonicalRecoveryCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]+/g, '');
}

/** Whether typed text has the shape of a recovery code (rather than a six-digit TOTP code). */
export function looksLikeRecoveryCode(text: string): boolean {
  const c = canonicalRecoveryCode(text);
  return c.length === LENGTH && [...c].every((ch) => ALPHABET.includes(ch));
}
