import type { Database } from '../db/schema.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../errors.ts';
import type { Level } from '../levels.ts';
import type { SessionStore } from '../sessions/store.ts';
import type { AuditLog } from './audit.ts';
import type { GroupDirectory, GroupRecord } from './groups.ts';
import { bumpRevision } from './revision.ts';
import type { UserDirectory, UserRecord } from './users.ts';
import { passwordProblem, verifyPassword } from './passwords.ts';
import { DEFAULT_RESET_HOURS, endProviderSessionsExcept, MAX_RESET_HOURS, ResetLinks } from './reset-links.ts';
import { forgetAccount } from '../db/oidc-payloads.ts';

/** Who is acting, as it appears in the audit log: `admin@example.com`, `cli:alice`, `webhook:idp`. */
export type Actor = string;

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/** One answer for every link that cannot be used (unknown, tampered, used, expired, disabled account): it tells nothing more. */
const deadResetLink = () =>
  new BadRequestError('This reset link is not valid: it may have been used already, have expired or been mistyped. Ask an administrator for a new one.', { code: 'reset_link_invalid' });

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
    return (await this.addMemberUntil(actor, group, userRef, undefined)).user;
  }

  /**
   * Adds a membership that ends by itself at `until` (see GroupDirectory.addMember for how it meets
   * an existing one); `sweepExpiredMemberships` ends it. Without `until`, a permanent membership.
   */
  async addMemberUntil(actor: Actor, group: string, userRef: string | number, until: number | undefined): Promise<{ user: UserRecord; expiresAt: number | null }> {
    const user = await this.resolveUser(userRef);
    const expiresAt = await this.deps.groups.addMember(group, user.id, until);
    await this.deps.audit.record({ actor, action: 'member.add', target: `user:${user.email ?? user.sub}`, after: expiresAt === null ? { group } : { group, until: new Date(expiresAt).toISOString() } });
    await this.changed();
    return { user, expiresAt };
  }

  /** Ends every timed membership whose time has come, each audited; returns how many ended. */
  async sweepExpiredMemberships(now = Date.now()): Promise<number> {
    let ended = 0;
    for (const expired of await this.deps.groups.expiredMemberships(now)) {
      const user = await this.deps.users.byId(expired.userId);
      if (!(await this.deps.groups.removeMember(expired.group, expired.userId))) continue;
      ended++;
      await this.deps.audit.record({
        actor: 'system:expiry',
        action: 'member.expire',
        target: `user:${user?.email ?? user?.sub ?? expired.userId}`,
        before: { group: expired.group, until: new Date(expired.expiresAt).toISOString() },
      });
    }
    if (ended > 0) await this.changed();
    return ended;
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
    if (input.password !== undefined) await this.assertNewPassword(input.password, email);
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
    // How a revocation made elsewhere (the CLI) reaches the portals' open sockets (socket-sessions.ts).
    await bumpRevision(this.deps.database);
    return ended;
  }

  async revokeSession(actor: Actor, userRef: string | number, sessionId: string): Promise<void> {
    const user = await this.resolveUser(userRef);
    const ids = await this.deps.sessions.idsBySubject(user.sub);
    if (!ids.includes(sessionId)) throw new NotFoundError('That session does not exist or has already ended.');
    await this.deps.sessions.destroy(sessionId);
    await this.deps.audit.record({ actor, action: 'session.revoke', target: `user:${user.email ?? user.sub}`, after: { session: `${sessionId.slice(0, 8)}…` } });
    await bumpRevision(this.deps.database);
  }

  /** Refuses a password that the rules (passwords.ts) refuse, with their message. Never echoes the password. */
  async assertNewPassword(password: string, email: string | null | undefined): Promise<void> {
    const problem = await passwordProblem(password, { email });
    if (problem) throw new BadRequestError(problem, { code: 'weak_password' });
  }

  private resetLinks(): ResetLinks {
    return new ResetLinks(this.deps.database);
  }

  /**
   * A signed-in local user changes their own password. The current one must be right; the new one
   * must pass the rules. Every other session of the user ends, portal and embedded provider alike,
   * except `keep` (the browser that made the change). Earlier reset links stop working.
   */
  async changePassword(
    actor: Actor,
    userId: number,
    input: { current: string; next: string; confirm: string },
    keep: { sessionId?: string | undefined; idpSid?: string | undefined } = {},
  ): Promise<{ sessionsEnded: number }> {
    const user = await this.resolveUser(userId);
    const account = user.email ? await this.deps.users.localAccount(user.email) : undefined;
    if (!account || account.id !== user.id) throw new BadRequestError('This account signs in through another service; its password is changed there.', { code: 'not_local' });
    if (account.disabled) throw new BadRequestError('This account is disabled.', { code: 'disabled' });
    if (!(await verifyPassword(input.current, account.passwordHash))) throw new BadRequestError('The current password is not right.', { code: 'wrong_password' });
    if (input.next !== input.confirm) throw new BadRequestError('The new password and its repetition differ.', { code: 'password_mismatch' });
    if (input.next === input.current) throw new BadRequestError('The new password is the same as the current one.', { code: 'same_password' });
    await this.assertNewPassword(input.next, account.email);
    await this.deps.users.setPassword(user.id, input.next);
    await this.resetLinks().retireFor(user.id);
    let ended = 0;
    for (const id of await this.deps.sessions.idsBySubject(user.sub)) {
      if (id === keep.sessionId) continue;
      await this.deps.sessions.destroy(id);
      ended += 1;
    }
    await endProviderSessionsExcept(this.deps.database, user.sub, keep.idpSid);
    await this.deps.audit.record({ actor, action: 'user.password_change', target: `user:${user.email ?? user.sub}`, after: { sessionsEnded: ended } });
    return { sessionsEnded: ended };
  }

  /**
   * A one-time link for a local account to set a new password, valid `hours` (24 by default, a week
   * at most). Returns the token: it is shown to the admin once and stored only as its hash.
   */
  async issueResetLink(actor: Actor, userRef: string | number, options: { hours?: number } = {}): Promise<{ user: UserRecord; token: string; expiresAt: number }> {
    const hours = options.hours ?? DEFAULT_RESET_HOURS;
    if (!Number.isFinite(hours) || hours <= 0 || hours > MAX_RESET_HOURS) throw new BadRequestError(`A reset link is valid for more than 0 and at most ${MAX_RESET_HOURS} hours.`, { code: 'bad_hours' });
    const user = await this.resolveUser(userRef);
    if (!user.local) throw new BadRequestError(`${user.email ?? user.sub} signs in through another service: it has no password here to reset.`, { code: 'not_local' });
    if (user.disabled) throw new BadRequestError(`${user.email ?? user.sub} is disabled: enable it before sending a reset link.`, { code: 'disabled' });
    const { token, expiresAt } = await this.resetLinks().issue(user.id, actor, hours);
    await this.deps.audit.record({ actor, action: 'user.reset_link_issued', target: `user:${user.email ?? user.sub}`, after: { expiresAt: new Date(expiresAt).toISOString() } });
    return { user, token, expiresAt };
  }

  /** The account a reset link may still set a password for, or why not (one message for every kind of dead link). */
  async resetLinkAccount(token: string): Promise<{ user: UserRecord; linkId: number }> {
    const dead = deadResetLink();
    const link = await this.resetLinks().find(token);
    if (!link || link.usedAt !== null || link.expiresAt <= Date.now()) throw dead;
    const user = await this.deps.users.byId(link.userId);
    if (!user || !user.local || user.disabled) throw dead;
    return { user, linkId: link.id };
  }

  /** Uses a reset link once: sets the new password and ends every session of the user. */
  async resetPassword(token: string, input: { next: string; confirm: string }): Promise<UserRecord> {
    const { user, linkId } = await this.resetLinkAccount(token);
    if (input.next !== input.confirm) throw new BadRequestError('The new password and its repetition differ.', { code: 'password_mismatch' });
    // Checked before the link is used up, so a refused password does not cost the link.
    await this.assertNewPassword(input.next, user.email);
    // Of two uses racing each other, one wins; the other is told the link is used up.
    if (!(await this.resetLinks().consume(linkId))) throw deadResetLink();
    await this.deps.users.setPassword(user.id, input.next);
    await this.resetLinks().retireFor(user.id);
    const ended = await this.deps.sessions.destroyBySubject(user.sub);
    await forgetAccount(this.deps.database, user.sub);
    await this.deps.audit.record({ actor: `reset-link:${user.email ?? user.sub}`, action: 'user.password_reset', target: `user:${user.email ?? user.sub}`, after: { sessionsEnded: ended } });
    return user;
  }
}
