import { tokenRefreshDue, touchIntervalMs, type SessionLimits } from '../../../lib/sessions/lifetime.ts';
import type { SessionStore } from '../../../lib/sessions/store.ts';
import type { PortalSession } from '../../http/context.ts';
import type { SessionIdentity } from '../../sessions/reader.ts';
import { renewTokens, type RenewalDeps } from '../../sessions/token-renewal.ts';

type StoredPortalSession = PortalSession & { _expire?: number; _maxAge?: number };

/**
 * What the portal pipeline does for a session on each request (idle touch, token refresh), done
 * for requests that arrive on an app origin, where koa-session never runs: the portal session is
 * edited in the store directly, and only when something is due. False when the session has ended.
 * With `touch: false`, the tokens alone: for a session kept by its open sockets (socket-sessions.ts),
 * which are not activity.
 */
export function sessionKeeper(deps: { store: SessionStore; limits: SessionLimits; renewal: RenewalDeps; touch?: boolean }) {
  const { store, limits, renewal } = deps;
  // Without `touch` (open sockets: not activity), only the tokens are kept current.
  const touchEvery = deps.touch === false ? Number.POSITIVE_INFINITY : touchIntervalMs(limits);
  return async (identity: SessionIdentity, now = Date.now()): Promise<boolean> => {
    const session = identity.session as StoredPortalSession;
    const changes: Partial<StoredPortalSession> = {};
    if (tokenRefreshDue(session.tokens, now)) {
      const renewed = await renewTokens(session, renewal, now);
      if (renewed === 'ended') {
        await store.destroy(identity.sessionId);
        return false;
      }
      if (renewed) Object.assign(changes, renewed);
    }
    if (now - (session.seenAt ?? session.authAt) > touchEvery) changes.seenAt = now;
    if (Object.keys(changes).length === 0) return true;
    const maxAge = typeof session._maxAge === 'number' ? session._maxAge : limits.lifetimeMs;
    // koa-session keeps `_expire` in the data: written as it would be on a save from the portal origin.
    const data = { ...session, ...changes, _expire: now + maxAge };
    return store.update(identity.sessionId, data, maxAge, { subject: session.sub, idpSid: session.idpSid ?? null });
  };
}
