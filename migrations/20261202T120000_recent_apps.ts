import type { Kysely } from 'kysely';

/**
 * Frozen: the apps each user opened last, for the launcher's "Recently opened". One row per user
 * and app (`tier/name`), its time refreshed when the launcher link is followed; the launcher keeps
 * only the newest few per user. Written from the launcher, never on the /apps/ path.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('recent_apps')
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('app', 'varchar(160)', (c) => c.notNull())
    .addColumn('opened_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('recent_apps_pk', ['user_id', 'app'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('recent_apps').execute();
}
