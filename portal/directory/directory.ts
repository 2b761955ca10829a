import { AccessRequests } from '../../lib/access-requests.ts';
import type { Config } from '../../lib/config.ts';
import { forgetAccount } from '../../lib/db/oidc-payloads.ts';
import { AccessIndex } from '../../lib/directory/access.ts';
import { DirectoryAdmin } from '../../lib/directory/admin.ts';
import { AuditLog } from '../../lib/directory/audit.ts';
import { seedDemoAccounts, usableDemoAccounts } from '../../lib/directory/demo.ts';
import { GroupDirectory } from '../../lib/directory/groups.ts';
import { UserDirectory } from '../../lib/directory/users.ts';
import { ConfigError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/log.ts';
import { ProfileCache } from '../../lib/profile/cache.ts';
import { ProfileFields } from '../../lib/profile/fields.ts';
import { ProfileService } from '../../lib/profile/service.ts';
import type { UserResolver } from '../sessions/user.ts';
import type { Storage } from '../storage/storage.ts';
import { DirectoryWatcher } from './watcher.ts';
import { FactorDirectory } from '../../lib/factors/factor-directory.ts';

/** Users, nested groups and what follows from them, in memory for the request path and kept current by the watcher. */
export interface Directory {
  users: UserDirectory;
  groups: GroupDirectory;
  access: AccessIndex;
  audit: AuditLog;
  admin: DirectoryAdmin;
  profiles: ProfileService;
  profileCache: ProfileCache;
  requests: AccessRequests;
  /** Second factors of local accounts, and the groups that require one. */
  factors: FactorDirectory;
  watcher: DirectoryWatcher;
  /** How a session becomes a user: level and groups from the access index, profile from the cache. */
  resolver: UserResolver;
  /** Whether the demo accounts were seeded at this start. */
  seededDemo: boolean;
}

export async function buildDirectory(config: Config, storage: Storage, log: Logger): Promise<Directory> {
  const { database, sessions } = storage;
  const users = new UserDirectory(database);
  const groups = new GroupDirectory(database);
  const embeddedIdp = config.oidc.issuer === undefined;
  const seededDemo = embeddedIdp && config.env !== 'production' ? await seedDemoAccounts(users, groups) : false;
  if (embeddedIdp && config.env === 'production') {
    const demo = await usableDemoAccounts(users);
    if (demo.length > 0) {
      throw new ConfigError(demo.map((email) => `demo account ${email} still opens with the demo password: npm run atrium -- users disable ${email}`));
    }
  }

  const access = await AccessIndex.load(database);
  const profileCache = new ProfileCache();
  const watcher = new DirectoryWatcher({ database, access, profiles: profileCache, log });
  await watcher.refresh();
  const audit = new AuditLog(database);
  const admin = new DirectoryAdmin({
    database,
    users,
    groups,
    audit,
    sessions,
    onChange: () => watcher.refresh(),
    onDisable: embeddedIdp ? (sub) => forgetAccount(database, sub) : undefined,
  });
  const profiles = new ProfileService(database, new ProfileFields(database), audit, profileCache);
  const requests = new AccessRequests(database, audit, admin);
  const resolver: UserResolver = { access, profiles: profileCache, loadProfile: (id: number) => profiles.get(id) };
  const factors = new FactorDirectory({ database, access, audit });
  return { users, groups, access, audit, admin, profiles, profileCache, requests, factors, watcher, resolver, seededDemo };
}
