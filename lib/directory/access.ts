import type { Database } from '../db/schema.ts';
import { highest, isLevel, type Level } from '../levels.ts';

/** What the directory grants one user: effective groups (with inheritance) and the level they give. */
export interface DirectoryGrant {
  groups: string[];
  level: Level | null;
}

interface GroupNode {
  id: number;
  name: string;
  level: Level | null;
  parents: number[];
}

const NO_GRANT: DirectoryGrant = Object.freeze({ groups: Object.freeze([]) as unknown as string[], level: null });

/**
 * An in-memory picture of groups, nesting and membership, so the request path answers "which
 * groups and which level does user N have" without touching the database. It is rebuilt whole
 * from three small queries whenever the directory changes; answers are memoised per user until then.
 */
export class AccessIndex {
  private groups = new Map<number, GroupNode>();
  private membership = new Map<number, number[]>();
  private disabled = new Set<number>();
  /** Subject → user id, for users the directory says something about (members, disabled). */
  private idBySub = new Map<string, number>();
  /** Issuer and subject (identityKey) → user id, for the same users. */
  private idByIdentity = new Map<string, number>();
  private withIdentity = new Set<number>();
  private subById = new Map<number, string>();
  /** Local accounts (of the embedded provider) among them. */
  private local = new Set<number>();
  private ancestorsMemo = new Map<number, number[]>();
  private grantMemo = new Map<number, DirectoryGrant>();

  static async load(database: Database): Promise<AccessIndex> {
    const index = new AccessIndex();
    await index.reload(database);
    return index;
  }

  async reload(database: Database): Promise<void> {
    const db = database.db;
    // A user's memberships are the admins' (group_members) and the providers' (provider_memberships,
    // replaced at every sign-in and refresh): both nest and grant alike.
    const [groupRows, nestingRows, memberRows, managedRows, disabledRows] = await Promise.all([
      db.selectFrom('groups').select(['id', 'name', 'level']).execute(),
      db.selectFrom('group_nesting').select(['parent_id', 'child_id']).execute(),
      db.selectFrom('group_members').select(['group_id', 'user_id']).execute(),
      db.selectFrom('provider_memberships').select(['group_id', 'user_id']).execute(),
      db.selectFrom('users').select(['id', 'sub', 'password_hash']).where('disabled_at', 'is not', null).execute(),
    ]);
    const memberSubs = await db
      .selectFrom('users')
      .select(['id', 'sub', 'password_hash'])
      .where((eb) => eb.or([eb('id', 'in', db.selectFrom('group_members').select('user_id')), eb('id', 'in', db.selectFrom('provider_memberships').select('user_id'))]))
      .execute();
    // Which provider account each of those users is, so a bearer token's issuer and subject find
    // the right one (two providers may use the same subject for two people). Only for those users,
    // picked by the database: many signed-in users in no group cost this index nothing.
    const identityRows = await db
      .selectFrom('provider_identities')
      .select(['issuer', 'subject', 'user_id'])
      .where((eb) =>
        eb.or([
          eb('user_id', 'in', db.selectFrom('group_members').select('user_id')),
          eb('user_id', 'in', db.selectFrom('provider_memberships').select('user_id')),
          eb('user_id', 'in', db.selectFrom('users').select('id').where('disabled_at', 'is not', null)),
        ]),
      )
      .execute();
    const groups = new Map<number, GroupNode>();
    for (const g of groupRows) {
      groups.set(Number(g.id), { id: Number(g.id), name: g.name, level: isLevel(g.level) ? g.level : null, parents: [] });
    }
    for (const n of nestingRows) groups.get(Number(n.child_id))?.parents.push(Number(n.parent_id));
    const membership = new Map<number, number[]>();
    for (const m of [...memberRows, ...managedRows]) {
      const list = membership.get(Number(m.user_id)) ?? [];
      // A group held both ways appears twice; grantFor and explain count each group once anyway.
      list.push(Number(m.group_id));
      membership.set(Number(m.user_id), list);
    }
    // Swap everything at once so a concurrent request sees the old picture or the new, never half.
    this.groups = groups;
    this.membership = membership;
    this.disabled = new Set(disabledRows.map((r) => Number(r.id)));
    this.idBySub = new Map([...memberSubs, ...disabledRows].map((r) => [r.sub, Number(r.id)]));
    this.idByIdentity = new Map(identityRows.map((r) => [identityKey(r.issuer, r.subject), Number(r.user_id)]));
    this.withIdentity = new Set(identityRows.map((r) => Number(r.user_id)));
    this.subById = new Map([...memberSubs, ...disabledRows].map((r) => [Number(r.id), r.sub]));
    this.local = new Set([...memberSubs, ...disabledRows].filter((r) => r.password_hash !== null).map((r) => Number(r.id)));
    this.ancestorsMemo = new Map();
    this.grantMemo = new Map();
  }

  /** The group itself and every group it inherits from, however deep (nesting is acyclic). */
  private ancestors(groupId: number): number[] {
    const memo = this.ancestorsMemo.get(groupId);
    if (memo) return memo;
    const seen = new Set<number>();
    const stack = [groupId];
    while (stack.length > 0) {
      const id = stack.pop() as number;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const parent of this.groups.get(id)?.parents ?? []) stack.push(parent);
    }
    const list = [...seen];
    this.ancestorsMemo.set(groupId, list);
    return list;
  }

  /** The directory id of a subject the directory knows something about (bearer tokens). */
  userIdOf(sub: string): number | undefined {
    return this.idBySub.get(sub);
  }

  /**
   * The directory id of a provider account the directory knows something about: by issuer and
   * subject; for a user from before provider identities were recorded, by the Atrium subject
   * (`legacy`, given only for a provider whose subjects are Atrium's own, saying whether it is the
   * embedded one, whose accounts are the local ones).
   */
  userIdOfIdentity(issuer: string, subject: string, legacy?: { sub: string; local: boolean }): number | undefined {
    const id = this.idByIdentity.get(identityKey(issuer, subject));
    if (id !== undefined || legacy === undefined) return id;
    const found = this.idBySub.get(legacy.sub);
    // Someone else's identity that happens to share the Atrium subject is not this account, and a
    // local account is the embedded provider's alone (see ProviderAccounts).
    return found !== undefined && !this.withIdentity.has(found) && this.local.has(found) === legacy.local ? found : undefined;
  }

  /** The Atrium subject of a user the index knows (userIdOfIdentity's answers). */
  subjectOf(userId: number): string | undefined {
    return this.subById.get(userId);
  }

  /** Disabled accounts: their sessions stop working at the next request. */
  isDisabled(userId: number): boolean {
    return this.disabled.has(userId);
  }

  /**
   * Why a user is in each effective group: the chain from a direct membership up to that group,
   * e.g. `["contractors", "ea"]` for ea inherited through contractors ⊂ ea.
   */
  explain(userId: number): { group: string; level: Level | null; path: string[] }[] {
    const direct = this.membership.get(userId) ?? [];
    const paths = new Map<number, number[]>();
    const queue: number[][] = direct.map((id) => [id]);
    while (queue.length > 0) {
      const path = queue.shift() as number[];
      const id = path[path.length - 1] as number;
      if (paths.has(id)) continue;
      paths.set(id, path);
      for (const parent of this.groups.get(id)?.parents ?? []) if (!paths.has(parent)) queue.push([...path, parent]);
    }
    return [...paths.entries()]
      .map(([id, path]) => ({
        group: this.groups.get(id)?.name ?? String(id),
        level: this.groups.get(id)?.level ?? null,
        path: path.map((p) => this.groups.get(p)?.name ?? String(p)),
      }))
      .sort((a, b) => a.group.localeCompare(b.group));
  }

  grantFor(userId: number | undefined): DirectoryGrant {
    if (userId === undefined) return NO_GRANT;
    const memo = this.grantMemo.get(userId);
    if (memo) return memo;
    const direct = this.membership.get(userId);
    if (!direct) return NO_GRANT;
    const effective = new Set<number>();
    for (const groupId of direct) for (const id of this.ancestors(groupId)) effective.add(id);
    let level: Level | null = null;
    const names: string[] = [];
    for (const id of effective) {
      const group = this.groups.get(id);
      if (!group) continue;
      names.push(group.name);
      level = highest(level, group.level);
    }
    const grant = Object.freeze({ groups: Object.freeze(names.sort()) as unknown as string[], level });
    this.grantMemo.set(userId, grant);
    return grant;
  }
}

/** One string for an issuer and a subject; a newline is in neither (both come from validated JWTs). */
export function identityKey(issuer: string, subject: string): string {
  return `${issuer}\n${subject}`;
}
