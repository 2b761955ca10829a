import { sql, type ExpressionBuilder } from 'kysely';
import type { Database, DB } from '../db/schema.ts';

export interface AuditEntry {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string;
  before: unknown;
  after: unknown;
}

/**
 * Which entries to show or export. Text filters are case-insensitive substrings, except `action`:
 * exact, or a prefix when it ends in "." or "*" (`session.` is every session action). Times are
 * milliseconds, `from` inclusive and `to` exclusive.
 */
export interface AuditFilter {
  actor?: string;
  action?: string;
  target?: string;
  from?: number;
  to?: number;
}

/** Rows an export reads per query: a long log streams in bounded memory. */
const EXPORT_BATCH = 500;
/** The LIKE escape character, the same on SQLite and MySQL (SQLite has no default one). */
const ESCAPE = '!';

/** Who did what to whom, and when: every directory change, every sign-in and sign-out writes one row. */
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

  /** One page of entries matching the filter, newest first, and how many match in all. */
  async page(options: { page: number; pageSize: number; filter?: AuditFilter }): Promise<{ entries: AuditEntry[]; total: number }> {
    const db = this.database.db;
    const where = matching(options.filter ?? {});
    const [rows, count] = await Promise.all([
      db
        .selectFrom('audit_log')
        .selectAll()
        .where(where)
        .orderBy('id', 'desc')
        .limit(options.pageSize)
        .offset((options.page - 1) * options.pageSize)
        .execute(),
      db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).where(where).executeTakeFirstOrThrow(),
    ]);
    return { total: Number(count.n), entries: rows.map(toEntry) };
  }

  /**
   * Every matching entry, newest first, read in batches by id (not by offset, which rereads what it
   * skips), so an export of a long log never holds more than one batch.
   */
  async *stream(filter: AuditFilter = {}): AsyncGenerator<AuditEntry> {
    const where = matching(filter);
    let below = Number.MAX_SAFE_INTEGER;
    for (;;) {
      const rows = await this.database.db
        .selectFrom('audit_log')
        .selectAll()
        .where(where)
        .where('id', '<', below)
        .orderBy('id', 'desc')
        .limit(EXPORT_BATCH)
        .execute();
      for (const row of rows) yield toEntry(row);
      if (rows.length < EXPORT_BATCH) return;
      below = Number((rows.at(-1) as { id: number }).id);
    }
  }

  /** The actions the log holds, for the filter's suggestions. */
  async actions(): Promise<string[]> {
    const rows = await this.database.db.selectFrom('audit_log').select('action').distinct().orderBy('action').limit(200).execute();
    return rows.map((r) => r.action);
  }
}

type AuditWhere = (eb: ExpressionBuilder<DB, 'audit_log'>) => ReturnType<ExpressionBuilder<DB, 'audit_log'>['and']>;

function matching(filter: AuditFilter): AuditWhere {
  return (eb) => {
    const conditions = [];
    if (filter.actor) conditions.push(contains('actor', filter.actor));
    if (filter.target) conditions.push(contains('target', filter.target));
    if (filter.action) {
      const prefix = /[.*]$/.test(filter.action);
      conditions.push(
        prefix ? sql<boolean>`${sql.ref('action')} LIKE ${`${escapeLike(filter.action.replace(/\*$/, ''))}%`} ESCAPE ${sql.lit(ESCAPE)}` : eb('action', '=', filter.action),
      );
    }
    if (filter.from !== undefined) conditions.push(eb('at', '>=', filter.from));
    if (filter.to !== undefined) conditions.push(eb('at', '<', filter.to));
    return eb.and(conditions);
  };
}

/** Case-insensitive on both databases, whatever the column's collation. */
function contains(column: 'actor' | 'target', text: string) {
  return sql<boolean>`lower(${sql.ref(column)}) LIKE ${`%${escapeLike(text.toLowerCase())}%`} ESCAPE ${sql.lit(ESCAPE)}`;
}

function escapeLike(text: string): string {
  return text.replace(/[!%_]/g, (c) => `${ESCAPE}${c}`);
}

function toEntry(r: { id: number; at: number; actor: string; action: string; target: string; before: string | null; after: string | null }): AuditEntry {
  return { id: Number(r.id), at: Number(r.at), actor: r.actor, action: r.action, target: r.target, before: parsed(r.before), after: parsed(r.after) };
}

/** A stored before/after value; text that is not JSON (never written so, but kept if found) stays text. */
function parsed(text: string | null): unknown {
  if (text === null) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
