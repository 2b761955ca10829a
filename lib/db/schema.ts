import type { ColumnType, Generated, Kysely } from 'kysely';

/**
 * The tables, as Kysely sees them. Times are epoch milliseconds in BIGINT columns so that SQLite and
 * MySQL store and return the same thing; JSON documents are TEXT, parsed by the code that owns them.
 */
export interface UsersTable {
  id: Generated<number>;
  sub: string;
  email: string | null;
  name: string | null;
  picture: string | null;
  created_at: number;
  updated_at: number;
  last_login_at: number | null;
  login_count: ColumnType<number, number | undefined, number>;
  profile: string;
  password_hash: string | null;
  disabled_at: number | null;
}

export interface GroupsTable {
  id: Generated<number>;
  name: string;
  level: string | null;
  description: string;
  builtin: ColumnType<number, number | undefined, number>;
  created_at: number;
}

export interface GroupNestingTable {
  /** Members of the child inherit everything granted to the parent. */
  parent_id: number;
  child_id: number;
}

export interface GroupMembersTable {
  group_id: number;
  user_id: number;
  created_at: number;
}

export interface SessionsTable {
  id: string;
  user_sub: string | null;
  idp_sid: ColumnType<string | null, string | null | undefined, string | null>;
  data: string;
  expires_at: number;
}

export interface OidcPayloadsTable {
  model: string;
  id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  expires_at: number | null;
  consumed_at: number | null;
}

export interface SettingsTable {
  name: string;
  value: string;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: number;
  actor: string;
  action: string;
  target: string;
  before: string | null;
  after: string | null;
}

export interface AccessRequestsTable {
  id: Generated<number>;
  user_id: number;
  level: string;
  reason: string;
  status: string;
  created_at: number;
  decided_at: number | null;
  decided_by: string | null;
  note: string | null;
}

export interface ProfileFieldsTable {
  name: string;
  label: string;
  type: string;
  required: number;
  max_length: number;
  options: string | null;
  user_editable: number;
  position: number;
  created_at: number;
}

export interface WebhookEventsTable {
  id: string;
  received_at: number;
}

export interface DB {
  users: UsersTable;
  groups: GroupsTable;
  group_nesting: GroupNestingTable;
  group_members: GroupMembersTable;
  sessions: SessionsTable;
  oidc_payloads: OidcPayloadsTable;
  settings: SettingsTable;
  audit_log: AuditLogTable;
  access_requests: AccessRequestsTable;
  profile_fields: ProfileFieldsTable;
  webhook_events: WebhookEventsTable;
}

export type Dialect = 'sqlite' | 'mysql';

export interface Database {
  /** Every query through it is bounded in time (MySQL: see bounded-pool.ts). */
  db: Kysely<DB>;
  /**
   * The same database without the per-query limit, for migrations: an ALTER TABLE on a big table
   * takes its time, and one cut off halfway leaves MySQL's schema half-changed. Absent: use `db`.
   */
  unboundedDb?: Kysely<DB>;
  dialect: Dialect;
  close(): Promise<void>;
}
