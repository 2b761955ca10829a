/**
 * Baseline server: the hello app module served by bare Koa on its own, nothing in front of it.
 * Env: BENCH_APP_MODULE (absolute path of the app's index.js), PORT. Listens on 127.0.0.1 only.
 */
import { pathToFileURL } from 'node:url';
import type Koa from 'koa';

const modulePath = process.env.BENCH_APP_MODULE;
const port = Number(process.env.PORT);
if (!modulePath || !Number.isInteger(port) || port <= 0) throw new Error('BENCH_APP_MODULE and PORT are required');

const { default: app } = (await import(pathToFileURL(modulePath).href)) as { default: Koa };
const server = app.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
