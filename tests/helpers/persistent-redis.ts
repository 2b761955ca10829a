import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../lib/free-port.ts';
// The same readiness wait as a throwaway Redis (the AOF is loaded before it says it is ready).
import { readyOrFail } from './private-redis.ts';

export interface PersistentRedis {
  port: number;
  url: string;
  /** Stops the server (SIGTERM to its own pid: Redis writes its append-only file and exits). */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder: what it held before the stop is back. */
  start(): Promise<void>;
  /**
   * Freezes the server (SIGSTOP to its own pid): connections stay open and new ones are accepted
   * by the kernel, but nothing is answered — a hung Redis. thaw() (SIGCONT) resumes it.
   */
  freeze(): void;
  thaw(): void;
  /** Stops the server and removes its folder; safe to call in afterAll whatever state it is in. */
  destroy(): Promise<void>;
}


/**
 * A Redis server of the test's own that persists as production's must (AOF, `appendonly yes`,
 * fsync on every write), so a test can stop it and start it again and see sessions survive the
 * restart. Like private-redis.ts it listens on a port of its own: the shared server is never touched.
 */
export async function startPersistentRedis(): Promise<PersistentRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'atrium-redis-'));
  let child: ChildProcess | undefined;
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await readyOrFail(child, port);
  };
  const stop = async () => {
    if (!child || !running()) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    stop,
    start,
    freeze: () => void (running() && child?.kill('SIGSTOP')),
    thaw: () => void (running() && child?.kill('SIGCONT')),
    async destroy() {
      // A frozen server would not act on SIGTERM.
      if (running()) child?.kill('SIGCONT');
      await stop().catch(() => child?.kill('SIGKILL'));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
