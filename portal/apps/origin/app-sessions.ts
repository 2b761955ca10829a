import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { SessionStore } from '../../../lib/sessions/store.ts';
import { hostOnlyCookieName } from '../../sessions/cookie-session.ts';
import type { SessionIdentity, SessionReader } from '../../sessions/reader.ts';

/** Seconds, not minutes: the hand-off is one redirect and one form post away. */
export const HANDOFF_TTL_MS = 30_000;
const ID = /^[A-Za-z0-9_-]{43}$/;
export const HANDOFF_STATE = /^[A-Za-z0-9_-]{22,64}$/;

/**
 * The app origin's cookies, host-only on the app's host (`__Host-` over https): its own session
 * (`atrium.app`), a redeemed code waiting for the browser's state (`atrium.pending`, seconds long),
 * and that state, the browser-side half of a hand-off (`atrium.handoff`).
 */
export const appCookieName = (secure: boolean): string => hostOnlyCookieName('atrium.app', secure);
export const pendingCookieName = (secure: boolean): string => hostOnlyCookieName('atrium.pending', secure);
export const handoffCookieName = (secure: boolean): string => hostOnlyCookieName('atrium.handoff', secure);

type HandoffRecord = {
  handoff: { portal: string; app: string; state: string; returnTo: string };
};
type AppSessionRecord = {
  /** `pending` (the state it waits for, and where to go) until the browser that asked confirms it. */
  appSession: { portal: string; app: string; pending?: { state: string; returnTo: string } };
};

export const newId = (): string => randomBytes(32).toString('base64url');

/**
 * Sessions of app origins. An app origin never sees the portal's cookie: after a hand-off it holds
 * its own random id, which the store maps to the portal session it came from. Every request on the
 * app origin looks that portal session up again, so whatever ends or narrows the portal session
 * (logout, revocation, demotion, a disabled account, idle and absolute limits) ends the app
 * origin's access on its next request; there is nothing on the app side to revoke separately.
 */
export class AppOriginSessions {
  constructor(
    private readonly store: SessionStore,
    private readonly reader: SessionReader,
    private readonly lifetimeMs: number,
    readonly secure: boolean,
  ) {}

  /** A single-use code for `app` (`tier/name`), bound to the portal session and the browser's state. */
  async issueCode(portalSessionId: string, app: string, state: string, returnTo: string): Promise<string> {
    const code = newId();
    const record: HandoffRecord = { handoff: { portal: portalSessionId, app, state, returnTo } };
    await this.store.set(code, record, HANDOFF_TTL_MS, { subject: null });
    return code;
  }

  /**
   * Redeems a code on the app origin it was made for: consumed whatever the outcome (a second try
   * finds nothing), and turned into a *pending* app session only while its portal session is alive.
   * The code arrives in a cross-site form post, which carries no SameSite=Lax cookie, so the
   * browser's state is checked in the next step (confirm), a same-site GET that does carry it.
   */
  async redeem(code: string, app: string): Promise<string | undefined> {
    if (!ID.test(code)) return undefined;
    const taken = await this.store.take(code);
    const record = (taken?.data as Partial<HandoffRecord> | undefined)?.handoff;
    if (!record || record.app !== app) return undefined;
    if (!(await this.reader.readById(record.portal))) return undefined;
    const appSessionId = newId();
    const session: AppSessionRecord = { appSession: { portal: record.portal, app, pending: { state: record.state, returnTo: record.returnTo } } };
    await this.store.set(appSessionId, session, HANDOFF_TTL_MS, { subject: null });
    return appSessionId;
  }

  /**
   * Confirms a pending app session in the browser that started the hand-off (its state cookie
   * matches): from then on it is a session. Another browser's code (login CSRF) stops here.
   */
  async confirm(pendingId: string | undefined, app: string, state: string | undefined): Promise<{ appSessionId: string; returnTo: string } | undefined> {
    if (!pendingId || !ID.test(pendingId) || !state) return undefined;
    const taken = await this.store.take(pendingId);
    const record = (taken?.data as Partial<AppSessionRecord> | undefined)?.appSession;
    if (!record?.pending || record.app !== app || record.pending.state !== state) return undefined;
    if (!(await this.reader.readById(record.portal))) return undefined;
    const appSessionId = newId();
    const session: AppSessionRecord = { appSession: { portal: record.portal, app } };
    await this.store.set(appSessionId, session, this.lifetimeMs, { subject: null });
    return { appSessionId, returnTo: record.pending.returnTo };
  }

  /** The portal session behind an app session id, if both still stand and the id belongs to `app`. */
  async identify(appSessionId: string | undefined, app: string): Promise<SessionIdentity | undefined> {
    if (!appSessionId || !ID.test(appSessionId)) return undefined;
    const stored = await this.store.get(appSessionId);
    const record = (stored?.data as Partial<AppSessionRecord> | undefined)?.appSession;
    if (!record || record.app !== app || record.pending) return undefined;
    return this.reader.readById(record.portal);
  }

  /** Ends one app origin's session (its sign-out); the portal session is not touched. */
  async end(appSessionId: string): Promise<void> {
    if (ID.test(appSessionId)) await this.store.destroy(appSessionId);
  }

  /** The app session id a raw request carries (socket.io handshakes, websocket upgrades). */
  idOf(req: IncomingMessage): string | undefined {
    return this.reader.signedCookie(req, appCookieName(this.secure));
  }

  async identifyRequest(req: IncomingMessage, app: string): Promise<SessionIdentity | undefined> {
    return this.identify(this.idOf(req), app);
  }
}
