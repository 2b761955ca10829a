import type { Kysely } from 'kysely';

/**
 * Frozen: identities and group memberships that belong to identity providers (issue 14).
 *
 * - `provider_identities`: which provider account (issuer and subject together) a user stands for,
 *   so two providers that happen to use the same `sub` are two people. Users from before this
 *   migration have no row; the first sign-in through the provider that created them adds it.
 * - `provider_memberships`: memberships a provider's groups claim grants, kept apart from the
 *   admins' `group_members` so that a sync, which replaces them wholesale at every sign-in and
 *   refresh, can never touch a membership an admin made. `provider` is the provider's id in the
 *   configuration (PROVIDERS), as the console shows it.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('provider_identities')
    .addColumn('issuer', 'varchar(255)', (c) => c.notNull())
    .addColumn('subject', 'varchar(255)', (c) => c.notNull())
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('provider_identities_pk', ['issuer', 'subject'])
    .execute();
  await db.schema.createIndex('provider_identities_user').on('provider_identities').column('user_id').execute();

  await db.schema
    .createTable('provider_memberships')
    .addColumn('group_id', 'integer', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('provider', 'varchar(64)', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('provider_memberships_pk', ['group_id', 'user_id', 'provider'])
    .execute();
  await db.schema.createIndex('provider_memberships_user').on('provider_memberships').column('user_id').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('provider_memberships').execute();
  await db.schema.dropTable('provider_identities').execute();
}
