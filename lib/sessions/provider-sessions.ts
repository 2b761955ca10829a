import { forgetAccount } from '../db/oidc-payloads.ts';
import type { Database } from '../db/schema.ts';
import type { SessionData } from './store.ts';

/**
 * The identity provider's own sessions behind the portal's. A browser whose portal session ends
 * still holds the provider's session cookie, and the next /login signs it straight back in without
 * a password; so when an administrator revokes sessions, the provider sessions go too. Only the
 * embedded provider's can be reached: an external provider's sessions are its own business.
 */
export interface ProviderSessions {
  /** Ends every provider session (and what was granted under them) of one account; returns how many records went. */
  endAccount(sub: string): Promise<number>;
  /** Ends the provider session an ID token named by `sid` (and what was granted under it), if it is that account's. */
  endSession(sub: string, idpSid: string): Promise<number>;
}

/** The provider session a stored portal session began with (its ID token's `sid`), if it recorded one. */
export function idpSidOf(data: SessionData | undefined): string | undefined {
  return typeof data?.idpSid === 'string' && data.idpSid !== '' ? data.idpSid : undefined;
}

interface StoredProviderSession {
  accountId?: unknown;
  /** Per client: the `sid` its ID tokens carry, and the grant its tokens hang on. */
  authorizations?: Record<string, { sid?: unknown; grantId?: unknown }>;
}

/**
 * The embedded provider's sessions, in its records (`oidc_payloads`, written by portal/idp/adapter.ts).
 * A whole account goes the way a disabled account's does (forgetAccount). One session is found by
 * the `sid` it gave the portal; it goes with the grants it holds, so the refresh tokens issued
 * under it stop working too. Both are rare admin actions: scanning the session records is fine.
 */
export function embeddedProviderSessions(database: Database): ProviderSessions {
  const db = database.db;
  return {
    endAccount: (sub) => forgetAccount(database, sub),

    async endSession(sub, idpSid) {
      const rows = await db.selectFrom('oidc_payloads').select(['id', 'payload']).where('model', '=', 'Session').execute();
      let ended = 0;
      for (const row of rows) {
        let session: StoredProviderSession;
        try {
          session = JSON.parse(row.payload) as StoredProviderSession;
        } catch {
          continue;
        }
        if (session.accountId !== sub) continue;
        const authorizations = Object.values(session.authorizations ?? {});
        if (!authorizations.some((a) => a.sid === idpSid)) continue;
        for (const { grantId } of authorizations) {
          if (typeof grantId !== 'string') continue;
          await db.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
          await db.deleteFrom('oidc_payloads').where('model', '=', 'Grant').where('id', '=', grantId).execute();
        }
        await db.deleteFrom('oidc_payloads').where('model', '=', 'Session').where('id', '=', row.id).execute();
        ended += 1;
      }
      return ended;
    },
  };
}
