import Router from '@koa/router';
import Koa from 'koa';
import { defineApp, html, page, type AtriumState } from '../../../lib/app-kit.ts';

/**
 * An early-access app with its own router and a small JSON API, keyed by the signed-in user.
 * It keeps notes in memory: enough to show that `ctx.state.user.sub` is a stable identity.
 */
const notes = new Map<string, string[]>();
const router = new Router<AtriumState>();

router.get('/', (ctx) => {
  ctx.type = 'html';
  const mine = notes.get(ctx.state.user.sub) ?? [];
  ctx.body = page({
    title: 'Notes',
    body: html`<h1>Notes (early access)</h1><p>${mine.length} note(s) for ${ctx.state.user.email ?? ctx.state.user.sub}.</p>
<p>Try the API: <code>GET ./api/notes</code></p>`,
  });
});

router.get('/api/notes', (ctx) => {
  ctx.body = { user: ctx.state.user.sub, notes: notes.get(ctx.state.user.sub) ?? [] };
});

const app = new Koa<AtriumState>();
app.use(router.routes()).use(router.allowedMethods());

export default defineApp({ app, title: 'Notes', description: 'Early access: a tiny per-user notes API.' });
