import type { Database } from './schema.ts';

/**
 * Housekeeping on the embedded provider's records (`oidc_payloads`), shared by the portal and the
 * admin CLI. The adapter that writes them is portal/idp/adapter.ts.
 */

/** Deletes expired provider records; run by the portal's periodic sweep. */
export async function sweepOidcPayloads(database: Database, now = Date.now()): Promise<number> {
  const result = await database.db.deleteFrom('oidc_payloads').where('expires_at', '<=', now).executeTakeFirst();
  return Number(result.numDeletedRows);
}

/**
 * Ends everything the provider holds for one account — its provider sessions, grants and the
 * tokens issued under them — so a disabled user cannot sign in again through a remembered session.
 * A rare admin action, so scanning the session and grant records is acceptable.
 */
export async function forgetAccount(database: Database, sub: string): Promise<number> {
  const rows = await database.db.selectFrom('oidc_payloads').select(['model', 'id', 'payload']).where('model', 'in', ['Session', 'Grant']).execute();
  let forgotten = 0;
  for (const row of rows) {
    let accountId: unknown;
    try {
      accountId = (JSON.parse(row.payload) as { accountId?: unknown }).accountId;
    } catch {
      continue;
    }
    if (accountId !== sub) continue;
    if (row.model === 'Grant') await database.db.deleteFrom('oidc_payloads').where('grant_id', '=', row.id).execute();
    await database.db.deleteFrom('oidc_payloads').where('model', '=', row.model).where('id', '=', row.id).execute();
    forgotten += 1;
  }
  return forgotten;
}
