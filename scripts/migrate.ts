import dotenv from 'dotenv';
import { loadConfig, redact } from '../lib/config.ts';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import { ConfigError } from '../lib/errors.ts';

/** `npm run migrate`: applies pending migrations to DATABASE_URL (start does the same). */
dotenv.config({ quiet: true });
try {
  const config = loadConfig(process.env);
  const database = await openDatabase(config.database);
  try {
    const applied = await migrateToLatest(database);
    const where = config.database.kind === 'sqlite' ? `sqlite:${config.database.file}` : redact(config.database.url);
    console.log(applied.length ? `Applied ${applied.length} migration(s) to ${where}: ${applied.join(', ')}` : `${where} is up to date.`);
  } finally {
    await database.close();
  }
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : `Migration failed: ${(err as Error).message}`);
  process.exitCode = 1;
}
