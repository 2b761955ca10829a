import type { Kysely } from 'kysely';

/**
 * Frozen: memberships that end by themselves. An access request approved "for 7 days" adds the user
 * to the group and a row here; a sweep removes the membership (audited) once `expires_at` passes.
 * A membership without a row here is permanent. The request remembers until when it was granted.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('membership_expiries')
    .addColumn('group_id', 'integer', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('membership_expiries_pk', ['group_id', 'user_id'])
    .execute();
  await db.schema.createIndex('membership_expiries_at').on('membership_expiries').column('expires_at').execute();
  await db.schema.alterTable('access_requests').addColumn('expires_at', 'bigint').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('access_requests').dropColumn('expires_at').execute();
  await db.schema.dropTable('membership_expiries').execute();
}
