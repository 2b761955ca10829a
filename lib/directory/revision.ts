import { sql } from 'kysely';
import type { Database } from '../db/schema.ts';

/**
 * A counter bumped by every directory write (from the portal or the CLI). Portals poll it — one
 * tiny indexed read a second, off the request path — and rebuild their in-memory AccessIndex when
 * it moves, so a change made anywhere applies to every instance within about a second.
 */
const NAME = 'directory_revision';

export async function bumpRevision(database: Database): Promise<void> {
  const db = database.db;
  const updated = await db
    .updateTable('settings')
    .set({ value: sql<string>`CAST(CAST(value AS UNSIGNED) + 1 AS CHAR)` })
    .where('name', '=', NAME)
    .executeTakeFirst();
  if (Number(updated.numUpdatedRows) > 0) return;
  const insert = db.insertInto('settings').values({ name: NAME, value: '1' });
  if (database.dialect === 'mysql') await insert.ignore().execute();
  else await insert.onConflict((oc) => oc.column('name').doNothing()).execute();
}

export async function readRevision(database: Database): Promise<string> {
  const row = await database.db.selectFrom('settings').select('value').where('name', '=', NAME).executeTakeFirst();
  return row?.value ?? '0';
}
