import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Local accounts' passwords, hashed with scrypt. The stored form names its parameters
 * (`scrypt$N$r$p$salt$hash`) so they can be raised later without breaking old hashes.
 */
const N = 16384;
const R = 8;
const P = 1;
const KEY_LENGTH = 32;

function scrypt(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCallback(password.normalize('NFKC'), salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, { N, r: R, p: P });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** A well-formed hash to compare against when the account does not exist, so timing says nothing. */
const DUMMY_HASH = `scrypt$${N}$${R}$${P}$${Buffer.alloc(16).toString('base64url')}$${Buffer.alloc(KEY_LENGTH).toString('base64url')}`;

export async function verifyPassword(password: string, stored: string | null | undefined): Promise<boolean> {
  const parts = (stored ?? DUMMY_HASH).split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [, n, r, p, salt, expected] = parts as [string, string, string, string, string, string];
  const want = Buffer.from(expected, 'base64url');
  const got = await scrypt(password, Buffer.from(salt, 'base64url'), { N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024 });
  return stored != null && want.length === got.length && timingSafeEqual(want, got);
}

/** The shortest password accepted wherever one is set (CLI, console, password change, reset link). */
export const MIN_PASSWORD_LENGTH = 12;
/** The sign-in form reads at most this many characters of a password, so none longer could be used. */
export const MAX_PASSWORD_LENGTH = 1024;

let common: Set<string> | undefined;
async function commonPasswords(): Promise<Set<string>> {
  common ??= new Set((await import('./common-passwords.ts')).COMMON_PASSWORDS_TEXT.split('\n').filter(Boolean));
  return common;
}

/** Rows of keys and runs of characters: a password that is a stretch of one of them is a walk, not a secret. */
const WALKS = [
  'qwertyuiopasdfghjklzxcvbnm', 'qwertyuiop[]', "asdfghjkl;'", 'zxcvbnm,./', 'qwertyuiop', 'asdfghjkl', 'zxcvbnm', 'qwertzuiop', 'yxcvbnm', 'azertyuiop', 'qsdfghjklm', 'wxcvbn',
  '1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p', 'qazwsxedcrfvtgbyhnujmikolp', '1q2w3e4r5t6y7u8i9o0p',
  'abcdefghijklmnopqrstuvwxyz', '01234567890', '1234567890', '!@#$%^&*()',
].flatMap((walk) => [walk, [...walk].reverse().join('')]);

/** Whether `text` is one piece over and over (`aaaaaaaaaaaa`, `abcabcabcabc`, `trustno1trustno1`). */
function repeats(text: string): boolean {
  const chars = [...text];
  for (let size = 1; size <= chars.length / 2; size++) {
    if (chars.length % size !== 0) continue;
    const unit = chars.slice(0, size).join('');
    if (unit.repeat(chars.length / size) === text) return true;
  }
  return false;
}

/** Whether every step of `text` is a step along one of the walks (`qwertyuiopas`, `987654321098`). */
function isWalk(text: string): boolean {
  if (text.length < 4) return false;
  for (let i = 0; i + 1 < text.length; i++) {
    const pair = text.slice(i, i + 2);
    if (!WALKS.some((walk) => walk.includes(pair))) return false;
  }
  return true;
}

/**
 * Why a new password is refused, or undefined when it is fine. Checked wherever a password is set:
 * at least 12 characters (and at most 1,024, what the sign-in form reads); not one of the 10,000
 * most common passwords, nor one of them with digits or symbols around it (`Password2024!`); not
 * the site's name or the account's own address with digits around it; not one character or piece
 * repeated; not a keyboard walk or a run like `abcdef…` or `123456…`. The message never
 * repeats the password.
 */
export async function passwordProblem(password: string, context: { email?: string | null | undefined; siteName?: string } = {}): Promise<string | undefined> {
  const normal = password.normalize('NFKC');
  const length = [...normal].length;
  if (length < MIN_PASSWORD_LENGTH) return `A password has at least ${MIN_PASSWORD_LENGTH} characters (this one has ${length}). A few unrelated words make a good one.`;
  if (password.length > MAX_PASSWORD_LENGTH) return `A password has at most ${MAX_PASSWORD_LENGTH} characters.`;
  const lower = normal.toLowerCase();
  const compact = lower.replace(/[\s._-]+/g, '');
  // What is left once digits and symbols around the letters go: `Password2024!` → `password`.
  const core = lower.replace(/^[^\p{L}]+|[^\p{L}]+$/gu, '');
  const list = await commonPasswords();
  if (list.has(lower) || list.has(compact) || (core.length >= 4 && list.has(core))) {
    return 'That password is one of the most common passwords (or one with digits or symbols added), so it is among the first an attacker tries. Choose another: a few unrelated words make a good one.';
  }
  const own = [context.siteName ?? 'atrium', context.email?.split('@')[0] ?? '']
    .map((word) => word.normalize('NFKC').toLowerCase())
    .filter((word) => word.length >= 3);
  const email = context.email?.normalize('NFKC').toLowerCase();
  if (own.includes(core) || own.includes(compact.replace(/^[^\p{L}]+|[^\p{L}]+$/gu, '')) || (email && lower.includes(email))) {
    return 'A password must not be the name of this site or the account’s own e-mail address (with or without digits added). Choose another.';
  }
  if (repeats(compact) || isWalk(compact)) {
    return 'That password is a repeated character or pattern, a keyboard walk or a run like "abcdef" or "123456". Choose another: a few unrelated words make a good one.';
  }
  return undefined;
}
