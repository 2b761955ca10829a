import Router from '@koa/router';
import Koa from 'koa';
import { defineApp, type AtriumState } from '../../../lib/app-kit.ts';

/**
 * An early-access app with its own router and a small JSON API, keyed by the signed-in user.
 * It keeps notes in memory: enough to show that `ctx.state.user.sub` is a stable identity.
 */
const notes = new Map<string, string[]>();
const router = new Router<AtriumState>();

router.get('/', (ctx) => {
  ctx.type = 'html';
  const mine = notes.get(ctx.state.user.sub) ?? [];
  ctx.body = `<!doctype html><meta charset="utf-8"><title>Notes</title><link rel="stylesheet" href="/assets/atrium.css">
<main><h1>Notes (early access)</h1><p>${mine.length} note(s) for ${escape(ctx.state.user.email ?? ctx.state.user.sub)}.</p>
<p>Try the API: <code>GET ./api/notes</code></p><p><a href="/">Back to the launcher</a></p></main>`;
});

router.get('/api/notes', (ctx) => {
  ctx.body = { user: ctx.state.user.sub, notes: notes.get(ctx.state.user.sub) ?? [] };
});

const app = new Koa<AtriumState>();
app.use(router.routes()).use(router.allowedMethods());

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export default defineApp({ app, title: 'Notes', description: 'Early access: a tiny per-user notes API.' });
