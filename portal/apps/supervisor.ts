import { existsSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../../lib/log.ts';
import type { ProcessLedger } from './process-ledger.ts';
import { appEnvironment, resolveAppProcessAccount, type AppIsolation, type AppProcessUser } from './app-sandbox.ts';

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 30_000;
const STOP_GRACE_MS = 5_000;

interface Supervised {
  command: string;
  cwd: string;
  port: number;
  child: ChildProcess | undefined;
  backoff: number;
  restartTimer: NodeJS.Timeout | undefined;
  startedAt: number;
  stopping: boolean;
  restarts: number;
  /** The last line the process wrote to stderr, or why it could not start (admin console). */
  lastErrorLine: string | undefined;
}

/**
 * Runs the `command` of upstream apps: started with `PORT` set, in its own process group (so a
 * shell's children go with it), restarted with exponential back-off when it dies, its output
 * logged line by line under the app's name, and stopped (TERM, then KILL) when the app goes away or
 * the portal stops. With APPS_USER every process runs as that OS user (see app-sandbox.ts), so it
 * cannot read the portal's environment, database or keys; either way it gets an allow-listed
 * environment, never the portal's.
 */
export class Supervisor {
  private readonly processes = new Map<string, Supervised>();
  private readonly user: AppProcessUser | undefined;
  /** Whether app processes are isolated from the portal (for /readyz and the admin console). */
  readonly isolation: AppIsolation;

  /** Throws ConfigError when APPS_USER cannot be honoured (unknown user, portal not root). */
  constructor(
    private readonly log: Logger,
    appsUser: string | undefined,
    /** Where the started process groups are noted, so a later portal ends what this one leaves. */
    private readonly ledger?: ProcessLedger,
  ) {
    const account = resolveAppProcessAccount(appsUser);
    this.user = account.user;
    this.isolation = account.isolation;
    log.info({ appsUser: this.isolation.appsUser, isolated: this.isolation.isolated }, this.isolation.reason);
    // Before any app starts: a previous portal's leftover may be holding an app's port.
    ledger?.reclaim();
  }

  start(name: string, command: string, cwd: string, port: number): void {
    const existing = this.processes.get(name);
    if (existing && existing.command === command && existing.cwd === cwd && existing.port === port) return;
    if (existing) void this.stop(name);
    const entry: Supervised = { command, cwd, port, child: undefined, backoff: MIN_BACKOFF_MS, restartTimer: undefined, startedAt: 0, stopping: false, restarts: 0, lastErrorLine: undefined };
    this.processes.set(name, entry);
    this.launch(name, entry);
  }

  /** The supervised process's pid (tests and the admin console). */
  pid(name: string): number | undefined {
    return this.processes.get(name)?.child?.pid;
  }

  restarts(name: string): number {
    return this.processes.get(name)?.restarts ?? 0;
  }

  /** Whether the app's process is running now (not while it waits to be restarted). */
  running(name: string): boolean {
    const child = this.processes.get(name)?.child;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  lastErrorLine(name: string): string | undefined {
    return this.processes.get(name)?.lastErrorLine;
  }

  private launch(name: string, entry: Supervised): void {
    const log = this.log.child({ app: name });
    entry.startedAt = Date.now();
    // Its own process group (detached), so the whole tree can be signalled; and, where util-linux's
    // setpriv is there, a parent-death signal, so even a SIGKILLed portal leaves no app behind.
    const [file, args] = PDEATHSIG ? ['setpriv', ['--pdeathsig', 'SIGTERM', '--', '/bin/sh', '-c', groupKeeper(entry.command)]] : ['/bin/sh', ['-c', entry.command]];
    const child = spawn(file, args, {
      cwd: entry.cwd,
      detached: true,
      // fd 3: the group keeper's lifeline (see groupKeeper), never written to.
      stdio: PDEATHSIG ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
      env: appEnvironment(process.env, this.user, entry.port),
      // libuv drops root's supplementary groups before switching, so only the user's gid remains.
      ...(this.user && { uid: this.user.uid, gid: this.user.gid }),
    });
    entry.child = child;
    if (child.pid !== undefined) this.ledger?.record(name, child.pid);
    log.info({ pid: child.pid, command: entry.command, port: entry.port }, 'app process started');
    createInterface({ input: child.stdout! }).on('line', (line) => log.info({ stream: 'stdout' }, line));
    createInterface({ input: child.stderr! }).on('line', (line) => {
      entry.lastErrorLine = line.slice(0, 500);
      log.warn({ stream: 'stderr' }, line);
    });
    child.on('error', (err) => {
      entry.lastErrorLine = `could not start: ${err.message}`.slice(0, 500);
      log.error({ err }, 'app process could not start');
    });
    child.on('exit', (code, signal) => {
      if (entry.child === child) entry.child = undefined;
      if (child.pid !== undefined) this.ledger?.forget(name, child.pid);
      if (entry.stopping) return; // stop() signalled the whole group already
      // The shell may be gone while what it started lives on, holding the port: the group goes too.
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      if (Date.now() - entry.startedAt > HEALTHY_AFTER_MS) entry.backoff = MIN_BACKOFF_MS;
      log.warn({ code, signal, restartInMs: entry.backoff }, 'app process exited; restarting');
      entry.restartTimer = setTimeout(() => {
        entry.restarts += 1;
        this.launch(name, entry);
      }, entry.backoff);
      entry.restartTimer.unref();
      entry.backoff = Math.min(entry.backoff * 2, MAX_BACKOFF_MS);
    });
  }

  async stop(name: string): Promise<void> {
    const entry = this.processes.get(name);
    if (!entry) return;
    this.processes.delete(name);
    entry.stopping = true;
    clearTimeout(entry.restartTimer);
    const child = entry.child;
    if (!child || child.exitCode !== null || child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    killGroup(child.pid, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child.pid as number, 'SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  }

  /** Last resort when the portal exits without a graceful stop: signal every process group now. */
  killAllNow(): void {
    for (const entry of this.processes.values()) {
      entry.stopping = true;
      clearTimeout(entry.restartTimer);
      if (entry.child?.pid !== undefined && entry.child.exitCode === null) killGroup(entry.child.pid, 'SIGTERM');
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((name) => this.stop(name)));
  }
}

/**
 * The shell that runs a command, written so that a SIGTERM to it (from stop(), or the parent-death
 * signal when the portal itself dies, however) ends the command's whole process group: the shell
 * waits on the command in the background, where a trap can run, and passes on its exit status. Its
 * lifeline (fd 3) ends the group as well when the portal's end of it closes.
 */
export function groupKeeper(command: string): string {
  return [
    `trap 'trap - TERM; kill 0' TERM`,
    // The lifeline: fd 3 is the shell's end of a socket pair whose other end only the portal holds,
    // so a read on it ends when the portal is gone, however it went; then the group goes too. A
    // backstop for the parent-death signal, which a portal killed under load was once seen to miss
    // (tests/multi-instance.test.ts: an app copy outliving its SIGKILLed instance, its shell gone).
    `{ read -r _ <&3; kill 0; } &`,
    // The command itself does not get the lifeline (nor could an app close the portal's end).
    `{\n${command}\n} 3<&- &`,
    `wait $!`,
  ].join('\n');
}

/** util-linux's setpriv, which can set the parent-death signal for the command it starts (Linux). */
const PDEATHSIG = ['/usr/bin/setpriv', '/bin/setpriv'].some((path) => existsSync(path));

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}
