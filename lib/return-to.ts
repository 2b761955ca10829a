/**
 * Where to send someone after login: only ever a path on this origin. Anything else — absolute
 * URLs, protocol-relative `//host`, backslash tricks (`/\host`), encoded variants of those, control
 * characters, or the auth routes themselves — ends at `/`.
 */
const AUTH_ROUTES = /^\/(login|logout|auth\/)/;
const BASE = 'http://atrium.invalid';

export function safeReturnTo(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return '/';
  if (!isPlainLocalPath(value)) return '/';
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return '/';
  }
  if (!isPlainLocalPath(decoded)) return '/';
  let url: URL;
  try {
    url = new URL(value, BASE);
  } catch {
    return '/';
  }
  if (url.origin !== BASE) return '/';
  const path = `${url.pathname}${url.search}${url.hash}`;
  // The parser resolves dot segments: "/.//evil.example" becomes "//evil.example". Check again.
  if (!isPlainLocalPath(path)) return '/';
  return AUTH_ROUTES.test(url.pathname) ? '/' : path;
}

function isPlainLocalPath(value: string): boolean {
  return value.startsWith('/') && !value.startsWith('//') && !/[\\\x00-\x1f\x7f]/.test(value);
}
