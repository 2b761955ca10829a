import type { Database } from '../db/schema.ts';
import type { AccessIndex } from '../directory/access.ts';
import type { AuditLog } from '../directory/audit.ts';
import { verifyPassword } from '../directory/passwords.ts';
import { BadRequestError, NotFoundError } from '../errors.ts';
import { newRecoveryCodes, recoveryCodeHash } from './recovery-codes.ts';
import { totpStep } from './totp.ts';

export type FactorKind = 'totp' | 'passkey';

/** What the profile and the console show of a factor: never its secret. */
export interface FactorSummary {
  id: number;
  kind: FactorKind;
  label: string;
  createdAt: number;
  lastUsedAt: number | null;
}

export interface StoredPasskey {
  id: number;
  userId: number;
  credentialId: string;
  publicKey: string;
  counter: number;
  transports: string[];
}

/** Whose factors: the account as the audit log names it (`user:<email or sub>`). */
export interface FactorOwner {
  id: number;
  email: string | null;
  sub: string;
}

const targetOf = (owner: FactorOwner) => `user:${owner.email ?? owner.sub}`;

/** The answer to a TOTP code: accepted, wrong (or expired), or a code of a step already used. */
export type CodeCheck = 'accepted' | 'wrong' | 'reused';

const MAX_FACTORS = 10;
const LABEL = /^[\p{L}\p{N} ._'()-]{1,100}$/u;

/** A label as typed, or the given default when it is empty; anything else odd is a clear 400. */
export function factorLabel(raw: unknown, fallback: string): string {
  const text = typeof raw === 'string' ? raw.trim() : '';
  if (text === '') return fallback;
  if (!LABEL.test(text)) throw new BadRequestError('A name for the factor: up to 100 letters, digits, spaces and . _ \' ( ) -', { code: 'bad_factor_label' });
  return text;
}

/**
 * The second factors of local accounts (TOTP secrets, passkeys, recovery codes) and which groups
 * require one. Every change is audited with the actor who made it (the user, an admin, the CLI).
 */
export class FactorDirectory {
  constructor(private readonly deps: { database: Database; access: AccessIndex; audit: Pick<AuditLog, 'record'> }) {}

  private get db() {
    return this.deps.database.db;
  }

  async list(userId: number): Promise<FactorSummary[]> {
    const rows = await this.db.selectFrom('user_factors').select(['id', 'kind', 'label', 'created_at', 'last_used_at']).where('user_id', '=', userId).orderBy('id').execute();
    return rows.map((r) => ({ id: r.id, kind: r.kind as FactorKind, label: r.label, createdAt: Number(r.created_at), lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at) }));
  }

  /** An audit line about a sign-in step of the owner, with the owner as the actor. */
  async audit(owner: FactorOwner, action: string, after: Record<string, unknown>): Promise<void> {
    await this.deps.audit.record({ actor: owner.email ?? owner.sub, action, target: targetOf(owner), after });
  }

  /** Whether `password` is the local account's current one (adding a factor asks for it). */
  async passwordMatches(userId: number, password: string): Promise<boolean> {
    const row = await this.db.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirst();
    return row?.password_hash ? verifyPassword(password, row.password_hash) : false;
  }

  async hasFactor(userId: number): Promise<boolean> {
    const row = await this.db.selectFrom('user_factors').select('id').where('user_id', '=', userId).limit(1).executeTakeFirst();
    return row !== undefined;
  }

  async recoveryCodesLeft(userId: number): Promise<number> {
    const row = await this.db.selectFrom('recovery_codes').select((eb) => eb.fn.countAll<number>().as('n')).where('user_id', '=', userId).where('used_at', 'is', null).executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  private async assertRoom(userId: number): Promise<void> {
    if ((await this.list(userId)).length >= MAX_FACTORS) throw new BadRequestError(`An account has at most ${MAX_FACTORS} second factors; remove one first.`, { code: 'too_many_factors' });
  }

  /**
   * Adds an authenticator app once the user has typed a code it shows (so a mistyped scan cannot
   * lock them out). That code's step counts as used. Returns the new recovery codes when the
   * account had none left, else an empty list.
   */
  async enrolTotp(actor: string, owner: FactorOwner, input: { secret: string; code: string; label: string }, now = Date.now()): Promise<{ id: number; recoveryCodes: string[] }> {
    const userId = owner.id;
    const step = totpStep(input.secret, input.code, now);
    if (step === undefined) throw new BadRequestError('That code does not match. Type the six digits the app shows now.', { code: 'totp_mismatch' });
    await this.assertRoom(userId);
    const inserted = await this.db
      .insertInto('user_factors')
      .values({ user_id: userId, kind: 'totp', label: input.label, secret: input.secret, last_step: step, credential_id: null, public_key: null, counter: null, transports: null, created_at: now, last_used_at: null })
      .executeTakeFirstOrThrow();
    const id = Number(inserted.insertId);
    await this.deps.audit.record({ actor, action: 'factor.add', target: targetOf(owner), after: { kind: 'totp', id, label: input.label } });
    return { id, recoveryCodes: await this.recoveryCodesIfNone(actor, owner, now) };
  }

  /**
   * Checks a code against the user's authenticator apps. A step is accepted once: the update only
   * succeeds while the stored step is older, so two requests with the same code cannot both pass.
   */
  async checkTotp(userId: number, code: string, now = Date.now()): Promise<CodeCheck> {
    const rows = await this.db.selectFrom('user_factors').select(['id', 'secret']).where('user_id', '=', userId).where('kind', '=', 'totp').execute();
    let reused = false;
    for (const row of rows) {
      const step = row.secret ? totpStep(row.secret, code, now) : undefined;
      if (step === undefined) continue;
      const claimed = await this.db
        .updateTable('user_factors')
        .set({ last_step: step, last_used_at: now })
        .where('id', '=', row.id)
        .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', step)]))
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 1) return 'accepted';
      reused = true;
    }
    return reused ? 'reused' : 'wrong';
  }

  /** Spends a recovery code: true once per code, false for a wrong or spent one. */
  async useRecoveryCode(userId: number, code: string, now = Date.now()): Promise<boolean> {
    const spent = await this.db
      .updateTable('recovery_codes')
      .set({ used_at: now })
      .where('user_id', '=', userId)
      .where('code_hash', '=', recoveryCodeHash(code))
      .where('used_at', 'is', null)
      .executeTakeFirst();
    return Number(spent.numUpdatedRows) === 1;
  }

  /** New recovery codes, replacing every earlier one; shown once, stored as hashes. */
  async regenerateRecoveryCodes(actor: string, owner: FactorOwner, now = Date.now()): Promise<string[]> {
    const userId = owner.id;
    const codes = newRecoveryCodes();
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
      await trx.insertInto('recovery_codes').values(codes.map((c) => ({ user_id: userId, code_hash: recoveryCodeHash(c), created_at: now, used_at: null }))).execute();
    });
    await this.deps.audit.record({ actor, action: 'factor.recovery_codes', target: targetOf(owner), after: { count: codes.length } });
    return codes;
  }

  private async recoveryCodesIfNone(actor: string, owner: FactorOwner, now: number): Promise<string[]> {
    const userId = owner.id;
    return (await this.recoveryCodesLeft(userId)) > 0 ? [] : this.regenerateRecoveryCodes(actor, owner, now);
  }

  async addPasskey(actor: string, owner: FactorOwner, input: { credentialId: string; publicKey: string; counter: number; transports: string[]; label: string }, now = Date.now()): Promise<{ id: number; recoveryCodes: string[] }> {
    const userId = owner.id;
    await this.assertRoom(userId);
    // A credential is one authenticator's: registered once, to one account (also the same account again).
    const taken = () => new BadRequestError('This passkey is already registered here. Use it to sign in, or remove it first.', { code: 'passkey_taken' });
    if (await this.db.selectFrom('user_factors').select('id').where('credential_id', '=', input.credentialId).executeTakeFirst()) throw taken();
    const inserted = await this.db
      .insertInto('user_factors')
      .values({
        user_id: userId,
        kind: 'passkey',
        label: input.label,
        secret: null,
        last_step: null,
        credential_id: input.credentialId,
        public_key: input.publicKey,
        counter: input.counter,
        transports: input.transports.join(' ').slice(0, 200),
        created_at: now,
        last_used_at: null,
      })
      .executeTakeFirstOrThrow()
      .catch((err: unknown) => {
        // Two registrations of one credential at once: the unique index decides, and says so.
        throw isUniqueViolation(err) ? taken() : err;
      });
    const id = Number(inserted.insertId);
    await this.deps.audit.record({ actor, action: 'factor.add', target: targetOf(owner), after: { kind: 'passkey', id, label: input.label } });
    return { id, recoveryCodes: await this.recoveryCodesIfNone(actor, owner, now) };
  }

  async passkeysOf(userId: number): Promise<StoredPasskey[]> {
    const rows = await this.db.selectFrom('user_factors').selectAll().where('user_id', '=', userId).where('kind', '=', 'passkey').execute();
    return rows.map((r) => ({ id: r.id, userId: r.user_id, credentialId: r.credential_id as string, publicKey: r.public_key as string, counter: Number(r.counter ?? 0), transports: (r.transports ?? '').split(' ').filter(Boolean) }));
  }

  /** After a verified assertion: the authenticator's new counter (clones are detected by it going backwards). */
  async passkeyUsed(id: number, counter: number, now = Date.now()): Promise<void> {
    await this.db.updateTable('user_factors').set({ counter, last_used_at: now }).where('id', '=', id).execute();
  }

  /** Removes one of the user's own factors; the last one takes the recovery codes with it. */
  async remove(actor: string, owner: FactorOwner, factorId: number): Promise<void> {
    const userId = owner.id;
    const row = await this.db.selectFrom('user_factors').select(['id', 'kind', 'label']).where('id', '=', factorId).where('user_id', '=', userId).executeTakeFirst();
    if (!row) throw new NotFoundError('There is no such factor on this account.');
    await this.db.deleteFrom('user_factors').where('id', '=', factorId).execute();
    if (!(await this.hasFactor(userId))) await this.db.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    await this.deps.audit.record({ actor, action: 'factor.remove', target: targetOf(owner), before: { kind: row.kind, id: row.id, label: row.label } });
  }

  /** An admin's reset: every factor and recovery code of the account goes. Returns how many factors. */
  async resetAll(actor: string, owner: FactorOwner): Promise<number> {
    const userId = owner.id;
    const before = await this.list(userId);
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('user_factors').where('user_id', '=', userId).execute();
      await trx.deleteFrom('recovery_codes').where('user_id', '=', userId).execute();
    });
    await this.deps.audit.record({ actor, action: 'factor.reset', target: targetOf(owner), before: before.map((f) => ({ kind: f.kind, id: f.id, label: f.label })), after: [] });
    return before.length;
  }

  /** Groups whose members must have a second factor (by name). */
  async requiringGroups(): Promise<string[]> {
    const rows = await this.db.selectFrom('groups').select('name').where('requires_second_factor', '=', 1).orderBy('name').execute();
    return rows.map((r) => r.name);
  }

  /** Whether the user is (transitively) in a group that requires a second factor. */
  async requiredFor(userId: number): Promise<string | undefined> {
    const required = await this.requiringGroups();
    const mine = this.deps.access.grantFor(userId).groups;
    return required.find((g) => mine.includes(g));
  }

  async setGroupRequirement(actor: string, group: string, required: boolean): Promise<void> {
    const row = await this.db.selectFrom('groups').select(['id', 'requires_second_factor']).where('name', '=', group).executeTakeFirst();
    if (!row) throw new NotFoundError(`There is no group "${group}".`);
    const before = Number(row.requires_second_factor) === 1;
    if (before === required) return;
    await this.db.updateTable('groups').set({ requires_second_factor: required ? 1 : 0 }).where('id', '=', row.id).execute();
    await this.deps.audit.record({ actor, action: 'group.second_factor', target: `group:${group}`, before: { required: before }, after: { required } });
  }
}

/** A row refused by a unique index: SQLite's constraint error, or MySQL's duplicate entry (1062). */
function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: unknown; errno?: unknown };
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'ER_DUP_ENTRY' || e?.errno === 1062;
}
