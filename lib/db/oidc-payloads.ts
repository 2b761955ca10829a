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

export interface MachineClient {
  clientId: string;
  name: string;
  scope: string;
}

/**
 * Registers a machine client of the embedded provider (client-credentials grant). The provider finds
 * clients it was not configured with through its adapter, model `Client`, so the record lives with
 * the provider's other data. The secret is returned once and stored as the provider needs it.
 */
export async function registerMachineClient(database: Database, input: { name: string; scope: string }): Promise<MachineClient & { clientSecret: string }> {
  const { randomBytes } = await import('node:crypto');
  const clientId = `m2m-${input.name}-${randomBytes(4).toString('hex')}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const payload = {
    client_id: clientId,
    client_secret: clientSecret,
    client_name: input.name,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    // Read by the embedded provider's getResourceServerInfo: the access scopes this client may get.
    atrium_scope: input.scope,
  };
  await database.db
    .insertInto('oidc_payloads')
    .values({ model: 'Client', id: clientId, payload: JSON.stringify(payload), grant_id: null, user_code: null, uid: null, expires_at: null, consumed_at: null })
    .execute();
  return { clientId, clientSecret, name: input.name, scope: input.scope };
}

export async function listMachineClients(database: Database): Promise<MachineClient[]> {
  const rows = await database.db.selectFrom('oidc_payloads').select(['id', 'payload']).where('model', '=', 'Client').orderBy('id').execute();
  return rows.map((r) => {
    const p = JSON.parse(r.payload) as { client_name?: string; atrium_scope?: string };
    return { clientId: r.id, name: p.client_name ?? r.id, scope: p.atrium_scope ?? '' };
  });
}

export async function removeMachineClient(database: Database, clientId: string): Promise<boolean> {
  const result = await database.db.deleteFrom('oidc_payloads').where('model', '=', 'Client').where('id', '=', clientId).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
