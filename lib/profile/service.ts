import type { Database } from '../db/schema.ts';
import type { AuditLog } from '../directory/audit.ts';
import { parseProfile } from '../directory/users.ts';
import { NotFoundError } from '../errors.ts';
import type { ProfileCache } from './cache.ts';
import { assertRequiredKept, validateProfileChanges, type ProfileFields } from './fields.ts';

/**
 * Reads and writes users' extra profile fields. Writes validate against the declared fields, merge
 * into what is stored (other fields are kept), are audited, and lock the row so two concurrent
 * edits of different fields both survive. Provider syncs never come through here: they cannot
 * overwrite what a user typed.
 */
export class ProfileService {
  constructor(
    private readonly database: Database,
    readonly fields: ProfileFields,
    private readonly audit: AuditLog,
    private readonly cache?: ProfileCache,
  ) {}

  async get(userId: number): Promise<Record<string, unknown>> {
    const row = await this.database.db.selectFrom('users').select('profile').where('id', '=', userId).executeTakeFirst();
    if (!row) throw new NotFoundError('There is no such user.');
    const profile = parseProfile(row.profile);
    this.cache?.set(userId, profile);
    return profile;
  }

  async update(actor: string, userId: number, changes: Record<string, unknown>, options: { asAdmin: boolean }): Promise<Record<string, unknown>> {
    const fields = await this.fields.list();
    const valid = validateProfileChanges(fields, changes, options);
    const { before, after } = await this.database.db.transaction().execute(async (trx) => {
      let query = trx.selectFrom('users').select(['profile', 'sub']).where('id', '=', userId);
      if (this.database.dialect === 'mysql') query = query.forUpdate();
      const row = await query.executeTakeFirst();
      if (!row) throw new NotFoundError('There is no such user.');
      const current = parseProfile(row.profile);
      const next: Record<string, unknown> = { ...current };
      for (const [key, value] of Object.entries(valid)) {
        if (value === null) delete next[key];
        else next[key] = value;
      }
      assertRequiredKept(fields, valid, next);
      await trx.updateTable('users').set({ profile: JSON.stringify(next), updated_at: Date.now() }).where('id', '=', userId).execute();
      return { before: current, after: next };
    });
    const changed = Object.keys(valid).filter((k) => before[k] !== after[k]);
    if (changed.length > 0) {
      await this.audit.record({
        actor,
        action: 'profile.update',
        target: `user:${userId}`,
        before: pick(before, changed),
        after: pick(after, changed),
      });
    }
    this.cache?.set(userId, after);
    return after;
  }
}

function pick(source: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, source[k] ?? null]));
}
