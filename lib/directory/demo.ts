import type { GroupDirectory } from './groups.ts';
import { verifyPassword } from './passwords.ts';
import type { UserDirectory } from './users.ts';

/** Development-only demo accounts; never seeded when NODE_ENV=production. */
export const DEMO_PASSWORD = 'atrium-demo';
export const DEMO_ACCOUNTS = [
  { email: 'admin@example.com', name: 'Ada Admin', group: 'admin' },
  { email: 'devel@example.com', name: 'Dev Eloper', group: 'devel' },
  { email: 'ea@example.com', name: 'Early Adopter', group: 'ea' },
  { email: 'stable@example.com', name: 'Stable Sam', group: 'stable' },
  { email: 'nobody@example.com', name: 'No Body', group: null },
] as const;

/**
 * Demo accounts that still open with the demo password. Production refuses to start while any
 * exists: a database seeded in development must not carry a known password into production.
 */
export async function usableDemoAccounts(users: UserDirectory): Promise<string[]> {
  const usable: string[] = [];
  for (const account of DEMO_ACCOUNTS) {
    const found = await users.localAccount(account.email);
    if (found && !found.disabled && (await verifyPassword(DEMO_PASSWORD, found.passwordHash))) usable.push(account.email);
  }
  return usable;
}

/** Seeds the demo accounts when the directory has no users yet; returns whether it did. */
export async function seedDemoAccounts(users: UserDirectory, groups: GroupDirectory): Promise<boolean> {
  if ((await users.count()) > 0) return false;
  for (const account of DEMO_ACCOUNTS) {
    const user = await users.createLocal({ email: account.email, name: account.name, password: DEMO_PASSWORD });
    if (account.group) await groups.addMember(account.group, user.id);
  }
  return true;
}
