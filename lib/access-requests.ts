import type { Kysely } from 'kysely';
import type { Database } from './db/schema.ts';
import type { Actor, DirectoryAdmin } from './directory/admin.ts';
import type { AuditLog } from './directory/audit.ts';
import { BadRequestError, ConflictError, NotFoundError } from './errors.ts';
import { isLevel, type Level } from './levels.ts';

export type RequestStatus = 'pending' | 'approved' | 'denied';

export interface AccessRequest {
  id: number;
  userId: number;
  email: string | null;
  name: string | null;
  level: Level;
  reason: string;
  status: RequestStatus;
  createdAt: number;
  decidedAt: number | null;
  decidedBy: string | null;
  note: string | null;
  /** For an approval for a limited time: when the membership it granted ends. */
  expiresAt: number | null;
}

/** How long an approval may last, in days; none: permanently. */
export const GRANT_DAYS = [7, 30] as const;
const DAY_MS = 24 * 60 * 60 * 1000;

const REASON_MAX = 1000;

/**
 * "Let me in" from the 403 page: a user asks for a level with a reason; an admin approves (the user
 * joins the built-in group of that level, permanently or for 7 or 30 days) or denies; the user sees
 * the outcome on the launcher and the history on /profile, admins on the requests page.
 */
export class AccessRequests {
  constructor(private readonly database: Database, private readonly audit: AuditLog, private readonly admin: DirectoryAdmin) {}

  /** `expires_at` came with a later migration than the typed schema (lib/db/schema.ts). */
  private get db(): Kysely<any> {
    return this.database.db as unknown as Kysely<any>;
  }

  private select() {
    return this.db
      .selectFrom('access_requests as r')
      .innerJoin('users as u', 'u.id', 'r.user_id')
      .select(['r.id', 'r.user_id', 'u.email', 'u.name', 'r.level', 'r.reason', 'r.status', 'r.created_at', 'r.decided_at', 'r.decided_by', 'r.note', 'r.expires_at']);
  }

  private static toRecord(r: any): AccessRequest {
    return {
      id: Number(r.id),
      userId: Number(r.user_id),
      email: r.email,
      name: r.name,
      level: r.level,
      reason: r.reason,
      status: r.status,
      createdAt: Number(r.created_at),
      decidedAt: r.decided_at === null ? null : Number(r.decided_at),
      decidedBy: r.decided_by,
      note: r.note,
      expiresAt: r.expires_at === null || r.expires_at === undefined ? null : Number(r.expires_at),
    };
  }

  /** One open request per user and level: asking again updates the reason. */
  async create(actor: Actor, userId: number, level: unknown, reason: unknown): Promise<AccessRequest> {
    if (!isLevel(level)) throw new BadRequestError('Ask for one of the levels stable, ea, devel or admin.');
    const text = typeof reason === 'string' ? reason.trim() : '';
    if (text.length < 3 || text.length > REASON_MAX) throw new BadRequestError(`Give a reason of 3 to ${REASON_MAX} characters.`);
    const db = this.database.db;
    const open = await db.selectFrom('access_requests').select('id').where('user_id', '=', userId).where('level', '=', level).where('status', '=', 'pending').executeTakeFirst();
    let id: number;
    if (open) {
      id = Number(open.id);
      await db.updateTable('access_requests').set({ reason: text, created_at: Date.now() }).where('id', '=', id).execute();
    } else {
      const result = await db
        .insertInto('access_requests')
        .values({ user_id: userId, level, reason: text, status: 'pending', created_at: Date.now(), decided_at: null, decided_by: null, note: null })
        .executeTakeFirst();
      id = Number(result.insertId);
    }
    await this.audit.record({ actor, action: 'access_request.create', target: `request:${id}`, after: { level, reason: text } });
    return this.byId(id);
  }

  async byId(id: number): Promise<AccessRequest> {
    const row = await this.select().where('r.id', '=', id).executeTakeFirst();
    if (!row) throw new NotFoundError('There is no such access request.');
    return AccessRequests.toRecord(row);
  }

  async pending(): Promise<AccessRequest[]> {
    return (await this.select().where('r.status', '=', 'pending').orderBy('r.created_at').execute()).map(AccessRequests.toRecord);
  }

  /** Decided requests, newest decision first: who asked, when, for what, and what came of it. */
  async history(limit = 50): Promise<AccessRequest[]> {
    return (await this.select().where('r.status', '!=', 'pending').orderBy('r.decided_at', 'desc').orderBy('r.id', 'desc').limit(limit).execute()).map(AccessRequests.toRecord);
  }

  async forUser(userId: number, limit = 5): Promise<AccessRequest[]> {
    return (await this.select().where('r.user_id', '=', userId).orderBy('r.id', 'desc').limit(limit).execute()).map(AccessRequests.toRecord);
  }

  /** The levels a user has asked for that no administrator has decided yet (the 403 page's "Pending"). */
  async pendingLevels(userId: number): Promise<Level[]> {
    const rows = await this.database.db.selectFrom('access_requests').select('level').where('user_id', '=', userId).where('status', '=', 'pending').execute();
    return rows.map((r) => r.level).filter(isLevel);
  }

  /**
   * When each of a user's timed memberships ends (an approval "for 7 days", or an admin's), by group,
   * soonest first: /profile shows them beside the groups.
   */
  async membershipEnds(userId: number): Promise<{ group: string; expiresAt: number }[]> {
    const rows = await this.db
      .selectFrom('membership_expiries as x')
      .innerJoin('groups as g', 'g.id', 'x.group_id')
      .select(['g.name', 'x.expires_at'])
      .where('x.user_id', '=', userId)
      .orderBy('x.expires_at')
      .orderBy('g.name')
      .execute();
    return rows.map((r: any) => ({ group: String(r.name), expiresAt: Number(r.expires_at) }));
  }

  /** Approves (permanently, or for `days` of GRANT_DAYS) or denies a pending request. */
  async decide(actor: Actor, id: number, decision: 'approved' | 'denied', note?: string, options: { days?: number; now?: number } = {}): Promise<AccessRequest> {
    const { days } = options;
    if (days !== undefined && !(GRANT_DAYS as readonly number[]).includes(days)) throw new BadRequestError(`Approve permanently or for ${GRANT_DAYS.join(' or ')} days.`);
    const request = await this.byId(id);
    if (request.status !== 'pending') throw new ConflictError(`This request was already ${request.status}.`, 'request_decided');
    const cleanNote = (note ?? '').trim().slice(0, REASON_MAX) || null;
    // Claim the request first, so two admins deciding at once cannot both act on it.
    const decidedAt = options.now ?? Date.now();
    const claimed = await this.db
      .updateTable('access_requests')
      .set({ status: decision, decided_at: decidedAt, decided_by: actor.slice(0, 400), note: cleanNote })
      .where('id', '=', id)
      .where('status', '=', 'pending')
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) === 0) throw new ConflictError('Another administrator decided this request first.', 'request_decided');
    let expiresAt: number | null = null;
    if (decision === 'approved') {
      const until = days === undefined ? undefined : decidedAt + days * DAY_MS;
      expiresAt = (await this.admin.addMemberUntil(actor, request.level, request.userId, until)).expiresAt;
      if (expiresAt !== null) await this.db.updateTable('access_requests').set({ expires_at: expiresAt }).where('id', '=', id).execute();
    }
    const until = expiresAt === null ? {} : { until: new Date(expiresAt).toISOString() };
    await this.audit.record({ actor, action: `access_request.${decision === 'approved' ? 'approve' : 'deny'}`, target: `request:${id}`, before: { status: 'pending' }, after: { status: decision, level: request.level, user: request.email, note: cleanNote, ...until } });
    return this.byId(id);
  }
}
