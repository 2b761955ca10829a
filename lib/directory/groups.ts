import type { Database } from '../db/schema.ts';
import { NotFoundError } from '../errors.ts';
import { isLevel, type Level } from '../levels.ts';

export interface GroupRecord {
  id: number;
  name: string;
  level: Level | null;
  description: string;
  builtin: boolean;
}

/** Group names: short, lowercase, safe in URLs and in a CLI argument. */
export const GROUP_NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/;

export class GroupDirectory {
  constructor(private readonly database: Database) {}

  private get db() {
    return this.database.db;
  }

  async list(): Promise<GroupRecord[]> {
    const rows = await this.db.selectFrom('groups').selectAll().orderBy('name').execute();
    return rows.map((r) => ({
      id: Number(r.id),
      name: r.name,
      level: isLevel(r.level) ? r.level : null,
      description: r.description,
      builtin: Number(r.builtin) === 1,
    }));
  }

  async byName(name: string): Promise<GroupRecord> {
    const group = (await this.list()).find((g) => g.name === name);
    if (!group) throw new NotFoundError(`There is no group named "${name}".`);
    return group;
  }

  /** Adds a user to a group; adding a member twice is not an error. */
  async addMember(groupName: string, userId: number): Promise<void> {
    const group = await this.byName(groupName);
    const exists = await this.db
      .selectFrom('group_members')
      .select('user_id')
      .where('group_id', '=', group.id)
      .where('user_id', '=', userId)
      .executeTakeFirst();
    if (exists) return;
    try {
      await this.db.insertInto('group_members').values({ group_id: group.id, user_id: userId, created_at: Date.now() }).execute();
    } catch (err) {
      // A concurrent add of the same membership lost the race: the outcome is what was asked.
      if (!/duplicate|unique/i.test(String((err as Error).message))) throw err;
    }
  }
}
