import type { Kysely } from 'kysely';

/** Frozen: sessions remember the provider's session id (`sid`) so back-channel logout can end them. */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('idp_sid', 'varchar(255)').execute();
  await db.schema.createIndex('sessions_idp_sid').on('sessions').column('idp_sid').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('sessions_idp_sid').on('sessions').execute();
  await db.schema.alterTable('sessions').dropColumn('idp_sid').execute();
}
