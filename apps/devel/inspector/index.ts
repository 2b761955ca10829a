import Koa from 'koa';
import type { AtriumState } from '../../../lib/app-kit.ts';

/**
 * A developer tool: shows exactly what the portal hands a child app — the user, the path relative
 * to the mount, and the mount prefix. Only levels devel and admin reach it.
 */
const app = new Koa<AtriumState>();

app.use((ctx) => {
  ctx.body = {
    user: ctx.state.user,
    path: ctx.path,
    mountPath: (ctx as unknown as { mountPath?: string }).mountPath,
    query: ctx.query,
  };
});

export default app;
