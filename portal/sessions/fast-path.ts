import Keygrip from 'keygrip';
import type { AtriumUser } from '../../lib/app-kit.ts';
import { sessionEnded, tokenRefreshDue, touchIntervalMs, type SessionLimits } from '../../lib/sessions/lifetime.ts';
import type { SessionStore, StoredSession } from '../../lib/sessions/store.ts';
import type { PortalSession } from '../http/context.ts';
import { SESSION_ID } from './cookie-session.ts';
import { signedInSession, userFromSession, type UserResolver } from './user.ts';

const MAX_REMEMBERED_SIGNATURES = 20_000;

/** Who a request on the fast lane is (portal/apps/fast-lane.ts): what the ordinary path would put in ctx.state. */
export interface SignedIn {
  user: AtriumUser;
  userId: number;
  csrf: string;
}

/** The Cookie header names the cookie more than once: the ordinary path deals with that (it signs the visitor out). */
const TWICE = null;

/**
 * One cookie's value read from a raw Cookie header exactly as the `cookies` module reads it (a
 * name at the start or after `;` and any spaces, the value up to the next `;`), or TWICE when the
 * name comes more than once (a copy planted with a narrower Path: see carriesTwice).
 */
export function cookieValue(header: string, name: string): string | undefined | typeof TWICE {
  const needle = `${name}=`;
  let found: string | undefined;
  for (let at = header.indexOf(needle); at >= 0; at = header.indexOf(needle, at + 1)) {
    let i = at - 1;
    while (i >= 0 && header.charCodeAt(i) === 0x20) i--;
    if (i >= 0 && header.charCodeAt(i) !== 0x3b) continue;
    if (found !== undefined) return TWICE;
    const start = at + needle.length;
    const end = header.indexOf(';', start);
    found = end < 0 ? header.slice(start) : header.slice(start, end);
  }
  return found;
}

/**
 * Recognises a signed-in request whose session needs nothing done to it, without koa-session:
 * the session cookie and its signature read from the raw header, the signature checked against the
 * newest key (and remembered per session id, so the HMAC is recomputed only for cookies not seen
 * recently), the session from the store's cache, its limits, and the user it stands for now.
 * Anything else — no cookie or two, an older key's signature, a session due for a token refresh or
 * an idle-timeout touch, an ended or disabled one — is `undefined`: the ordinary path handles it
 * completely. The outcome is the same either way; only the cost differs.
 */
export class FastSessions {
  private readonly signatureCookie: string;
  private readonly touchEvery: number;
  /** The signature each session id was last verified with under the newest key. */
  private readonly verified = new Map<string, string>();
  private readonly keygrip: Keygrip;

  constructor(
    private readonly deps: {
      store: SessionStore & { peek?(id: string): { readonly session: StoredSession | undefined } | undefined };
      resolver: UserResolver;
      limits: SessionLimits;
      /** The session cookie's name (see sessionCookieName). */
      cookie: string;
      /** The session signing keys, newest first, as Koa's `app.keys` holds them (set once, at start-up). */
      keys: readonly string[] | Keygrip;
    },
  ) {
    this.signatureCookie = `${deps.cookie}.sig`;
    this.touchEvery = touchIntervalMs(deps.limits);
    this.keygrip = Array.isArray(deps.keys) ? new Keygrip([...deps.keys]) : (deps.keys as Keygrip);
  }

  /** Sync when the store's cache holds the session (the usual case). */
  fromCookies(header: string | undefined): SignedIn | undefined | Promise<SignedIn | undefined> {
    if (!header) return undefined;
    const id = cookieValue(header, this.deps.cookie);
    if (!id || !SESSION_ID.test(id)) return undefined;
    const signature = cookieValue(header, this.signatureCookie);
    if (!signature) return undefined;
    // The signature this id was last seen with under the newest key (no string built per request).
    if (this.verified.get(id) !== signature) {
      // Index 0 is the newest key; a cookie signed with an older one goes the ordinary way (re-signed there).
      if (this.keygrip.index(`${this.deps.cookie}=${id}`, signature) !== 0) return undefined;
      if (this.verified.size >= MAX_REMEMBERED_SIGNATURES) this.verified.clear();
      this.verified.set(id, signature);
    }
    const cached = this.deps.store.peek?.(id);
    return cached ? this.check(cached.session) : this.deps.store.get(id).then((stored) => this.check(stored));
  }

  private check(stored: StoredSession | undefined): SignedIn | undefined {
    const data = stored?.data as (PortalSession & { _expire?: number }) | undefined;
    const session = signedInSession(data);
    if (!session || !data) return undefined;
    const now = Date.now();
    if ((data._expire !== undefined && data._expire < now) || sessionEnded(session, this.deps.limits, now)) return undefined;
    if (now - (session.seenAt ?? session.authAt) > this.touchEvery) return undefined;
    if (tokenRefreshDue(session.tokens, now)) return undefined;
    const user = userFromSession(session, this.deps.resolver);
    return user && { user, userId: session.uid, csrf: session.csrf };
  }
}
