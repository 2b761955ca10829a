import type { Database } from '../db/schema.ts';
import type { ProviderClaims, UserDirectory, UserRecord } from '../directory/users.ts';
import { ConflictError } from '../errors.ts';

/** What ties a provider account to a user: the provider's issuer identifier and its subject. */
export interface ProviderAccountOf {
  /** The issuer exactly as its tokens carry it (discovery's `issuer`). */
  issuer: string;
  embedded: boolean;
  /** ProviderConfig.subjectPrefix: '' keeps the provider's own subject as the Atrium subject. */
  subjectPrefix: string;
}

/**
 * The user a provider account stands for, created at its first sign-in. Issuer and subject
 * together name the account (`provider_identities`), so two providers' same `sub` are two users:
 * the Atrium subject (`users.sub`, what apps see) of any provider but the first external one and
 * the embedded one gets the provider's id in front (`corp|abc`), and a subject that is already
 * another account's is refused (409), never merged into it.
 *
 * A user from before identities were recorded (no row) is taken over only by the provider that can
 * have created them: the embedded provider for a local account (one with a password), an external
 * provider that keeps subjects as they are for any other.
 */
export class ProviderAccounts {
  constructor(
    private readonly database: Database,
    private readonly users: UserDirectory,
  ) {}

  private get db() {
    return this.database.db;
  }

  async signIn(provider: ProviderAccountOf, claims: ProviderClaims): Promise<UserRecord> {
    const issuer = issuerKey(provider);
    const known = await this.userIdOf(issuer, claims.sub);
    if (known !== undefined) {
      const user = await this.users.byId(known);
      if (user) return this.users.recordLogin({ ...claims, sub: user.sub });
    }
    const subject = `${provider.subjectPrefix}${claims.sub}`;
    const existing = await this.users.bySub(subject);
    if (existing) {
      const tied = await this.db.selectFrom('provider_identities').select('issuer').where('user_id', '=', existing.id).executeTakeFirst();
      const claimable = !tied && provider.subjectPrefix === '' && existing.local === provider.embedded;
      if (!claimable) throw subjectTaken();
    }
    const user = await this.users.recordLogin({ ...claims, sub: subject });
    const insert = this.db.insertInto('provider_identities').values({ issuer, subject: claims.sub, user_id: user.id, created_at: Date.now() });
    // Two first sign-ins at once write the same row; the second is a no-op.
    if (this.database.dialect === 'mysql') await insert.ignore().execute();
    else await insert.onConflict((oc) => oc.doNothing()).execute();
    if ((await this.userIdOf(issuer, claims.sub)) !== user.id) throw subjectTaken();
    return user;
  }

  async userIdOf(issuer: string, subject: string): Promise<number | undefined> {
    const row = await this.db.selectFrom('provider_identities').select('user_id').where('issuer', '=', issuer).where('subject', '=', subject).executeTakeFirst();
    return row ? Number(row.user_id) : undefined;
  }

  /** The Atrium subject of a provider account, for back-channel logout; none when it never signed in. */
  async subjectOf(provider: ProviderAccountOf, subject: string): Promise<string | undefined> {
    const id = await this.userIdOf(issuerKey(provider), subject);
    if (id !== undefined) return (await this.users.byId(id))?.sub;
    // An account from before identities were recorded signs out by its subject, as it always did.
    const legacy = provider.subjectPrefix === '' ? await this.users.bySub(subject) : undefined;
    if (!legacy || legacy.local !== provider.embedded) return undefined;
    const tied = await this.db.selectFrom('provider_identities').select('issuer').where('user_id', '=', legacy.id).executeTakeFirst();
    return tied ? undefined : legacy.sub;
  }
}

/**
 * What `provider_identities.issuer` holds for a provider: its issuer, except for the embedded
 * provider, whose issuer is PUBLIC_URL's (`…/idp`) and so differs between instances reached on
 * their own addresses and changes when the portal moves to another domain — its accounts are the
 * portal's own, wherever it is served. (No https issuer can look like this key.)
 */
export const EMBEDDED_ISSUER_KEY = 'atrium:embedded';
function issuerKey(provider: ProviderAccountOf): string {
  return provider.embedded ? EMBEDDED_ISSUER_KEY : provider.issuer;
}

function subjectTaken(): ConflictError {
  return new ConflictError('This sign-in names an account that belongs to another way of signing in here, so it cannot be used. Ask an administrator.', 'subject_taken');
}
