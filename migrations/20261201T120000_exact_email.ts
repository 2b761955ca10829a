import { sql, type Kysely } from 'kysely';

/**
 * Frozen: e-mail addresses are compared exactly. MySQL/MariaDB compared `users.email` under the
 * database's utf8mb4_unicode_ci collation, which folds case, accents and letter widths
 * (`stáble@` = `stable@`), so a look-alike address found another person's account. The column
 * becomes utf8mb4_bin (byte-for-byte; its PAD SPACE rule cannot matter, as stored and looked-up
 * addresses are trimmed). SQLite already compares with BINARY and keeps its column as it is.
 *
 * Both databases get every stored address in the canonical form the code now writes and looks up
 * (trim + lowercase + NFC), so an account whose address was stored otherwise can still sign in.
 */

/** A copy, not an import: a migration must keep doing what it did when it was written. */
function canonical(email: string): string {
  return email.trim().toLowerCase().normalize('NFC');
}

export async function up(db: Kysely<any>): Promise<void> {
  const rows: { id: number; email: string; password_hash: string | null }[] = await db.selectFrom('users').select(['id', 'email', 'password_hash']).where('email', 'is not', null).execute();
  refuseMergingLocalAccounts(rows);
  for (const row of rows) {
    const email = canonical(row.email);
    if (email !== row.email) await db.updateTable('users').set({ email: email === '' ? null : email }).where('id', '=', row.id).execute();
  }
  if (await isMysql(db)) {
    await sql`ALTER TABLE users MODIFY email VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL`.execute(db);
  }
}

export async function down(db: Kysely<any>): Promise<void> {
  // The canonical addresses stay: they were the same addresses before.
  if (await isMysql(db)) {
    await sql`ALTER TABLE users MODIFY email VARCHAR(320) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NULL`.execute(db);
  }
}

/**
 * Two local accounts whose addresses differ only in a way the old comparison let through (a
 * composed and a decomposed accent on SQLite, say) would become one address, and only one of them
 * could sign in. That is not the migration's to decide: it stops, naming them, before changing
 * anything. (Accounts from a provider are keyed by their subject; a shared address is harmless.)
 */
function refuseMergingLocalAccounts(rows: { id: number; email: string; password_hash: string | null }[]): void {
  const byAddress = new Map<string, number[]>();
  for (const row of rows) {
    if (row.password_hash === null) continue;
    const address = canonical(row.email);
    byAddress.set(address, [...(byAddress.get(address) ?? []), row.id]);
  }
  const clashes = [...byAddress].filter(([, ids]) => ids.length > 1);
  if (clashes.length === 0) return;
  const list = clashes.map(([address, ids]) => `${address} (user ids ${ids.join(', ')})`).join('; ');
  throw new Error(
    `exact e-mail matching: these local accounts would share one address once written the same way: ${list}. ` +
      'Give all but one a different address or delete them (e.g. UPDATE users SET email = ... WHERE id = ...), then start again.',
  );
}

/** Migrations see only `Kysely<any>`; SQLite has no `version()` function, MySQL and MariaDB do. */
async function isMysql(db: Kysely<any>): Promise<boolean> {
  try {
    await sql`SELECT version()`.execute(db);
    return true;
  } catch {
    return false;
  }
}
