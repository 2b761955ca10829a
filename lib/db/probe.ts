import { sql } from 'kysely';
import type { Database } from './schema.ts';

const inFlight = new WeakMap<Database, Promise<boolean>>();

/**
 * Whether the database answers a trivial query within `deadlineMs` (readiness). One probe query at
 * a time per database: a balancer polling a hung server every second must not pile up queries, each
 * holding a pooled connection until its own timeout; callers meanwhile share the one in flight.
 */
export async function probeDatabase(database: Database, deadlineMs: number): Promise<boolean> {
  let probe = inFlight.get(database);
  if (!probe) {
    probe = sql`select 1`
      .execute(database.db)
      .then(
        () => true,
        () => false,
      )
      .finally(() => inFlight.delete(database));
    inFlight.set(database, probe);
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), deadlineMs)));
  try {
    return await Promise.race([probe, late]);
  } finally {
    clearTimeout(timer);
  }
}
