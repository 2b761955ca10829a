import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from '../../lib/free-port.ts';

export interface PrivateRedis {
  port: number;
  url: string;
  /** Stops this server (SIGTERM to its own pid) and waits until it has exited. */
  stop(): Promise<void>;
}

const READY_DEADLINE_MS = 20_000;

/**
 * A Redis server of the test's own, on a port of its own and without persistence, for tests that
 * need Redis to go away: the shared one (127.0.0.1:6379) is never stopped.
 */
export async function startPrivateRedis(port?: number): Promise<PrivateRedis> {
  const chosen = port ?? (await freePort());
  const child = spawn('redis-server', ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  await readyOrFail(child, chosen);
  return {
    port: chosen,
    url: `redis://127.0.0.1:${chosen}`,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Resolves once the server says it accepts connections; rejects if it exits or takes too long. */
export function readyOrFail(child: ChildProcess, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server on port ${port} was not ready in time:\n${output}`));
    }, READY_DEADLINE_MS);
    const settle = (error?: Error) => {
      clearTimeout(timer);
      child.stdout?.removeAllListeners('data');
      child.removeAllListeners('exit');
      // Keep draining its output so a chatty server never blocks on a full pipe.
      child.stdout?.resume();
      child.stderr?.resume();
      if (error) reject(error);
      else resolve();
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (/ready to accept connections/i.test(output)) settle();
    });
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => settle(new Error(`redis-server on port ${port} exited (${code}) before it was ready:\n${output}`)));
    child.once('error', (err) => settle(err));
  });
}
