import type { Database } from '../db/schema.ts';

export interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  before: unknown;
  after: unknown;
}

/** Who did what to whom, and when: every directory change writes one row. */
export class AuditLog {
  constructor(private readonly database: Database) {}

  async record(entry: { actor: string; action: string; target: string; before?: unknown; after?: unknown }): Promise<void> {
    await this.database.db
      .insertInto('audit_log')
      .values({
        at: Date.now(),
        actor: entry.actor.slice(0, 400),
        action: entry.action.slice(0, 100),
        target: entry.target.slice(0, 400),
        before: entry.before === undefined ? null : JSON.stringify(entry.before),
        after: entry.after === undefined ? null : JSON.stringify(entry.after),
      })
      .execute();
  }

  async page(options: { page: number; pageSize: number }): Promise<{ entries: AuditEntry[]; total: number }> {
    const db = this.database.db;
    const [rows, count] = await Promise.all([
      db
        .selectFrom('audit_log')
        .selectAll()
        .orderBy('id', 'desc')
        .limit(options.pageSize)
        .offset((options.page - 1) * options.pageSize)
        .execute(),
      db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    ]);
    return {
      total: Number(count.n),
      entries: rows.map((r) => ({
        id: Number(r.id),
        at: Number(r.at),
        actor: r.actor,
        action: r.action,
        target: r.target,
        before: r.before === null ? undefined : JSON.parse(r.before),
        after: r.after === null ? undefined : JSON.parse(r.after),
      })),
    };
  }
}
