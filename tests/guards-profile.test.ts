import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { ProfileFields } from '../lib/profile/fields.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

/**
 * A profile field an admin declares as not user-editable (a cost center, say) is the admin's to
 * set: the user cannot write it at /profile, in a form or as JSON, nor through a child app's
 * profile API, and a refused change writes nothing, not even the other fields it carried.
 */
const APP_KIT = fileURLToPath(new URL('../lib/app-kit.ts', import.meta.url));
const JSON_ACCEPT = { Accept: 'application/json' };
let portal: TestPortal;
let user: Agent;
let csrf: string;
let userId: number;

beforeAll(async () => {
  // A child app that writes whatever field it is told to through lib/app-kit.
  const apps = makeAppsDir({
    'stable/selfserve/index.js': `import Koa from ${JSON.stringify(KOA)};
import { profileOf } from ${JSON.stringify(APP_KIT)};
const app = new Koa();
app.use(async (ctx) => { ctx.body = await profileOf(ctx).update({ [ctx.query.field]: ctx.query.value }); });
export default app;`,
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps } });
  await new ProfileFields(portal.portal.database).add({ name: 'cost_center', label: 'Cost center', type: 'text', userEditable: false });
  userId = (await portal.portal.users.byEmail('stable@example.com'))[0]!.id;

  // The admin sets it, through the admin console: the field is writable, by the right person.
  const admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
  const saved = await admin.request('POST', `/admin/users/${userId}/profile`, { form: { _csrf: await admin.csrfToken(), cost_center: 'CC-1' } });
  expect(saved.status).toBe(303);

  user = new Agent(portal.origin);
  await user.login('stable@example.com', DEMO_PASSWORD);
  csrf = await user.csrfToken();
});
afterAll(async () => {
  await portal?.stopAll();
});

const storedProfile = async () => (await portal.portal.users.byId(userId))!.profile;
const userAudit = async () =>
  (await portal.portal.database.db.selectFrom('audit_log').select('actor').where('action', '=', 'profile.update').execute()).filter((r) => r.actor.includes('stable@example.com'));

describe('admin-only profile fields', () => {
  it('a user cannot set, change or clear one at /profile, and the rest of a refused change is not saved', async () => {
    expect(await storedProfile()).toEqual({ cost_center: 'CC-1' });
    const attempts: [string, Parameters<Agent['request']>[2]][] = [
      ['form', { form: { _csrf: csrf, cost_center: 'CC-mine', team: 'Blue' } }],
      ['form, emptied', { form: { _csrf: csrf, cost_center: '' } }],
      ['JSON', { json: { cost_center: 'CC-mine', team: 'Blue' }, headers: { 'X-CSRF-Token': csrf, ...JSON_ACCEPT } }],
      ['JSON null', { json: { cost_center: null }, headers: { 'X-CSRF-Token': csrf, ...JSON_ACCEPT } }],
    ];
    for (const [what, options] of attempts) {
      const answer = await user.request('POST', '/profile', options);
      expect(answer.status, what).toBe(400);
      expect(answer.text, what).toContain('can only be changed by an administrator');
    }
    expect(await storedProfile()).toEqual({ cost_center: 'CC-1' });
    expect((await user.get('/profile', JSON_ACCEPT)).json().profile).toEqual({ cost_center: 'CC-1' });
    expect(await userAudit()).toEqual([]);
  });

  it('a child app acting for the user cannot write one either', async () => {
    for (const value of ['CC-app', '']) {
      const answer = await user.request('POST', `/apps/stable/selfserve/?field=cost_center&value=${value}`, { headers: JSON_ACCEPT });
      expect(answer.status, value).toBe(400);
    }
    expect(await storedProfile()).toEqual({ cost_center: 'CC-1' });
    // The same app may write a field the user may edit: only the admin-only one was refused.
    expect((await user.request('POST', '/apps/stable/selfserve/?field=team&value=Green', { headers: JSON_ACCEPT })).status).toBe(200);
    expect(await storedProfile()).toEqual({ cost_center: 'CC-1', team: 'Green' });
  });
});
