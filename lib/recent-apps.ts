import type { Database } from './db/schema.ts';

/** How many apps the launcher remembers per user (and shows under "Recently opened"). */
export const RECENT_KEPT = 6;

/** An app's key in `recent_apps`: `tier/name`, as the portal's app table names it. */
export type AppKey = `${string}/${string}`;

/**
 * The apps a user opened last, per user in the database. Written when a launcher link is followed
 * (the launcher's script tells `POST /recent-apps`), never on the /apps/ path, so serving an app
 * costs nothing more; read once per launcher page.
 */
export class RecentApps {
  constructor(private readonly database: Database) {}

  private get db() {
    return this.database.db;
  }

  /** Remembers that the user opened the app now, and forgets all but the newest RECENT_KEPT. */
  async remember(userId: number, app: AppKey, now = Date.now()): Promise<void> {
    const updated = await this.db.updateTable('recent_apps').set({ opened_at: now }).where('user_id', '=', userId).where('app', '=', app).executeTakeFirst();
    if (Number(updated.numUpdatedRows) === 0) {
      try {
        await this.db.insertInto('recent_apps').values({ user_id: userId, app, opened_at: now }).execute();
      } catch (err) {
        // Two tabs opened the same app at once: the other one's row is as good as ours.
        if (!/duplicate|unique/i.test(String((err as Error).message))) throw err;
      }
    }
    const kept = await this.db.selectFrom('recent_apps').select('app').where('user_id', '=', userId).orderBy('opened_at', 'desc').orderBy('app').limit(RECENT_KEPT).execute();
    if (kept.length === RECENT_KEPT) {
      const keep = kept.map((r) => r.app);
      await this.db.deleteFrom('recent_apps').where('user_id', '=', userId).where('app', 'not in', keep).execute();
    }
  }

  /** The user's apps, most recently opened first. */
  async list(userId: number, limit = RECENT_KEPT): Promise<{ app: AppKey; openedAt: number }[]> {
    const rows = await this.db.selectFrom('recent_apps').select(['app', 'opened_at']).where('user_id', '=', userId).orderBy('opened_at', 'desc').orderBy('app').limit(limit).execute();
    return rows.map((r) => ({ app: r.app as AppKey, openedAt: Number(r.opened_at) }));
  }
}
