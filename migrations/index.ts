import type { Migration } from 'kysely';
import * as initial from './20261123T120000_initial.ts';
import * as directoryAdmin from './20261123T130000_directory_admin.ts';
import * as sessionIdpSid from './20261123T140000_session_idp_sid.ts';
import * as exactEmail from './20261201T120000_exact_email.ts';
import * as passwordResets from './20261201T150000_password_resets.ts';
import * as timedMemberships from './20261201T170000_timed_memberships.ts';
import * as providerIdentities from './20261202T100000_provider_identities.ts';
import * as secondFactors from './20261202T110000_second_factors.ts';
import * as recentApps from './20261202T120000_recent_apps.ts';

/**
 * Every migration, by name, in the order they apply. Listed explicitly rather than read from the
 * folder so that the same set runs under tsx, vitest and a bundler alike.
 */
export const migrations: Record<string, Migration> = {
  '20261123T120000_initial': initial,
  '20261123T130000_directory_admin': directoryAdmin,
  '20261123T140000_session_idp_sid': sessionIdpSid,
  '20261201T120000_exact_email': exactEmail,
  '20261201T150000_password_resets': passwordResets,
  '20261201T170000_timed_memberships': timedMemberships,
  '20261202T100000_provider_identities': providerIdentities,
  '20261202T110000_second_factors': secondFactors,
  '20261202T120000_recent_apps': recentApps,
};
