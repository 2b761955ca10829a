import type { Kysely } from 'kysely';

/**
 * Frozen: audit log, access requests, the extra profile field schema, webhook idempotency, and an
 * index that lets portals pick up profile changes made elsewhere.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('audit_log')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('at', 'bigint', (c) => c.notNull())
    .addColumn('actor', 'varchar(400)', (c) => c.notNull())
    .addColumn('action', 'varchar(100)', (c) => c.notNull())
    .addColumn('target', 'varchar(400)', (c) => c.notNull())
    .addColumn('before', 'text')
    .addColumn('after', 'text')
    .execute();
  await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();

  await db.schema
    .createTable('access_requests')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('level', 'varchar(16)', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('status', 'varchar(16)', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_at', 'bigint')
    .addColumn('decided_by', 'varchar(400)')
    .addColumn('note', 'text')
    .execute();
  await db.schema.createIndex('access_requests_status').on('access_requests').columns(['status', 'created_at']).execute();
  await db.schema.createIndex('access_requests_user').on('access_requests').column('user_id').execute();

  await db.schema
    .createTable('profile_fields')
    .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
    .addColumn('label', 'varchar(100)', (c) => c.notNull())
    .addColumn('type', 'varchar(16)', (c) => c.notNull())
    .addColumn('required', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_length', 'integer', (c) => c.notNull())
    .addColumn('options', 'text')
    .addColumn('user_editable', 'integer', (c) => c.notNull().defaultTo(1))
    .addColumn('position', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('webhook_events')
    .addColumn('id', 'varchar(200)', (c) => c.primaryKey())
    .addColumn('received_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('webhook_events_received').on('webhook_events').column('received_at').execute();

  await db.schema.createIndex('users_updated_at').on('users').column('updated_at').execute();

  const now = Date.now();
  await db
    .insertInto('profile_fields')
    .values([
      { name: 'team', label: 'Team', type: 'text', required: 0, max_length: 100, options: null, user_editable: 1, position: 1, created_at: now },
      { name: 'location', label: 'Location', type: 'text', required: 0, max_length: 100, options: null, user_editable: 1, position: 2, created_at: now },
      { name: 'bio', label: 'About you', type: 'textarea', required: 0, max_length: 1000, options: null, user_editable: 1, position: 3, created_at: now },
    ])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('users_updated_at').on('users').execute();
  for (const table of ['webhook_events', 'profile_fields', 'access_requests', 'audit_log']) await db.schema.dropTable(table).execute();
}
