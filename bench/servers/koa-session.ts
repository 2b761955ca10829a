/**
 * Context server: the same hello app behind Koa + stock koa-session (default cookie store, signed
 * cookies), with a middleware that reads the session on every request the way the portal's user
 * middleware does (koa-session is lazy: a session nobody reads costs nothing).
 *
 * `GET /__bench/login` puts a user record into the session so the load test can replay the cookie.
 * Env: BENCH_APP_MODULE, PORT. Listens on 127.0.0.1 only.
 */
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import Koa from 'koa';
import mount from 'koa-mount';
import session from 'koa-session';

const modulePath = process.env.BENCH_APP_MODULE;
const port = Number(process.env.PORT);
if (!modulePath || !Number.isInteger(port) || port <= 0) throw new Error('BENCH_APP_MODULE and PORT are required');

const { default: hello } = (await import(pathToFileURL(modulePath).href)) as { default: Koa };

const app = new Koa();
app.keys = [randomBytes(32).toString('hex')];
app.use(session({ key: 'bench.sess', signed: true, httpOnly: true, sameSite: 'lax', maxAge: 12 * 60 * 60 * 1000 }, app));
app.use(async (ctx, next) => {
  if (ctx.path === '/__bench/login') {
    ctx.session = {
      uid: 1,
      sub: 'bench-subject-0001',
      email: 'admin@example.com',
      name: 'Admin Example',
      tokenLevel: 'admin',
      csrf: randomBytes(32).toString('base64url'),
      authAt: Date.now(),
    };
    ctx.body = 'signed in\n';
    return;
  }
  const s = ctx.session as { sub?: unknown; email?: unknown } | null;
  if (s && typeof s.sub === 'string') ctx.state.user = { sub: s.sub, email: s.email };
  await next();
});
app.use(mount(hello));

const server = app.listen(port, '127.0.0.1');
process.once('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});
