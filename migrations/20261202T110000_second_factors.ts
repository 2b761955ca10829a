import { sql, type Kysely } from 'kysely';

/**
 * Frozen: second factors of the embedded provider's local accounts.
 * - `user_factors`: one row per factor. `kind` 'totp' keeps the shared secret (base32) and the last
 *   time step a code was accepted for (`last_step`), so a code is never accepted twice; 'passkey'
 *   keeps the WebAuthn credential id (base64url, unique), its public key (base64url COSE) and the
 *   authenticator's signature counter.
 * - `recovery_codes`: single-use codes, only their SHA-256 (hex); `used_at` once spent.
 * - `groups.requires_second_factor`: members must have a second factor before they get a session.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('user_factors')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('kind', 'varchar(16)', (c) => c.notNull())
    .addColumn('label', 'varchar(100)', (c) => c.notNull())
    .addColumn('secret', 'varchar(128)')
    .addColumn('last_step', 'bigint')
    .addColumn('credential_id', 'varchar(512)', (c) => c.unique())
    .addColumn('public_key', 'text')
    .addColumn('counter', 'bigint')
    .addColumn('transports', 'varchar(200)')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_used_at', 'bigint')
    .execute();
  await db.schema.createIndex('user_factors_user').on('user_factors').column('user_id').execute();
  // Credential ids are case-sensitive base64url: MySQL's default collation would fold case.
  if (await isMysql(db)) await sql`ALTER TABLE user_factors MODIFY credential_id VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NULL`.execute(db);
  await db.schema
    .createTable('recovery_codes')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('code_hash', 'varchar(64)', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('used_at', 'bigint')
    .execute();
  await db.schema.createIndex('recovery_codes_user').on('recovery_codes').columns(['user_id', 'code_hash']).execute();
  await db.schema.alterTable('groups').addColumn('requires_second_factor', 'integer', (c) => c.notNull().defaultTo(0)).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('groups').dropColumn('requires_second_factor').execute();
  await db.schema.dropTable('recovery_codes').execute();
  await db.schema.dropTable('user_factors').execute();
}

async function isMysql(db: Kysely<any>): Promise<boolean> {
  try {
    await sql`SELECT version()`.execute(db);
    return true;
  } catch {
    return false;
  }
}
