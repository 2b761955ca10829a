import './quiet-runtime-warning.ts';
import { createServer, type Server } from 'node:http';
import dotenv from 'dotenv';
import { loadConfig, type Config } from '../lib/config.ts';
import { DEMO_ACCOUNTS, DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { ConfigError } from '../lib/errors.ts';
import { createLogger, type Logger } from '../lib/log.ts';
import { createPortal, type Portal } from './app.ts';
import { GracefulStop } from './graceful-stop.ts';

export interface RunningPortal {
  portal: Portal;
  server: Server;
  url: string;
  stop(): Promise<void>;
}

/** Starts the portal on `config.port`; an already-listening `server` may be passed in (tests). */
export async function startPortal(config: Config, log: Logger, server: Server = createServer()): Promise<RunningPortal> {
  const portal = await createPortal(config, log);
  const graceful = new GracefulStop(server, portal, config, log);
  const listener = graceful.listener(portal.listener);
  server.on('request', listener);
  applyTimeouts(server, config);
  portal.attach(server, listener);
  if (!server.listening) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => resolve());
    });
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  let stopping: Promise<void> | undefined;
  return {
    portal,
    server,
    url: `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`,
    stop() {
      stopping ??= graceful.stop();
      return stopping;
    },
  };
}

/**
 * An idle kept-alive connection stays open longer than a balancer keeps its own (KEEP_ALIVE_TIMEOUT),
 * so the balancer closes it first and never reuses one the portal is closing. Node wants the header
 * timeout above it, and the request timeout above that.
 */
function applyTimeouts(server: Server, config: Pick<Config, 'keepAliveSeconds'>): void {
  server.keepAliveTimeout = config.keepAliveSeconds * 1000;
  server.headersTimeout = server.keepAliveTimeout + 5_000;
  server.requestTimeout = Math.max(300_000, server.headersTimeout + 5_000);
}

function banner(config: Config, running: RunningPortal): string {
  const lines = [`Atrium is listening on ${running.url} — open ${config.publicUrl.origin}/`];
  if (running.portal.embedded) lines.push(`Embedded OpenID provider: ${running.portal.embedded.issuer.href}`);
  if (running.portal.embedded && config.env !== 'production') {
    lines.push(`Demo accounts (password "${DEMO_PASSWORD}"): ${DEMO_ACCOUNTS.map((a) => a.email).join(', ')}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  // A belt to the explicit modes where the portal writes its files: anything else it (or a library)
  // creates is private too. App processes inherit it, which only keeps their files to themselves.
  process.umask(0o077);
  dotenv.config({ quiet: true });
  let config: Config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  // Many apps share this process: one app's stray rejection or exception is logged, not fatal to all.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection (an app or a library did not catch it)'));
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception (an app or a library did not catch it)'));
  let running: RunningPortal;
  try {
    running = await startPortal(config, log);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(1);
    }
    throw err;
  }
  console.log(banner(config, running));
  // However the process ends, the app processes it started end with it.
  process.once('exit', () => running.portal.supervisor.killAllNow());

  const shutdown = (signal: string) => {
    log.info({ signal }, 'stopping');
    running.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  // A closed terminal (or a supervisor's hang-up) stops it the same way, not by the default abrupt exit.
  process.once('SIGHUP', () => shutdown('SIGHUP'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
