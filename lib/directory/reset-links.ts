import { createHash, randomBytes } from 'node:crypto';
import type { Generated, Kysely } from 'kysely';
import { forgetAccount } from '../db/oidc-payloads.ts';
import type { Database } from '../db/schema.ts';

/** The table migrations/20261201T150000_password_resets.ts creates. */
export interface PasswordResetsTable {
  id: Generated<number>;
  token_hash: string;
  user_id: number;
  created_at: number;
  created_by: string;
  expires_at: number;
  used_at: number | null;
}

export const DEFAULT_RESET_HOURS = 24;
/** The longest a link may be valid for: a week. */
export const MAX_RESET_HOURS = 24 * 7;
/** A link's token: 32 random bytes, base64url (43 characters). */
export const RESET_TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** What is stored for a token: its SHA-256, hex. The token itself is shown once and kept nowhere. */
export function resetTokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export interface ResetLink {
  id: number;
  userId: number;
  expiresAt: number;
  usedAt: number | null;
}

/**
 * One-time password reset links for local accounts, stored as hashes (see the migration). Issuing
 * and using them, with their rules and audit, is DirectoryAdmin's; this is the storage.
 */
export class ResetLinks {
  constructor(private readonly database: Database) {}

  private get db() {
    return (this.database.db as unknown as Kysely<{ password_resets: PasswordResetsTable }>);
  }

  async issue(userId: number, createdBy: string, hours: number, now = Date.now()): Promise<{ token: string; expiresAt: number }> {
    const token = randomBytes(32).toString('base64url');
    const expiresAt = now + Math.round(hours * 3600_000);
    await this.db
      .insertInto('password_resets')
      .values({ token_hash: resetTokenHash(token), user_id: userId, created_at: now, created_by: createdBy.slice(0, 400), expires_at: expiresAt, used_at: null })
      .execute();
    return { token, expiresAt };
  }

  /** The link a token names, used or not, expired or not; undefined for a malformed or unknown token. */
  async find(token: string): Promise<ResetLink | undefined> {
    if (!RESET_TOKEN.test(token)) return undefined;
    const row = await this.db.selectFrom('password_resets').selectAll().where('token_hash', '=', resetTokenHash(token)).executeTakeFirst();
    return row && { id: row.id, userId: row.user_id, expiresAt: Number(row.expires_at), usedAt: row.used_at === null ? null : Number(row.used_at) };
  }

  /** Marks a link used, if it still can be: of any number of concurrent callers, exactly one gets true. */
  async consume(id: number, now = Date.now()): Promise<boolean> {
    const result = await this.db
      .updateTable('password_resets')
      .set({ used_at: now })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** A new password makes the user's earlier links useless: they are marked used. */
  async retireFor(userId: number, now = Date.now()): Promise<void> {
    await this.db.updateTable('password_resets').set({ used_at: now }).where('user_id', '=', userId).where('used_at', 'is', null).execute();
  }
}

interface StoredProviderSession {
  accountId?: unknown;
  authorizations?: Record<string, { sid?: unknown; grantId?: unknown }>;
}

/**
 * Ends the embedded provider's sessions of an account (with the grants under them) except the one
 * whose authorizations carry `keepSid`: the browser that changed its password stays signed in at
 * the provider, every other one must type the new password. Without `keepSid`, all of them go.
 */
export async function endProviderSessionsExcept(database: Database, sub: string, keepSid: string | undefined): Promise<number> {
  if (keepSid === undefined) return forgetAccount(database, sub);
  const db = database.db;
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
    if (authorizations.some((a) => a.sid === keepSid)) continue;
    for (const { grantId } of authorizations) {
      if (typeof grantId !== 'string') continue;
      await db.deleteFrom('oidc_payloads').where('grant_id', '=', grantId).execute();
      await db.deleteFrom('oidc_payloads').where('model', '=', 'Grant').where('id', '=', grantId).execute();
    }
    await db.deleteFrom('oidc_payloads').where('model', '=', 'Session').where('id', '=', row.id).execute();
    ended += 1;
  }
  return ended;
}
