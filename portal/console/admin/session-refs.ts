import { createHash } from 'node:crypto';

/**
 * How the console names a session: a digest of its id, never the id itself. The id is what the
 * browser's cookie holds, so it stays out of admin pages, URLs (confirmation links) and their logs;
 * the digest finds the session again among the user's own.
 */
export function sessionRef(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 22);
}

/** The user's session a reference names, if it is still one of theirs. */
export function sessionByRef(ids: string[], ref: string): string | undefined {
  return ref ? ids.find((id) => sessionRef(id) === ref) : undefined;
}
