import type { Database } from './schema.ts';

/** Small named values the portal keeps in its database (signing keys, revisions). */
export async function readSetting(database: Database, name: string): Promise<string | undefined> {
  const row = await database.db.selectFrom('settings').select('value').where('name', '=', name).executeTakeFirst();
  return row?.value;
}

/**
 * Stores a value only if none exists yet and returns whichever value won, so two instances that
 * start together agree on one generated key.
 */
export async function initSetting(database: Database, name: string, value: string): Promise<string> {
  const insert = database.db.insertInto('settings').values({ name, value });
  if (database.dialect === 'mysql') await insert.ignore().execute();
  else await insert.onConflict((oc) => oc.column('name').doNothing()).execute();
  return (await readSetting(database, name)) as string;
}
