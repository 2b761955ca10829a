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
  /** 1: members must have a second factor before they get a session. */
  requires_second_factor: ColumnType<number, number | undefined, number>;
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

/** A second factor: 'totp' (secret, last_step) or 'passkey' (credential_id, public_key, counter, transports). */
export interface UserFactorsTable {
  id: Generated<number>;
  user_id: number;
  kind: string;
  label: string;
  secret: string | null;
  last_step: number | null;
  credential_id: string | null;
  public_key: string | null;
  counter: number | null;
  transports: string | null;
  created_at: number;
  last_used_at: number | null;
}

/** Single-use recovery codes: only their SHA-256 (hex). */
export interface RecoveryCodesTable {
  id: Generated<number>;
  user_id: number;
  code_hash: string;
  created_at: number;
  used_at: number | null;
}

/** Which provider account (issuer and subject together) a user stands for. */
export interface ProviderIdentitiesTable {
  issuer: string;
  subject: string;
  user_id: number;
  created_at: number;
}

/** Memberships a provider's groups claim grants (replaced at every sign-in and refresh); `provider` is its configured id. */
export interface ProviderMembershipsTable {
  group_id: number;
  user_id: number;
  provider: string;
  created_at: number;
}

/** The apps each user opened last from the launcher (`app` is `tier/name`); the newest few are kept. */
export interface RecentAppsTable {
  user_id: number;
  app: string;
  opened_at: number;
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
  provider_identities: ProviderIdentitiesTable;
  provider_memberships: ProviderMembershipsTable;
  user_factors: UserFactorsTable;
  recovery_codes: RecoveryCodesTable;
  recent_apps: RecentAppsTable;
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
