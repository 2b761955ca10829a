import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../lib/free-port.ts';

/**
 * A MariaDB server of the test's own — its own datadir under a temp folder, its own port — for
 * tests that take the database away: stop it (SIGTERM), freeze it (SIGSTOP) and bring it back. The
 * shared server (127.0.0.1:3306) is never touched. Started through util-linux's setpriv with a
 * parent-death signal where it exists, so a test worker that dies leaves no server running.
 */
export interface PrivateMariaDb {
  port: number;
  /** `mysql://root@127.0.0.1:<port>`, no database. */
  serverUrl: string;
  /** A DATABASE_URL for a database on this server (created by the portal when missing). */
  url(database: string): string;
  /** SIGTERM, then waits for it to exit: connections are refused from then on. */
  stop(): Promise<void>;
  /** Starts it again on the same port and datadir; resolves once it accepts connections. */
  start(): Promise<void>;
  /** SIGSTOP: connections are accepted by the kernel and then nothing answers. */
  freeze(): void;
  /** SIGCONT after freeze(). */
  thaw(): void;
  /** Kills the server if it runs (frozen or not) and removes its folder. Safe to call twice. */
  cleanup(): Promise<void>;
}

const READY_DEADLINE_MS = 60_000;
const STOP_DEADLINE_MS = 30_000;
const PDEATHSIG = ['/usr/bin/setpriv', '/bin/setpriv'].some((path) => existsSync(path));

/** Starts one; `port` picks its port (a test that starts a portal first, the database later). */
export async function startPrivateMariaDb(options: { port?: number; started?: boolean } = {}): Promise<PrivateMariaDb> {
  const folder = mkdtempSync(join(tmpdir(), 'atrium-mariadb-'));
  const datadir = join(folder, 'data');
  // --no-defaults: the machine's my.cnf (user, log paths, the shared server's port) is not ours.
  const installed = spawnSync('mariadb-install-db', ['--no-defaults', `--datadir=${datadir}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db'], { encoding: 'utf8' });
  if (installed.status !== 0) {
    rmSync(folder, { recursive: true, force: true });
    throw new Error(`mariadb-install-db failed (${installed.status}):\n${installed.stdout}\n${installed.stderr}`);
  }
  const port = options.port ?? (await freePort());
  const args = [
    '--no-defaults',
    `--datadir=${datadir}`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    `--socket=${join(folder, 'mariadb.sock')}`,
    `--pid-file=${join(folder, 'mariadb.pid')}`,
    '--user=root',
    '--skip-name-resolve',
    '--skip-log-bin',
    // Small and quick: a test server holds a few kilobytes.
    '--innodb-buffer-pool-size=32M',
    '--innodb-log-file-size=16M',
    '--innodb-flush-log-at-trx-commit=2',
  ];
  let child: ChildProcess | undefined;
  let frozen = false;

  const launch = async () => {
    const [file, argv] = PDEATHSIG ? ['setpriv', ['--pdeathsig', 'SIGKILL', '--', '/usr/sbin/mariadbd', ...args]] : ['/usr/sbin/mariadbd', args];
    child = spawn(file, argv as string[], { stdio: ['ignore', 'ignore', 'pipe'] });
    await readyOrFail(child, port);
  };
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;

  const server: PrivateMariaDb = {
    port,
    serverUrl: `mysql://root@127.0.0.1:${port}`,
    url: (database) => `mysql://root@127.0.0.1:${port}/${database}`,
    async stop() {
      if (!running()) return;
      const exited = once(child!, 'exit');
      if (frozen) server.thaw();
      child!.kill('SIGTERM');
      const timer = setTimeout(() => child?.kill('SIGKILL'), STOP_DEADLINE_MS);
      await exited;
      clearTimeout(timer);
    },
    async start() {
      if (running()) return;
      await launch();
    },
    freeze() {
      if (!running()) throw new Error('the private MariaDB is not running');
      child!.kill('SIGSTOP');
      frozen = true;
    },
    thaw() {
      if (!running()) return;
      child!.kill('SIGCONT');
      frozen = false;
    },
    async cleanup() {
      if (running()) {
        const exited = once(child!, 'exit');
        // A stopped process still dies of SIGKILL; nothing in this datadir is worth a clean shutdown.
        child!.kill('SIGKILL');
        await exited;
      }
      rmSync(folder, { recursive: true, force: true });
    },
  };
  try {
    // `started: false`: installed, and started by the test when it wants (server.start()).
    if (options.started !== false) await launch();
  } catch (err) {
    await server.cleanup();
    throw err;
  }
  return server;
}

/** Resolves once the server logs that it accepts connections; rejects if it exits or takes too long. */
function readyOrFail(child: ChildProcess, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(new Error(`the private MariaDB on port ${port} was not ready in time:\n${output}`));
    }, READY_DEADLINE_MS);
    function settle(error?: Error) {
      clearTimeout(timer);
      child.stderr?.removeAllListeners('data');
      child.removeListener('exit', onExit);
      // Keep draining its log so a chatty server never blocks on a full pipe.
      child.stderr?.resume();
      if (error) reject(error);
      else resolve();
    }
    function onExit(code: number | null) {
      settle(new Error(`the private MariaDB on port ${port} exited (${code}) before it was ready:\n${output}`));
    }
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (/ready for connections/i.test(output)) settle();
    });
    child.once('exit', onExit);
    child.once('error', (err) => settle(err));
  });
}
