import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../lib/config.ts';
import { startPortal } from '../../portal/main.ts';
import { createTestDatabase } from './databases.ts';
import { EXAMPLE_APPS, type TestPortal } from './portal.ts';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** pino's numeric levels. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/**
 * A test portal (as startTestPortal: SQLite, the embedded provider, an ephemeral port) whose log
 * lines are kept for the test to read, at debug level. `env` may depend on the port (PUBLIC_URL).
 */
export async function startLoggedPortal(env: Record<string, string> | ((port: number) => Record<string, string>) = {}): Promise<TestPortal & { log: LogLine[] }> {
  const log: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) log.push(JSON.parse(line) as LogLine);
        done();
      },
    }),
  );
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  const database = await createTestDatabase('sqlite');
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: origin,
    APPS_DIR: EXAMPLE_APPS,
    DATA_DIR: mkdtempSync(join(tmpdir(), 'atrium-data-')),
    DATABASE_URL: database.url,
    LOG_LEVEL: 'debug',
    ...(typeof env === 'function' ? env(port) : env),
  });
  const running = await startPortal(config, logger, server);
  return { ...running, origin, database, log, stopAll: () => running.stop() };
}
