import Koa from 'koa';
import { html, page, type AtriumState } from '../../../lib/app-kit.ts';

/**
 * The smallest possible Atrium app: a plain Koa app with no auth code. Living in apps/stable is its
 * protection; the portal has already checked the visitor and put them in ctx.state.user. `page()`
 * gives it the phone-ready layout and the portal bar (back to the launcher, sign out).
 */
const app = new Koa<AtriumState>();

app.use((ctx) => {
  const { user } = ctx.state;
  ctx.type = 'html';
  ctx.body = page({
    title: 'Welcome',
    body: html`<h1>Welcome, ${user.name ?? user.email ?? user.sub}</h1>
<p>This app lives in <code>apps/stable/welcome</code>. Everyone with level <strong>stable</strong> or above can open it.</p>
<p>Your level is <strong>${user.level ?? 'none'}</strong>; your groups: ${user.groups.join(', ') || 'none'}.</p>
<p>It sees paths relative to its mount: you asked for <code>${ctx.path}</code>.</p>`,
  });
});

export default app;
