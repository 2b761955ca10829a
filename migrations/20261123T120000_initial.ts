import type { Kysely } from 'kysely';

/** Frozen: the first schema. Change the schema with a new migration, never by editing this one. */

const BUILTIN_GROUPS = [
  { name: 'stable', description: 'Opens apps in the stable tier.' },
  { name: 'ea', description: 'Early access: opens ea and stable apps.' },
  { name: 'devel', description: 'Developers: opens devel, ea and stable apps.' },
  { name: 'admin', description: 'Administrators: every app and the admin console.' },
];

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('sub', 'varchar(255)', (c) => c.notNull().unique())
    .addColumn('email', 'varchar(320)')
    .addColumn('name', 'varchar(255)')
    .addColumn('picture', 'varchar(2048)')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('last_login_at', 'bigint')
    .addColumn('login_count', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('profile', 'text', (c) => c.notNull())
    .addColumn('password_hash', 'varchar(255)')
    .addColumn('disabled_at', 'bigint')
    .execute();
  await db.schema.createIndex('users_email').on('users').column('email').execute();

  await db.schema
    .createTable('groups')
    .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
    .addColumn('name', 'varchar(100)', (c) => c.notNull().unique())
    .addColumn('level', 'varchar(16)')
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('builtin', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('group_nesting')
    .addColumn('parent_id', 'integer', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addColumn('child_id', 'integer', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addPrimaryKeyConstraint('group_nesting_pk', ['parent_id', 'child_id'])
    .execute();
  await db.schema.createIndex('group_nesting_child').on('group_nesting').column('child_id').execute();

  await db.schema
    .createTable('group_members')
    .addColumn('group_id', 'integer', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addColumn('user_id', 'integer', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('group_members_pk', ['group_id', 'user_id'])
    .execute();
  await db.schema.createIndex('group_members_user').on('group_members').column('user_id').execute();

  await db.schema
    .createTable('sessions')
    .addColumn('id', 'varchar(128)', (c) => c.primaryKey())
    .addColumn('user_sub', 'varchar(255)')
    .addColumn('data', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('sessions_user_sub').on('sessions').column('user_sub').execute();
  await db.schema.createIndex('sessions_expires_at').on('sessions').column('expires_at').execute();

  await db.schema
    .createTable('oidc_payloads')
    .addColumn('model', 'varchar(64)', (c) => c.notNull())
    .addColumn('id', 'varchar(255)', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('grant_id', 'varchar(255)')
    .addColumn('user_code', 'varchar(255)')
    .addColumn('uid', 'varchar(255)')
    .addColumn('expires_at', 'bigint')
    .addColumn('consumed_at', 'bigint')
    .addPrimaryKeyConstraint('oidc_payloads_pk', ['model', 'id'])
    .execute();
  await db.schema.createIndex('oidc_payloads_grant').on('oidc_payloads').column('grant_id').execute();
  await db.schema.createIndex('oidc_payloads_uid').on('oidc_payloads').column('uid').execute();
  await db.schema.createIndex('oidc_payloads_expires').on('oidc_payloads').column('expires_at').execute();

  await db.schema
    .createTable('settings')
    .addColumn('name', 'varchar(100)', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();

  const now = Date.now();
  await db
    .insertInto('groups')
    .values(BUILTIN_GROUPS.map((g) => ({ ...g, level: g.name, builtin: 1, created_at: now })))
    .execute();
  // admin ⊂ devel ⊂ ea ⊂ stable: each child inherits its parent's grants.
  const ids = Object.fromEntries(
    (await db.selectFrom('groups').select(['id', 'name']).execute()).map((r: any) => [r.name, r.id]),
  );
  await db
    .insertInto('group_nesting')
    .values([
      { parent_id: ids.stable, child_id: ids.ea },
      { parent_id: ids.ea, child_id: ids.devel },
      { parent_id: ids.devel, child_id: ids.admin },
    ])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of ['settings', 'oidc_payloads', 'sessions', 'group_members', 'group_nesting', 'groups', 'users']) {
    await db.schema.dropTable(table).execute();
  }
}
