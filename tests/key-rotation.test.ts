import { describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { koaAppSource, makeAppsDir } from './helpers/apps.ts';
import { createTestDatabase } from './helpers/databases.ts';
import { startTestPortal } from './helpers/portal.ts';

describe('SESSION_SECRET rotation', () => {
  it('keeps people signed in across a key rotation and re-signs their cookie with the new key', async () => {
    const database = await createTestDatabase('sqlite');
    const apps = makeAppsDir({ 'stable/hello/index.js': koaAppSource('hello') });
    const oldKey = 'o'.repeat(40);
    const newKey = 'n'.repeat(40);
    const first = await startTestPortal({ database, env: { SESSION_SECRET: oldKey, APPS_DIR: apps } });
    const agent = new Agent(first.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    const oldSig = agent.cookie('atrium.sid.sig')!.value;
    await first.stopAll();

    // Same database; keys newest first, the old one still accepted.
    const second = await startTestPortal({ database, env: { SESSION_SECRET: `${newKey},${oldKey}`, APPS_DIR: apps } });
    try {
      const moved = new Agent(second.origin);
      for (const [name, cookie] of agent.cookies) moved.cookies.set(name, cookie);
      const r = await moved.get('/apps/stable/hello/', { Accept: 'application/json' });
      expect(r.status).toBe(200);
      expect(r.json()).toMatchObject({ app: 'hello', user: 'stable@example.com' });
      expect(moved.cookie('atrium.sid.sig')!.value).not.toBe(oldSig);
      // While the old key is still listed, a cookie signed with it keeps working.
      const stale = new Agent(second.origin);
      stale.cookies.set('atrium.sid', agent.cookie('atrium.sid')!);
      stale.cookies.set('atrium.sid.sig', agent.cookie('atrium.sid.sig')!);
      expect((await stale.get('/apps/stable/hello/', { Accept: 'application/json' })).status).toBe(200);
    } finally {
      await second.stopAll();
    }
    const third = await startTestPortal({ database, env: { SESSION_SECRET: newKey, APPS_DIR: apps } });
    try {
      const stale = new Agent(third.origin);
      stale.cookies.set('atrium.sid', agent.cookie('atrium.sid')!);
      stale.cookies.set('atrium.sid.sig', agent.cookie('atrium.sid.sig')!);
      expect((await stale.get('/apps/stable/hello/', { Accept: 'application/json' })).status).toBe(401);
    } finally {
      await third.stopAll();
      await database.drop();
    }
  });
});
