import type { Database } from '../db/schema.ts';
import { parseProfile } from '../directory/users.ts';

/**
 * The profiles of users seen recently, in memory, so `ctx.state.user.profile` is current without a
 * database read per request. Filled at login and by every write in this process; changes made by
 * other processes arrive through `refresh`, which the portal's directory watcher calls every second
 * (users whose `updated_at` moved since the last look).
 */
export class ProfileCache {
  private readonly profiles = new Map<number, Readonly<Record<string, unknown>>>();
  private watermark = Date.now();

  constructor(private readonly maxEntries = 100_000) {}

  private readonly loading = new Set<number>();

  get(userId: number): Readonly<Record<string, unknown>> | undefined {
    return this.profiles.get(userId);
  }

  /**
   * The cached profile, or `fallback` while a background `load` fills the cache (once per user),
   * so a miss never makes the request wait for the database.
   */
  peek(userId: number, fallback: Record<string, unknown>, load: (userId: number) => Promise<unknown>): Readonly<Record<string, unknown>> {
    const hit = this.profiles.get(userId);
    if (hit) return hit;
    if (!this.loading.has(userId)) {
      this.loading.add(userId);
      load(userId)
        .catch(() => undefined)
        .finally(() => this.loading.delete(userId));
    }
    return fallback;
  }

  set(userId: number, profile: Record<string, unknown>): void {
    if (!this.profiles.has(userId) && this.profiles.size >= this.maxEntries) {
      const oldest = this.profiles.keys().next().value;
      if (oldest !== undefined) this.profiles.delete(oldest);
    }
    this.profiles.set(userId, Object.freeze({ ...profile }));
  }

  async refresh(database: Database): Promise<void> {
    // Overlap the window a little: writers' clocks and commit order are not perfectly aligned.
    const since = this.watermark - 2_000;
    const rows = await database.db
      .selectFrom('users')
      .select(['id', 'profile', 'updated_at'])
      .where('updated_at', '>', since)
      .limit(5_000)
      .execute();
    for (const row of rows) {
      this.watermark = Math.max(this.watermark, Number(row.updated_at));
      if (!this.profiles.has(Number(row.id))) continue;
      this.set(Number(row.id), parseProfile(row.profile));
    }
  }
}
