import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Logger } from '../../lib/log.ts';

/**
 * Which app process groups this portal started, kept in DATA_DIR, so that the next portal can end
 * what a previous one left behind. Normally nothing is left (each app's shell has a parent-death
 * signal, see supervisor.ts), but where util-linux's setpriv is missing, or a portal died between
 * spawning and setting up, a leftover would hold its app's port and the new copy would crash in a
 * back-off loop while the old one served.
 *
 * An entry names the group leader's pid and its start time (/proc/<pid>/stat, field 22), so a pid
 * reused by an unrelated process is never signalled, and the portal that started it, so the
 * entries of a portal that is still running (sharing the folder) are left alone. An entry noted
 * under this very pid is a previous life's (in a container the portal is pid 1 every time). Linux
 * only: where /proc is missing, nothing is reclaimed.
 */
interface Entry {
  pid: number;
  startTime: string;
  owner: number;
}

export class ProcessLedger {
  private entries: Record<string, Entry> = {};

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {}

  /** Ends every process group left by a portal that is no longer running; returns how many. */
  reclaim(): number {
    const previous = this.read();
    let ended = 0;
    for (const [name, entry] of Object.entries(previous)) {
      if (entry.owner !== process.pid && isRunning(entry.owner)) {
        this.entries[name] = entry; // another live portal's: not ours to end, nor to forget
        continue;
      }
      if (startTimeOf(entry.pid) !== entry.startTime) continue; // gone, or the pid is someone else's now
      try {
        process.kill(-entry.pid, 'SIGKILL');
        ended += 1;
        this.log.warn({ app: name, pid: entry.pid }, 'ended an app process left running by a previous portal');
      } catch {
        // already gone
      }
    }
    this.save();
    return ended;
  }

  record(name: string, pid: number): void {
    const startTime = startTimeOf(pid);
    if (startTime === undefined) return;
    this.entries[name] = { pid, startTime, owner: process.pid };
    this.save();
  }

  forget(name: string, pid: number): void {
    if (this.entries[name]?.pid !== pid) return;
    delete this.entries[name];
    this.save();
  }

  private read(): Record<string, Entry> {
    if (!existsSync(this.file)) return {};
    try {
      const parsed = JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, Partial<Entry>>;
      const valid: Record<string, Entry> = {};
      for (const [name, e] of Object.entries(parsed)) {
        if (Number.isInteger(e.pid) && (e.pid as number) > 1 && typeof e.startTime === 'string' && Number.isInteger(e.owner)) valid[name] = e as Entry;
      }
      return valid;
    } catch (err) {
      this.log.warn({ err, file: this.file }, 'the app process ledger is unreadable; starting a new one');
      return {};
    }
  }

  private save(): void {
    try {
      // Private like every file in DATA_DIR (an app process must not learn its neighbours' pids).
      writeFileSync(this.file, JSON.stringify(this.entries), { mode: 0o600 });
    } catch (err) {
      this.log.warn({ err, file: this.file }, 'could not write the app process ledger');
    }
  }
}

/** The process's start time in clock ticks since boot: with the pid, it names one process for good. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
