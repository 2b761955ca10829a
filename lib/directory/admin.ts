import type { Database } from '../db/schema.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import type { Level } from '../levels.ts';
import type { SessionStore } from '../sessions/store.ts';
import type { AuditLog } from './audit.ts';
import type { GroupDirectory, GroupRecord } from './groups.ts';
import { bumpRevision } from './revision.ts';
import type { UserDirectory, UserRecord } from './users.ts';

/** Who is acting, as it appears in the audit log: `admin@example.com`, `cli:alice`, `webhook:idp`. */
export type Actor = string;

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/**
 * Every change an administrator can make, in one place for the web console, the CLI and access
 * request approvals: validate, change, audit, then tell the portal (`onChange`) so the next
 * request already sees the result.
 */
export class DirectoryAdmin {
  constructor(
    private readonly deps: {
      database: Database;
      users: UserDirectory;
      groups: GroupDirectory;
      audit: AuditLog;
      sessions: SessionStore;
      onChange?: () => Promise<void>;
      /** Ends what the identity provider remembers of a disabled account (the embedded one). */
      onDisable?: (sub: string) => Promise<unknown>;
    },
  ) {}

  private async changed(): Promise<void> {
    await this.deps.onChange?.();
  }

  /** A user by numeric id, subject or email (an email shared by several accounts is ambiguous). */
  async resolveUser(ref: string | number): Promise<UserRecord> {
    const { users } = this.deps;
    if (typeof ref === 'number') {
      const user = await users.byId(ref);
      if (user) return user;
      throw new NotFoundError(`There is no user with id ${ref}.`);
    }
    const text = ref.trim();
    // A subject may itself be all digits (some providers): an exact subject wins over an id.
    const exact = await users.bySub(text);
    if (exact) return exact;
    if (/^\d{1,15}$/.test(text)) {
      const user = await users.byId(Number(text));
      if (user) return user;
    }
    if (text.includes('@')) {
      const found = await users.byEmail(text);
      if (found.length === 1) return found[0] as UserRecord;
      if (found.length > 1) throw new ConflictError(`Several accounts use ${text}; name the user by id or subject.`, 'ambiguous_user');
    }
    throw new NotFoundError(`There is no user "${text}".`);
  }

  async createGroup(actor: Actor, input: { name: string; level?: Level | null; description?: string }): Promise<GroupRecord> {
    const group = await this.deps.groups.create(input);
    await this.deps.audit.record({ actor, action: 'group.create', target: `group:${group.name}`, after: group });
    await this.changed();
    return group;
  }

  async updateGroup(actor: Actor, name: string, changes: { name?: string; description?: string; level?: Level | null }): Promise<GroupRecord> {
    const before = await this.deps.groups.byName(name);
    const after = await this.deps.groups.update(name, changes);
    await this.deps.audit.record({ actor, action: 'group.update', target: `group:${name}`, before, after });
    await this.changed();
    return after;
  }

  async deleteGroup(actor: Actor, name: string): Promise<void> {
    const before = await this.deps.groups.byName(name);
    const members = (await this.deps.groups.members(name)).map((m) => m.email ?? m.sub);
    await this.deps.groups.remove(name);
    await this.deps.audit.record({ actor, action: 'group.delete', target: `group:${name}`, before: { ...before, members } });
    await this.changed();
  }

  async nest(actor: Actor, child: string, parent: string): Promise<void> {
    await this.deps.groups.nest(child, parent);
    await this.deps.audit.record({ actor, action: 'group.nest', target: `group:${child}`, after: { child, parent } });
    await this.changed();
  }

  async unnest(actor: Actor, child: string, parent: string): Promise<void> {
    await this.deps.groups.unnest(child, parent);
    await this.deps.audit.record({ actor, action: 'group.unnest', target: `group:${child}`, before: { child, parent } });
    await this.changed();
  }

  async addMember(actor: Actor, group: string, userRef: string | number): Promise<UserRecord> {
    const user = await this.resolveUser(userRef);
    await this.deps.groups.addMember(group, user.id);
    await this.deps.audit.record({ actor, action: 'member.add', target: `user:${user.email ?? user.sub}`, after: { group } });
    await this.changed();
    return user;
  }

  async removeMember(actor: Actor, group: string, userRef: string | number): Promise<UserRecord> {
    const user = await this.resolveUser(userRef);
    const removed = await this.deps.groups.removeMember(group, user.id);
    if (!removed) throw new NotFoundError(`${user.email ?? user.sub} is not a direct member of "${group}".`);
    await this.deps.audit.record({ actor, action: 'member.remove', target: `user:${user.email ?? user.sub}`, before: { group } });
    await this.changed();
    return user;
  }

  /** A local account of the embedded provider. Without a password it cannot sign in until one is set. */
  async addLocalUser(actor: Actor, input: { email: string; name?: string; password?: string }): Promise<UserRecord> {
    const email = input.email.trim().toLowerCase();
    if (!EMAIL.test(email)) throw new BadRequestError(`"${input.email}" is not an email address.`);
    if (input.password !== undefined && input.password.length < 12) throw new BadRequestError('A password has at least 12 characters.');
    if ((await this.deps.users.localAccount(email)) !== undefined) throw new ConflictError(`A local account for ${email} already exists.`, 'user_exists');
    // An unusable random password until an admin sets one: the account exists but cannot sign in.
    const password = input.password ?? `!${crypto.randomUUID()}${crypto.randomUUID()}`;
    const user = await this.deps.users.createLocal({ email, name: input.name, password });
    await this.deps.audit.record({ actor, action: 'user.create', target: `user:${email}`, after: { email, name: input.name ?? null, withPassword: input.password !== undefined } });
    return user;
  }

  async setDisabled(actor: Actor, userRef: string | number, disabled: boolean): Promise<UserRecord> {
    const user = await this.resolveUser(userRef);
    await this.deps.users.setDisabled(user.id, disabled);
    const ended = disabled ? await this.deps.sessions.destroyBySubject(user.sub) : 0;
    if (disabled) await this.deps.onDisable?.(user.sub);
    await bumpRevision(this.deps.database);
    await this.deps.audit.record({
      actor,
      action: disabled ? 'user.disable' : 'user.enable',
      target: `user:${user.email ?? user.sub}`,
      before: { disabled: user.disabled },
      after: { disabled, sessionsEnded: ended },
    });
    await this.changed();
    return { ...user, disabled };
  }

  async revokeSessions(actor: Actor, userRef: string | number): Promise<number> {
    const user = await this.resolveUser(userRef);
    const ended = await this.deps.sessions.destroyBySubject(user.sub);
    await this.deps.audit.record({ actor, action: 'session.revoke_all', target: `user:${user.email ?? user.sub}`, after: { sessionsEnded: ended } });
    return ended;
  }

  async revokeSession(actor: Actor, userRef: string | number, sessionId: string): Promise<void> {
    const user = await this.resolveUser(userRef);
    const ids = await this.deps.sessions.idsBySubject(user.sub);
    if (!ids.includes(sessionId)) throw new NotFoundError('That session does not exist or has already ended.');
    await this.deps.sessions.destroy(sessionId);
    await this.deps.audit.record({ actor, action: 'session.revoke', target: `user:${user.email ?? user.sub}`, after: { session: `${sessionId.slice(0, 8)}…` } });
  }
}
