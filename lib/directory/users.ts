import { randomUUID } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Database, UsersTable } from '../db/schema.ts';
import { hashPassword } from './passwords.ts';

export type UserRow = Selectable<UsersTable>;

/**
 * The one form an e-mail address is stored, looked up and rate-limited in: trimmed, lowercased and
 * in Unicode NFC (so a composed and a decomposed `é` are the same address). Nothing else is folded:
 * `stáble@` and `stable@` are different addresses, and the database compares them byte for byte
 * (SQLite's default BINARY collation; on MySQL/MariaDB the column is utf8mb4_bin, see
 * migrations/20261201T120000_exact_email.ts), so no collation can map one onto the other.
 */
export function canonicalEmail(email: string): string {
  return email.trim().toLowerCase().normalize('NFC');
}

/** What an identity provider says about a person, as far as the directory keeps it. */
export interface ProviderClaims {
  sub: string;
  email?: string | null | undefined;
  name?: string | null | undefined;
  picture?: string | null | undefined;
}

export interface UserRecord {
  id: number;
  sub: string;
  email: string | null;
  name: string | null;
  picture: string | null;
  createdAt: number;
  lastLoginAt: number | null;
  loginCount: number;
  profile: Record<string, unknown>;
  disabled: boolean;
  local: boolean;
}

export function toUserRecord(row: UserRow): UserRecord {
  return {
    id: row.id,
    sub: row.sub,
    email: row.email,
    name: row.name,
    picture: row.picture,
    createdAt: Number(row.created_at),
    lastLoginAt: row.last_login_at === null ? null : Number(row.last_login_at),
    loginCount: Number(row.login_count),
    profile: parseProfile(row.profile),
    disabled: row.disabled_at !== null,
    local: row.password_hash !== null,
  };
}

/**
 * The provider-owned columns to write for these claims. Only claims the provider actually sent
 * overwrite a column: a token without `picture` keeps the one on file.
 */
function providerColumns(claims: ProviderClaims): { email?: string | null; name?: string | null; picture?: string | null } {
  const sent: { email?: string | null; name?: string | null; picture?: string | null } = {};
  if (claims.email !== undefined) sent.email = clip(typeof claims.email === 'string' ? canonicalEmail(claims.email) : null, 320);
  if (claims.name !== undefined) sent.name = clip(claims.name, 255);
  if (claims.picture !== undefined) sent.picture = clip(claims.picture, 2048);
  return sent;
}

/** The row for a user first seen through the provider (a login, or its webhook). */
function newProviderUser(sub: string, sent: ReturnType<typeof providerColumns>, at: number, loggedIn: boolean) {
  return {
    sub,
    email: sent.email ?? null,
    name: sent.name ?? null,
    picture: sent.picture ?? null,
    created_at: at,
    updated_at: at,
    last_login_at: loggedIn ? at : null,
    login_count: loggedIn ? 1 : 0,
    profile: '{}',
    password_hash: null,
    disabled_at: null,
  };
}

/** A stored profile column as an object; anything unreadable reads as empty. */
export function parseProfile(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Bounded copies of provider claims: a provider is trusted for identity, not for column sizes. */
function clip(value: string | null | undefined, max: number): string | null {
  if (typeof value !== 'string' || value === '') return null;
  return value.slice(0, max);
}

export class UserDirectory {
  constructor(private readonly database: Database) {}

  private get db() {
    return this.database.db;
  }

  async bySub(sub: string): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('sub', '=', sub).executeTakeFirst();
    return row && toUserRecord(row);
  }

  async byId(id: number): Promise<UserRecord | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row && toUserRecord(row);
  }

  /** A local account (one with a password) by email, with its hash, for the embedded provider. */
  async localAccount(email: string): Promise<(UserRecord & { passwordHash: string }) | undefined> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', canonicalEmail(email))
      .where('password_hash', 'is not', null)
      // One answer whatever the row order: the oldest account with this address.
      .orderBy('id')
      .executeTakeFirst();
    return row && { ...toUserRecord(row), passwordHash: row.password_hash as string };
  }

  /**
   * A provider's user-created/updated event: inserts the user if new (no login counted), else
   * refreshes the provider-owned columns it sent. The profile column is never touched.
   */
  async syncFromProvider(claims: ProviderClaims, at = Date.now()): Promise<{ user: UserRecord; created: boolean }> {
    const sent = providerColumns(claims);
    const existing = await this.bySub(claims.sub);
    if (existing) {
      await this.db.updateTable('users').set({ ...sent, updated_at: at }).where('id', '=', existing.id).execute();
      return { user: (await this.byId(existing.id)) as UserRecord, created: false };
    }
    const insert = this.db.insertInto('users').values(newProviderUser(claims.sub, sent, at, false));
    // A login racing the webhook may have inserted the row meanwhile: then this is an update.
    if (this.database.dialect === 'mysql') await insert.onDuplicateKeyUpdate({ ...sent, updated_at: at }).execute();
    else await insert.onConflict((oc) => oc.column('sub').doUpdateSet({ ...sent, updated_at: at })).execute();
    return { user: (await this.bySub(claims.sub)) as UserRecord, created: true };
  }

  /** Search by email, name or subject (substring, case-insensitive), newest first. */
  async search(options: { query?: string; page: number; pageSize: number }): Promise<{ users: UserRecord[]; total: number }> {
    // Emails are stored canonical, so the query takes the same form (it is also matched against names and subjects).
    const q = canonicalEmail(options.query ?? '').slice(0, 200);
    let base = this.db.selectFrom('users');
    if (q) {
      const like = `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      base = base.where((eb) => eb.or([eb('email', 'like', like), eb(eb.fn('lower', ['name']), 'like', like), eb('sub', 'like', like)]));
    }
    const [rows, count] = await Promise.all([
      base.selectAll().orderBy('id', 'desc').limit(options.pageSize).offset((options.page - 1) * options.pageSize).execute(),
      base.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return { users: rows.map(toUserRecord), total: Number(count.n) };
  }

  async byEmail(email: string): Promise<UserRecord[]> {
    const rows = await this.db.selectFrom('users').selectAll().where('email', '=', canonicalEmail(email)).execute();
    return rows.map(toUserRecord);
  }

  async setDisabled(id: number, disabled: boolean): Promise<void> {
    await this.db
      .updateTable('users')
      .set({ disabled_at: disabled ? Date.now() : null, updated_at: Date.now() })
      .where('id', '=', id)
      .execute();
  }

  async setPassword(id: number, password: string): Promise<void> {
    await this.db.updateTable('users').set({ password_hash: await hashPassword(password), updated_at: Date.now() }).where('id', '=', id).execute();
  }

  async count(): Promise<number> {
    const row = await this.db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Creates a local account of the embedded provider; its `sub` is a fresh UUID. */
  async createLocal(input: { email: string; name?: string; password: string }): Promise<UserRecord> {
    const now = Date.now();
    const sub = randomUUID();
    await this.db
      .insertInto('users')
      .values({
        sub,
        email: canonicalEmail(input.email),
        name: input.name ?? null,
        picture: null,
        created_at: now,
        updated_at: now,
        last_login_at: null,
        profile: '{}',
        password_hash: await hashPassword(input.password),
        disabled_at: null,
      })
      .execute();
    return (await this.bySub(sub)) as UserRecord;
  }

  /**
   * A login: inserts the user on first sight, else refreshes the provider-owned columns and counts
   * the login. The `profile` column (what the user typed) is never touched here.
   */
  async recordLogin(claims: ProviderClaims, at = Date.now()): Promise<UserRecord> {
    const sent = providerColumns(claims);
    const insert = this.db.insertInto('users').values(newProviderUser(claims.sub, sent, at, true));
    // One statement either way, so two concurrent first logins cannot create the same user twice.
    if (this.database.dialect === 'mysql') {
      await insert
        .onDuplicateKeyUpdate((eb) => ({ ...sent, updated_at: at, last_login_at: at, login_count: eb('login_count', '+', 1) }))
        .execute();
    } else {
      await insert
        .onConflict((oc) =>
          oc.column('sub').doUpdateSet((eb) => ({ ...sent, updated_at: at, last_login_at: at, login_count: eb('users.login_count', '+', 1) })),
        )
        .execute();
    }
    return (await this.bySub(claims.sub)) as UserRecord;
  }
}
