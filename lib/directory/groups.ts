import type { Database } from '../db/schema.ts';
import type { Kysely } from 'kysely';
import { AtriumError, BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import { isLevel, LEVELS, type Level } from '../levels.ts';
import { bumpRevision } from './revision.ts';

export interface GroupRecord {
  id: number;
  name: string;
  level: Level | null;
  description: string;
  builtin: boolean;
}

export interface NestingEdge {
  parent: string;
  child: string;
}

/**
 * Group names: short, lowercase, safe in URLs and in a CLI argument. An optional `namespace:` in
 * front (`idp:engineering`) is where provider groups are mapped one-to-one (lib/providers/): a sync
 * creates only such namespaced groups, never plain ones, so it cannot squat an admin's name.
 */
export const GROUP_NAME = /^(?=.{1,100}$)(?:[a-z0-9][a-z0-9_-]{0,29}:)?[a-z0-9][a-z0-9._-]*$/;
const DESCRIPTION_MAX = 500;

/** Nesting the directory always keeps: admin ⊂ devel ⊂ ea ⊂ stable (each child inherits its parent). */
const BUILTIN_EDGES: NestingEdge[] = LEVELS.slice(1).map((child, i) => ({ parent: LEVELS[i] as string, child }));

export class CycleError extends AtriumError {
  constructor(readonly cycle: string[]) {
    super(409, 'nesting_cycle', `That nesting would make a cycle: ${cycle.join(' ⊂ ')}. Groups must form a hierarchy without loops.`, {
      details: { cycle },
    });
  }
}

/**
 * Groups, their nesting (a DAG: members of a child inherit everything granted to its ancestors)
 * and membership. Every write bumps the directory revision so every portal rebuilds its
 * AccessIndex. Writes are serialised in this process so two concurrent nestings cannot together
 * form a cycle that each alone would not.
 */
export class GroupDirectory {
  private writing: Promise<unknown> = Promise.resolve();

  constructor(private readonly database: Database) {}

  private get db() {
    return this.database.db;
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.writing.then(work, work);
    this.writing = run.catch(() => undefined);
    return run.then(async (result) => {
      await bumpRevision(this.database);
      return result;
    });
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

  async find(name: string): Promise<GroupRecord | undefined> {
    return (await this.list()).find((g) => g.name === name);
  }

  async byName(name: string): Promise<GroupRecord> {
    const group = await this.find(name);
    if (!group) throw new NotFoundError(`There is no group named "${name}".`);
    return group;
  }

  async edges(): Promise<NestingEdge[]> {
    const rows = await this.db
      .selectFrom('group_nesting as n')
      .innerJoin('groups as p', 'p.id', 'n.parent_id')
      .innerJoin('groups as c', 'c.id', 'n.child_id')
      .select(['p.name as parent', 'c.name as child'])
      .orderBy('p.name')
      .orderBy('c.name')
      .execute();
    return rows.map((r) => ({ parent: r.parent, child: r.child }));
  }

  async create(input: { name: string; level?: Level | null; description?: string }): Promise<GroupRecord> {
    const name = input.name.trim();
    if (!GROUP_NAME.test(name)) throw new BadRequestError('A group name is 1-100 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit, optionally after a "namespace:" (idp:engineering).', { code: 'bad_group_name' });
    const description = (input.description ?? '').trim();
    if (description.length > DESCRIPTION_MAX) throw new BadRequestError(`A description is at most ${DESCRIPTION_MAX} characters.`);
    if (input.level != null && !isLevel(input.level)) throw new BadRequestError(`A level is one of ${LEVELS.join(', ')}.`);
    return this.exclusive(async () => {
      if (await this.find(name)) throw new ConflictError(`A group named "${name}" already exists.`, 'group_exists');
      await this.db
        .insertInto('groups')
        .values({ name, level: input.level ?? null, description, builtin: 0, created_at: Date.now() })
        .execute();
      return this.byName(name);
    });
  }

  async update(name: string, changes: { name?: string; description?: string; level?: Level | null }): Promise<GroupRecord> {
    return this.exclusive(async () => {
      const group = await this.byName(name);
      const next: { name?: string; description?: string; level?: Level | null } = {};
      if (changes.name !== undefined && changes.name !== group.name) {
        if (group.builtin) throw new ConflictError(`The built-in group "${group.name}" cannot be renamed.`, 'builtin_group');
        if (!GROUP_NAME.test(changes.name)) throw new BadRequestError('A group name is 1-100 lowercase letters, digits, ".", "_" or "-".', { code: 'bad_group_name' });
        if (await this.find(changes.name)) throw new ConflictError(`A group named "${changes.name}" already exists.`, 'group_exists');
        next.name = changes.name;
      }
      if (changes.description !== undefined) {
        if (changes.description.length > DESCRIPTION_MAX) throw new BadRequestError(`A description is at most ${DESCRIPTION_MAX} characters.`);
        next.description = changes.description.trim();
      }
      if (changes.level !== undefined) {
        if (group.builtin) throw new ConflictError(`The built-in group "${group.name}" always grants level ${group.level}.`, 'builtin_group');
        if (changes.level !== null && !isLevel(changes.level)) throw new BadRequestError(`A level is one of ${LEVELS.join(', ')}.`);
        next.level = changes.level;
      }
      if (Object.keys(next).length > 0) await this.db.updateTable('groups').set(next).where('id', '=', group.id).execute();
      return this.byName(next.name ?? group.name);
    });
  }

  async remove(name: string): Promise<void> {
    return this.exclusive(async () => {
      const group = await this.byName(name);
      if (group.builtin) throw new ConflictError(`The built-in group "${name}" cannot be deleted.`, 'builtin_group');
      // Nesting and membership rows go with it (ON DELETE CASCADE), deleted explicitly for clarity.
      await this.db.transaction().execute(async (trx) => {
        await trx.deleteFrom('group_nesting').where((eb) => eb.or([eb('parent_id', '=', group.id), eb('child_id', '=', group.id)])).execute();
        await trx.deleteFrom('group_members').where('group_id', '=', group.id).execute();
        await trx.deleteFrom('groups').where('id', '=', group.id).execute();
      });
    });
  }

  /** Makes `child` inherit from `parent`; refuses self-nesting and cycles, naming the cycle. */
  async nest(childName: string, parentName: string): Promise<void> {
    return this.exclusive(async () => {
      const [child, parent] = await Promise.all([this.byName(childName), this.byName(parentName)]);
      if (child.id === parent.id) throw new CycleError([child.name, child.name]);
      const edges = await this.edges();
      if (edges.some((e) => e.parent === parent.name && e.child === child.name)) return;
      // A cycle appears if the parent already inherits from the child: find that path.
      const path = inheritancePath(edges, parent.name, child.name);
      if (path) throw new CycleError([child.name, ...path]);
      await this.db.insertInto('group_nesting').values({ parent_id: parent.id, child_id: child.id }).execute();
    });
  }

  async unnest(childName: string, parentName: string): Promise<void> {
    return this.exclusive(async () => {
      const [child, parent] = await Promise.all([this.byName(childName), this.byName(parentName)]);
      if (BUILTIN_EDGES.some((e) => e.parent === parent.name && e.child === child.name)) {
        throw new ConflictError(`"${child.name}" ⊂ "${parent.name}" is part of the built-in order admin ⊂ devel ⊂ ea ⊂ stable and cannot be removed.`, 'builtin_nesting');
      }
      const result = await this.db.deleteFrom('group_nesting').where('parent_id', '=', parent.id).where('child_id', '=', child.id).executeTakeFirst();
      if (Number(result.numDeletedRows) === 0) throw new NotFoundError(`"${child.name}" is not nested in "${parent.name}".`);
    });
  }

  /**
   * Adds a user to a group; adding a member twice is not an error. Without `expiresAt` the
   * membership is permanent (an expiry it had is dropped). With it, a new membership ends then, a
   * timed one is extended, and a permanent one stays permanent. Returns when it ends (null: never).
   */
  async addMember(groupName: string, userId: number, expiresAt?: number): Promise<number | null> {
    return this.exclusive(async () => {
      const group = await this.byName(groupName);
      const exists = await this.db
        .selectFrom('group_members')
        .select('user_id')
        .where('group_id', '=', group.id)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      const expiries = this.expiries();
      const current = await expiries.selectFrom('membership_expiries').select('expires_at').where('group_id', '=', group.id).where('user_id', '=', userId).executeTakeFirst();
      if (exists && expiresAt !== undefined && !current) return null;
      if (!exists) {
        try {
          await this.db.insertInto('group_members').values({ group_id: group.id, user_id: userId, created_at: Date.now() }).execute();
        } catch (err) {
          // Another process added the same membership first: the outcome is what was asked.
          if (!/duplicate|unique/i.test(String((err as Error).message))) throw err;
        }
      }
      if (expiresAt === undefined) {
        if (current) await expiries.deleteFrom('membership_expiries').where('group_id', '=', group.id).where('user_id', '=', userId).execute();
        return null;
      }
      const until = current ? Math.max(Number(current.expires_at), expiresAt) : expiresAt;
      if (current) await expiries.updateTable('membership_expiries').set({ expires_at: until }).where('group_id', '=', group.id).where('user_id', '=', userId).execute();
      else await expiries.insertInto('membership_expiries').values({ group_id: group.id, user_id: userId, expires_at: until }).execute();
      return until;
    });
  }

  async removeMember(groupName: string, userId: number): Promise<boolean> {
    return this.exclusive(async () => {
      const group = await this.byName(groupName);
      await this.expiries().deleteFrom('membership_expiries').where('group_id', '=', group.id).where('user_id', '=', userId).execute();
      const result = await this.db.deleteFrom('group_members').where('group_id', '=', group.id).where('user_id', '=', userId).executeTakeFirst();
      if (Number(result.numDeletedRows) > 0) return true;
      // A membership the provider manages comes back at the next sign-in: it is changed at the provider.
      const managed = await this.db.selectFrom('provider_memberships').select('provider').where('group_id', '=', group.id).where('user_id', '=', userId).executeTakeFirst();
      if (managed) throw new ConflictError(`This membership of "${group.name}" is managed by the identity provider "${managed.provider}"; change it there.`, 'managed_by_provider', { provider: managed.provider });
      return false;
    });
  }

  /** Timed memberships whose end is at or before `now`. */
  async expiredMemberships(now: number): Promise<{ group: string; userId: number; expiresAt: number }[]> {
    const rows = await this.expiries()
      .selectFrom('membership_expiries as x')
      .innerJoin('groups as g', 'g.id', 'x.group_id')
      .select(['g.name', 'x.user_id', 'x.expires_at'])
      .where('x.expires_at', '<=', now)
      .orderBy('x.expires_at')
      .execute();
    return rows.map((r: any) => ({ group: String(r.name), userId: Number(r.user_id), expiresAt: Number(r.expires_at) }));
  }

  /** When each of a user's timed direct memberships ends, by group. */
  async expiriesOf(userId: number): Promise<Record<string, number>> {
    const rows = await this.expiries().selectFrom('membership_expiries as x').innerJoin('groups as g', 'g.id', 'x.group_id').select(['g.name', 'x.expires_at']).where('x.user_id', '=', userId).execute();
    return Object.fromEntries(rows.map((r: any) => [String(r.name), Number(r.expires_at)]));
  }

  /** The expiry table came with a later migration than the typed schema (lib/db/schema.ts). */
  private expiries(): Kysely<any> {
    return this.db as unknown as Kysely<any>;
  }

  /**
   * Direct members: those an admin added, and those an identity provider's groups claim put there
   * (`managedBy` names the provider; null when an admin's membership exists, which a sync never
   * touches). The console shows the latter as managed by the provider, with nothing to edit.
   */
  async members(groupName: string): Promise<{ id: number; email: string | null; name: string | null; sub: string; managedBy: string | null }[]> {
    const group = await this.byName(groupName);
    const [admins, managed] = await Promise.all([
      this.db
        .selectFrom('group_members as m')
        .innerJoin('users as u', 'u.id', 'm.user_id')
        .select(['u.id', 'u.email', 'u.name', 'u.sub'])
        .where('m.group_id', '=', group.id)
        .execute(),
      this.db
        .selectFrom('provider_memberships as m')
        .innerJoin('users as u', 'u.id', 'm.user_id')
        .select(['u.id', 'u.email', 'u.name', 'u.sub', 'm.provider'])
        .where('m.group_id', '=', group.id)
        .execute(),
    ]);
    const byId = new Map(admins.map((u) => [Number(u.id), { ...u, id: Number(u.id), managedBy: null as string | null }]));
    for (const m of managed) if (!byId.has(Number(m.id))) byId.set(Number(m.id), { id: Number(m.id), email: m.email, name: m.name, sub: m.sub, managedBy: m.provider });
    return [...byId.values()].sort((a, b) => (a.email ?? '').localeCompare(b.email ?? '') || a.sub.localeCompare(b.sub));
  }

  /** Direct memberships of one user, an admin's or a provider's. */
  async directGroupsOf(userId: number): Promise<string[]> {
    const [admins, managed] = await Promise.all([this.adminGroupsOf(userId), this.managedGroupsOf(userId)]);
    return [...new Set([...admins, ...managed.keys()])].sort();
  }

  /** The memberships an admin made (and may remove). */
  async adminGroupsOf(userId: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('group_members as m')
      .innerJoin('groups as g', 'g.id', 'm.group_id')
      .select('g.name')
      .where('m.user_id', '=', userId)
      .orderBy('g.name')
      .execute();
    return rows.map((r) => r.name);
  }

  /** Memberships identity providers manage, by group: the providers' ids. */
  async managedGroupsOf(userId: number): Promise<Map<string, string[]>> {
    const rows = await this.db
      .selectFrom('provider_memberships as m')
      .innerJoin('groups as g', 'g.id', 'm.group_id')
      .select(['g.name', 'm.provider'])
      .where('m.user_id', '=', userId)
      .orderBy('g.name')
      .execute();
    const byGroup = new Map<string, string[]>();
    for (const r of rows) byGroup.set(r.name, [...(byGroup.get(r.name) ?? []), r.provider]);
    return byGroup;
  }
}

/**
 * The chain `from ⊂ … ⊂ to` following child→parent edges, or undefined when `from` does not
 * inherit from `to`. Breadth-first, so the path named in an error is a shortest one.
 */
export function inheritancePath(edges: NestingEdge[], from: string, to: string): string[] | undefined {
  const parents = new Map<string, string[]>();
  for (const e of edges) parents.set(e.child, [...(parents.get(e.child) ?? []), e.parent]);
  const previous = new Map<string, string>();
  const queue = [from];
  const seen = new Set([from]);
  while (queue.length > 0) {
    const current = queue.shift() as string;
    if (current === to) {
      const path = [to];
      while (path[0] !== from) path.unshift(previous.get(path[0] as string) as string);
      return path;
    }
    for (const parent of parents.get(current) ?? []) {
      if (seen.has(parent)) continue;
      seen.add(parent);
      previous.set(parent, current);
      queue.push(parent);
    }
  }
  return undefined;
}
