import type { Database } from '../../lib/db/schema.ts';
import type { AccessIndex } from '../../lib/directory/access.ts';
import { readRevision } from '../../lib/directory/revision.ts';
import type { Logger } from '../../lib/log.ts';
import type { ProfileCache } from '../../lib/profile/cache.ts';

/**
 * Keeps this portal's in-memory directory (AccessIndex, ProfileCache) in step with the database,
 * whoever wrote to it: this process (call `refresh()` right after a write), another instance or the
 * admin CLI (seen by the once-a-second poll). `onChange` hears about every rebuild, so sockets can be
 * re-checked against the new picture.
 */
export class DirectoryWatcher {
  private revision: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly deps: { database: Database; access: AccessIndex; profiles: ProfileCache; log: Logger },
    private readonly intervalMs = 1_000,
  ) {}

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  start(): void {
    this.timer = setInterval(() => {
      this.poll().catch((err: unknown) => this.deps.log.warn({ err }, 'directory poll failed'));
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Reloads run one after another: a poll that read the database before an admin's write must not
   * finish after that write's refresh and put the old picture back.
   */
  private serial(work: () => Promise<void>): Promise<void> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Rebuilds now (after a write in this process), so the next request sees the change. */
  refresh(): Promise<void> {
    return this.serial(async () => {
      const revision = await readRevision(this.deps.database);
      await this.deps.access.reload(this.deps.database);
      this.revision = revision;
      await this.deps.profiles.refresh(this.deps.database);
      for (const listener of this.listeners) listener();
    });
  }

  private poll(): Promise<void> {
    // One poll at a time: a slow database must not stack them up.
    this.running ??= this.serial(async () => {
      const revision = await readRevision(this.deps.database);
      if (revision !== this.revision) {
        await this.deps.access.reload(this.deps.database);
        this.revision = revision;
        for (const listener of this.listeners) listener();
      }
      await this.deps.profiles.refresh(this.deps.database);
    }).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }
}
