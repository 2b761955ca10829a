import { BadRequestError } from './errors.ts';

/**
 * Refuses request paths that could mean one thing to the portal's dispatcher and another to a child
 * app or a file server behind it: dot segments (raw or percent-encoded), encoded slashes and
 * backslashes, raw backslashes, doubled slashes, NUL and other control characters, and malformed
 * percent-encoding. What passes has exactly the segments it appears to have, so the tier the portal
 * gates is the tier the app serves. Refusing (400) is safer than normalising: a normalised path
 * is a second opinion about the URL, and the app behind would still see the first.
 */
export function assertSafePath(rawPath: string): void {
  if (!rawPath.startsWith('/')) throw hostile('the path must start with "/"');
  if (rawPath.includes('//')) throw hostile('empty path segments ("//") are not allowed');
  // Fast path: nothing encoded, no dots or backslashes — the common case costs one regex.
  if (!/[%.\\\x00-\x1f\x7f]/.test(rawPath)) return;
  for (const segment of rawPath.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw hostile('the path has malformed percent-encoding');
    }
    if (decoded === '.' || decoded === '..') throw hostile('dot segments are not allowed');
    if (/[\\/\x00-\x1f\x7f]/.test(decoded)) throw hostile('encoded slashes, backslashes and control characters are not allowed');
    // A second round of decoding must not reveal anything either (double-encoding tricks).
    if (decoded.includes('%')) {
      let twice: string;
      try {
        twice = decodeURIComponent(decoded);
      } catch {
        continue;
      }
      if (twice === '.' || twice === '..' || /[\\/\x00-\x1f\x7f]/.test(twice)) throw hostile('double-encoded path tricks are not allowed');
    }
  }
}

function hostile(reason: string): BadRequestError {
  return new BadRequestError(`This address cannot be used: ${reason}.`, { code: 'bad_path' });
}
