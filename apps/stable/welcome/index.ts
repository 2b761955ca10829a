import Koa from 'koa';
import type { AtriumState } from '../../../lib/app-kit.ts';

/**
 * The smallest possible Atrium app: a plain Koa app with no auth code. Living in apps/stable is its
 * protection; the portal has already checked the visitor and put them in ctx.state.user.
 */
const app = new Koa<AtriumState>();

app.use((ctx) => {
  const { user } = ctx.state;
  ctx.type = 'html';
  ctx.body = `<!doctype html><meta charset="utf-8"><title>Welcome</title>
<link rel="stylesheet" href="/assets/atrium.css">
<main><h1>Welcome, ${escape(user.name ?? user.email ?? user.sub)}</h1>
<p>This app lives in <code>apps/stable/welcome</code>. Everyone with level <strong>stable</strong> or above can open it.</p>
<p>Your level is <strong>${escape(user.level ?? 'none')}</strong>; your groups: ${escape(user.groups.join(', ') || 'none')}.</p>
<p>It sees paths relative to its mount: you asked for <code>${escape(ctx.path)}</code>.</p>
<p><a href="/">Back to the launcher</a></p></main>`;
});

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export default app;
