import type { LoginTransaction } from '../../lib/oidc/relying-party.ts';
import { safeReturnTo } from '../../lib/return-to.ts';
import type { PortalContext } from '../http/context.ts';

/** How long a started sign-in may take before its callback is refused. */
const TRANSACTION_TTL_MS = 10 * 60 * 1000;
/** Sign-ins a browser may have started and not finished; beyond this the oldest goes. */
export const MAX_PENDING_SIGN_INS = 5;
/**
 * What all of them may add to the callback's Cookie header (names, values, signatures). A long
 * `returnTo` (up to 2 KB) makes one about 2.6 KB: five of those come to some 13 KB of the 16 KB
 * Node allows for all of a request's headers, so bytes are bounded as well as the count.
 */
export const MAX_PENDING_BYTES = 8 * 1024;

const STATE = /^[A-Za-z0-9_-]{16,128}$/;
/** `state!createdAt!bytes` (base 36), joined by dots: all cookie-safe characters. */
const ENTRY = /^([A-Za-z0-9_-]{16,128})!([0-9a-z]{1,11})!([0-9a-z]{1,6})$/;
const MAX_LEDGER_CHARS = 2048;
/** Length of a cookie signature (keygrip's base64url SHA-1 HMAC) in its `.sig` companion. */
const SIGNATURE_CHARS = 27;

/** What a signed cookie adds to a Cookie header: `name=value; name.sig=<signature>; `. */
function headerBytes(name: string, value: string): number {
  return `${name}=${value}; ${name}.sig=; `.length + SIGNATURE_CHARS;
}

function cookieOptions(secure: boolean, path: string) {
  return { httpOnly: true, sameSite: 'lax' as const, secure, signed: true, overwrite: true, path };
}

interface PendingSignIn {
  state: string;
  createdAt: number;
  /** What its cookie adds to the callback's Cookie header. */
  bytes: number;
}

/**
 * A browser's sign-ins in flight (state, nonce, PKCE verifier, returnTo), each in a signed, HttpOnly
 * cookie scoped to the callback path and named by its state, so anonymous visitors cost the server
 * no storage and several tabs can sign in at once.
 *
 * Every one of those cookies rides along to the callback, and a sign-in left unfinished lives for
 * ten minutes: forty abandoned /login visits made the callback's Cookie header over 18 KB, past
 * Node's 16 KB limit, and the next sign-in failed with 431. /login cannot see the callback's cookies
 * (Path), so a small ledger cookie scoped to /login lists them, and each new sign-in expires by
 * name the oldest beyond MAX_PENDING_SIGN_INS or MAX_PENDING_BYTES.
 *
 * Over https both names are `__Secure-` prefixed, so a browser takes them only from a secure origin
 * with Secure set: a plain-http sibling on the same host cannot plant a login transaction of its
 * own (which would sign the visitor in to the planter's account). Not `__Host-`: that needs Path=/.
 */
export class LoginTransactionCookies {
  private readonly transactionName: string;
  private readonly ledgerName: string;
  private readonly transactionOptions: ReturnType<typeof cookieOptions>;
  private readonly ledgerOptions: ReturnType<typeof cookieOptions>;

  constructor(secure: boolean) {
    this.transactionName = secure ? '__Secure-atrium.auth' : 'atrium.auth';
    this.ledgerName = secure ? '__Secure-atrium.login' : 'atrium.login';
    this.transactionOptions = cookieOptions(secure, '/auth/callback');
    this.ledgerOptions = cookieOptions(secure, '/login');
  }

  private cookieOf(state: string): string {
    return `${this.transactionName}.${state}`;
  }

  /** At /login: keeps the new transaction for its callback, and lets the oldest pending ones go. */
  save(ctx: PortalContext, transaction: LoginTransaction): void {
    const name = this.cookieOf(transaction.state);
    const value = Buffer.from(JSON.stringify(transaction)).toString('base64url');
    const entry = { state: transaction.state, createdAt: transaction.createdAt, bytes: headerBytes(name, value) };
    const { keep, evict } = admit(this.ledger(ctx, transaction.createdAt), entry);
    for (const old of evict) ctx.cookies.set(this.cookieOf(old.state), '', { ...this.transactionOptions, maxAge: 0 });
    ctx.cookies.set(name, value, { ...this.transactionOptions, maxAge: TRANSACTION_TTL_MS });
    ctx.cookies.set(this.ledgerName, keep.map(formatEntry).join('.'), { ...this.ledgerOptions, maxAge: TRANSACTION_TTL_MS });
  }

  /** At the callback: the transaction `state` names, if this browser started it and it is fresh; it is used up. */
  take(ctx: PortalContext, state: string): LoginTransaction | undefined {
    if (!STATE.test(state)) return undefined;
    const transaction = this.read(ctx, state);
    if (transaction) ctx.cookies.set(this.cookieOf(state), '', { ...this.transactionOptions, maxAge: 0 });
    return transaction;
  }

  private read(ctx: PortalContext, state: string): LoginTransaction | undefined {
    const raw = ctx.cookies.get(this.cookieOf(state), { signed: true });
    if (!raw) return undefined;
    try {
      const t = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as Partial<LoginTransaction>;
      if (t.state !== state || typeof t.nonce !== 'string' || typeof t.verifier !== 'string' || typeof t.createdAt !== 'number') return undefined;
      if (Date.now() - t.createdAt > TRANSACTION_TTL_MS) return undefined;
      return { ...(t as LoginTransaction), returnTo: safeReturnTo(t.returnTo) };
    } catch {
      return undefined;
    }
  }

  /** The sign-ins this browser still has pending, oldest first (expired ones are gone from it already). */
  private ledger(ctx: PortalContext, now: number): PendingSignIn[] {
    const raw = ctx.cookies.get(this.ledgerName, { signed: true });
    if (!raw || raw.length > MAX_LEDGER_CHARS) return [];
    const entries: PendingSignIn[] = [];
    for (const part of raw.split('.')) {
      const match = ENTRY.exec(part);
      if (!match) continue;
      const entry = { state: match[1] as string, createdAt: parseInt(match[2] as string, 36), bytes: parseInt(match[3] as string, 36) };
      if (now - entry.createdAt <= TRANSACTION_TTL_MS) entries.push(entry);
    }
    return entries.sort((a, b) => a.createdAt - b.createdAt);
  }
}

/**
 * The newest sign-in always stays; older ones stay, newest first, while they fit both bounds. The
 * first that does not fit goes, and every one older than it.
 */
function admit(pending: PendingSignIn[], newest: PendingSignIn): { keep: PendingSignIn[]; evict: PendingSignIn[] } {
  const older = pending.filter((p) => p.state !== newest.state);
  const keep = [newest];
  let bytes = newest.bytes;
  let cut = older.length;
  for (let i = older.length - 1; i >= 0; i--) {
    const entry = older[i] as PendingSignIn;
    if (keep.length >= MAX_PENDING_SIGN_INS || bytes + entry.bytes > MAX_PENDING_BYTES) break;
    keep.unshift(entry);
    bytes += entry.bytes;
    cut = i;
  }
  return { keep, evict: older.slice(0, cut) };
}

function formatEntry(entry: PendingSignIn): string {
  return `${entry.state}!${entry.createdAt.toString(36)}!${entry.bytes.toString(36)}`;
}
