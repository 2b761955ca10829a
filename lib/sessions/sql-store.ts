import type { Database } from '../db/schema.ts';
import type { SessionData, SessionIndex, SessionStore, StoredSession } from './store.ts';

/** Sessions in the portal's SQL database (`sessions` table), swept periodically by the portal. */
export class SqlSessionStore implements SessionStore {
  constructor(private readonly database: Database) {}

  private get db() {
    return this.database.db;
  }

  async get(id: string): Promise<StoredSession | undefined> {
    const row = await this.db
      .selectFrom('sessions')
      .select(['data', 'expires_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row || Number(row.expires_at) <= Date.now()) return undefined;
    try {
      return { data: JSON.parse(row.data) as SessionData, expiresAt: Number(row.expires_at) };
    } catch {
      return undefined;
    }
  }

  async set(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<void> {
    const update = { user_sub: index.subject, idp_sid: index.idpSid ?? null, data: JSON.stringify(data), expires_at: Date.now() + ttlMs };
    const insert = this.db.insertInto('sessions').values({ id, ...update });
    if (this.database.dialect === 'mysql') await insert.onDuplicateKeyUpdate(update).execute();
    else await insert.onConflict((oc) => oc.column('id').doUpdateSet(update)).execute();
  }

  async update(id: string, data: SessionData, ttlMs: number, index: SessionIndex): Promise<boolean> {
    const now = Date.now();
    const result = await this.db
      .updateTable('sessions')
      .set({ user_sub: index.subject, idp_sid: index.idpSid ?? null, data: JSON.stringify(data), expires_at: now + ttlMs })
      .where('id', '=', id)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async destroy(id: string): Promise<void> {
    await this.db.deleteFrom('sessions').where('id', '=', id).execute();
  }

  async take(id: string): Promise<StoredSession | undefined> {
    const found = await this.get(id);
    if (!found) return undefined;
    // Whoever deletes the row owns it; a concurrent taker's delete finds nothing.
    const result = await this.db.deleteFrom('sessions').where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) === 1 ? found : undefined;
  }

  async destroyBySubject(subject: string): Promise<number> {
    const result = await this.db.deleteFrom('sessions').where('user_sub', '=', subject).executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  idsBySubject(subject: string): Promise<string[]> {
    return this.liveIdsWhere('user_sub', subject);
  }

  idsByIdpSession(idpSid: string): Promise<string[]> {
    return this.liveIdsWhere('idp_sid', idpSid);
  }

  private async liveIdsWhere(column: 'user_sub' | 'idp_sid', value: string): Promise<string[]> {
    const rows = await this.db.selectFrom('sessions').select('id').where(column, '=', value).where('expires_at', '>', Date.now()).execute();
    return rows.map((r) => r.id);
  }

  async sweep(now = Date.now()): Promise<number> {
    const result = await this.db.deleteFrom('sessions').where('expires_at', '<=', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
