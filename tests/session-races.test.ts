import { describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal } from './helpers/portal.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a request in flight when its session ends', () => {
  it('cannot bring the session back when it saves at the end', async () => {
    const apps = makeAppsDir({
      'stable/slow/index.js': `import Koa from ${JSON.stringify(KOA)};
const app = new Koa();
app.use(async (ctx) => { await new Promise((r) => setTimeout(r, 1500)); ctx.body = 'done'; });
export default app;`,
    });
    // Idle timeout 20 s: the session is touched (and so saved) by a request every 2 s.
    const portal = await startTestPortal({ env: { APPS_DIR: apps, SESSION_IDLE_TIMEOUT: '20' } });
    try {
      const agent = new Agent(portal.origin);
      await agent.login('stable@example.com', DEMO_PASSWORD);
      const stolen = new Agent(portal.origin);
      for (const [name, cookie] of agent.cookies) stolen.cookies.set(name, cookie);
      await sleep(2_200);
      // This request touches the session, then waits in the app while the user signs out.
      const inFlight = stolen.get('/apps/stable/slow/', { Accept: 'application/json' });
      await sleep(300);
      const csrf = await agent.csrfToken();
      expect((await agent.request('POST', '/logout', { form: { _csrf: csrf } })).status).toBe(303);
      expect((await inFlight).status).toBe(200);
      await sleep(100);
      expect((await stolen.get('/me', { Accept: 'application/json' })).status).toBe(401);
      const rows = await portal.portal.database.db.selectFrom('sessions').select('id').where('id', '=', agent.cookie('atrium.sid')?.value ?? stolen.cookie('atrium.sid')!.value).execute();
      expect(rows).toEqual([]);
    } finally {
      await portal.stopAll();
    }
  });
});
