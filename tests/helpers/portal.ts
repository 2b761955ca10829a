import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../lib/config.ts';
import { createLogger } from '../../lib/log.ts';
import { startPortal, type RunningPortal } from '../../portal/main.ts';
import { createTestDatabase, type DialectName, type TestDatabase } from './databases.ts';

export const EXAMPLE_APPS = fileURLToPath(new URL('../../apps', import.meta.url));

export interface TestPortal extends RunningPortal {
  /** The public origin, e.g. http://127.0.0.1:41234 */
  origin: string;
  database: TestDatabase;
  stopAll(): Promise<void>;
}

/**
 * A real portal on an ephemeral port with its own data folder and database: the embedded provider,
 * real sessions and the example apps unless `APPS_DIR` says otherwise.
 */
export async function startTestPortal(options: { dialect?: DialectName; env?: Record<string, string>; port?: number; database?: TestDatabase } = {}): Promise<TestPortal> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  const database = options.database ?? (await createTestDatabase(options.dialect ?? 'sqlite'));
  const config = loadConfig({
    NODE_ENV: 'test',
    PORT: String(port),
    HOST: '127.0.0.1',
    PUBLIC_URL: origin,
    APPS_DIR: EXAMPLE_APPS,
    DATA_DIR: mkdtempSync(join(tmpdir(), 'atrium-data-')),
    DATABASE_URL: database.url,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    ...options.env,
  });
  const running = await startPortal(config, createLogger(config.logLevel, false), server).catch(async (err: unknown) => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (!options.database) await database.drop();
    throw err;
  });
  return {
    ...running,
    origin,
    database,
    async stopAll() {
      await running.stop();
      // A database passed in belongs to the caller, who drops it.
      if (!options.database) await database.drop();
    },
  };
}
