import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { signWebhook } from '../lib/hooks/idp-webhook.ts';
import { Agent } from './helpers/agent.ts';
import { KOA, makeAppsDir } from './helpers/apps.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';

const SECRET = 'w'.repeat(48);
const APP_KIT = fileURLToPath(new URL('../lib/app-kit.ts', import.meta.url));
let portal: TestPortal;

beforeAll(async () => {
  // A child app that reads and writes the profile through lib/app-kit's API.
  const apps = makeAppsDir({
    'stable/team/index.js': `import Koa from ${JSON.stringify(KOA)};
import { profileOf } from ${JSON.stringify(APP_KIT)};
const app = new Koa();
app.use(async (ctx) => {
  if (ctx.method === 'POST') { ctx.body = await profileOf(ctx).update({ team: ctx.query.team }); return; }
  ctx.body = { fromState: ctx.state.user.profile, fromApi: await profileOf(ctx).get() };
});
export default app;`,
  });
  portal = await startTestPortal({ env: { APPS_DIR: apps, IDP_HOOK_SECRET: SECRET } });
});
afterAll(async () => {
  await portal?.stopAll();
});

async function deliver(body: string, options: { timestamp?: number; signature?: string; contentType?: string; omit?: 'timestamp' | 'signature' } = {}) {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = { 'Content-Type': options.contentType ?? 'application/json' };
  if (options.omit !== 'timestamp') headers['X-Atrium-Timestamp'] = String(timestamp);
  if (options.omit !== 'signature') headers['X-Atrium-Signature'] = options.signature ?? signWebhook(SECRET, timestamp, body);
  const response = await fetch(`${portal.origin}/hooks/idp`, { method: 'POST', headers, body });
  return { status: response.status, body: (await response.json().catch(() => ({}))) as Record<string, unknown> };
}

const event = (id: string, type: string, user: Record<string, unknown>) => JSON.stringify({ id, type, user });
const countRows = async () => {
  const db = portal.portal.database.db;
  const [users, events, audit] = await Promise.all([
    db.selectFrom('users').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    db.selectFrom('webhook_events').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
    db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow(),
  ]);
  return { users: Number(users.n), events: Number(events.n), audit: Number(audit.n) };
};

describe('the user’s own profile', () => {
  it('is edited at /profile, validated, and survives re-login', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('ea@example.com', DEMO_PASSWORD);
    const page = await agent.get('/profile');
    expect(page.status).toBe(200);
    expect(page.text).toContain('name="team"');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    const saved = await agent.request('POST', '/profile', { form: { _csrf: csrf, team: 'Platform', location: 'Lisbon', bio: 'Line one\nLine two' } });
    expect(saved.status).toBe(303);
    expect((await agent.get('/profile', { Accept: 'application/json' })).json().profile).toEqual({ team: 'Platform', location: 'Lisbon', bio: 'Line one\nLine two' });

    for (const [form, code] of [
      [{ team: 'x'.repeat(101) }, 400],
      [{ team: 'bad\u0000byte' }, 400],
      [{ team: 'two\nlines' }, 400],
      [{ unknown_field: 'x' }, 400],
    ] as [Record<string, string>, number][]) {
      const r = await agent.request('POST', '/profile', { form: { _csrf: csrf, ...form } });
      expect(r.status, JSON.stringify(form)).toBe(code);
    }
    // Prototype-pollution shapes are dropped by the body parser or refused; either way nothing changes.
    const pollute = await fetch(`${portal.origin}/profile`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: [...agent.cookies.values()].map((c) => `${c.name}=${c.value}`).join('; '), Accept: 'text/html' },
      body: `_csrf=${csrf}&__proto__[polluted]=1&constructor[prototype][polluted]=1&team=Platform`,
      redirect: 'manual',
    });
    expect([303, 400]).toContain(pollute.status);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await agent.request('POST', '/profile', { form: { team: 'no token' } })).status).toBe(403);
    expect((await agent.request('POST', '/profile', { json: { team: ['array'] }, headers: { 'X-CSRF-Token': csrf } })).status).toBe(400);
    expect((await agent.get('/profile', { Accept: 'application/json' })).json().profile.team).toBe('Platform');

    // Sign out and in again: the provider's claims are re-synced, the typed profile is not touched.
    const again = new Agent(portal.origin);
    await again.login('ea@example.com', DEMO_PASSWORD);
    expect((await again.get('/me', { Accept: 'application/json' })).json().profile).toMatchObject({ team: 'Platform', location: 'Lisbon' });
  });

  it('keeps required fields filled once they are part of a change', async () => {
    const { ProfileFields } = await import('../lib/profile/fields.ts');
    await new ProfileFields(portal.portal.database).add({ name: 'cost_center', label: 'Cost center', type: 'text', required: true });
    const agent = new Agent(portal.origin);
    await agent.login('devel@example.com', DEMO_PASSWORD);
    const csrf = await agent.csrfToken();
    const post = (form: Record<string, string>) => agent.request('POST', '/profile', { form: { _csrf: csrf, ...form } });
    // A profile from before the field existed can still save other fields…
    expect((await post({ team: 'Ops' })).status).toBe(303);
    // …but a change that names the required field must fill it.
    const empty = await post({ team: 'Ops', cost_center: '' });
    expect(empty.status).toBe(400);
    expect(empty.text).toContain('cost_center: is required');
    expect((await post({ cost_center: 'CC-42' })).status).toBe(303);
    expect((await post({ cost_center: '   ' })).status).toBe(400);
    expect((await agent.get('/profile', { Accept: 'application/json' })).json().profile).toMatchObject({ team: 'Ops', cost_center: 'CC-42' });
  });

  it('child apps read it from ctx.state.user and update it through lib/app-kit', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('stable@example.com', DEMO_PASSWORD);
    const updated = await agent.request('POST', '/apps/stable/team/?team=Design', { headers: { Accept: 'application/json' } });
    expect(updated.status).toBe(200);
    expect(updated.json()).toMatchObject({ team: 'Design' });
    const read = (await agent.get('/apps/stable/team/', { Accept: 'application/json' })).json();
    expect(read.fromApi).toMatchObject({ team: 'Design' });
    expect(read.fromState).toMatchObject({ team: 'Design' }); // the next request already sees it
    const bad = await agent.request('POST', `/apps/stable/team/?team=${'x'.repeat(200)}`, { headers: { Accept: 'application/json' } });
    expect(bad.status).toBe(400);
    const audit = await portal.portal.database.db.selectFrom('audit_log').selectAll().where('action', '=', 'profile.update').execute();
    expect(audit.some((a) => a.actor.startsWith('app:/apps/stable/team for stable@example.com'))).toBe(true);
  });
});

describe('POST /hooks/idp', () => {
  it('creates and updates users from signed events, idempotently, without touching profiles', async () => {
    const created = await deliver(event('evt-1', 'user.created', { sub: 'auth0|abc', email: 'New@Corp.example', name: 'New Person' }));
    expect(created).toEqual({ status: 200, body: { status: 'applied' } });
    const user = await portal.portal.users.bySub('auth0|abc');
    expect(user).toMatchObject({ email: 'new@corp.example', name: 'New Person', loginCount: 0, lastLoginAt: null });
    await portal.portal.database.db.updateTable('users').set({ profile: JSON.stringify({ team: 'Typed by user' }) }).where('id', '=', user!.id).execute();

    const replayed = await deliver(event('evt-1', 'user.created', { sub: 'auth0|abc', email: 'other@corp.example' }));
    expect(replayed.body).toEqual({ status: 'duplicate' });
    expect((await portal.portal.users.bySub('auth0|abc'))!.email).toBe('new@corp.example');

    const updated = await deliver(event('evt-2', 'user.updated', { sub: 'auth0|abc', name: 'Renamed', profile: { team: 'from idp' } }));
    expect(updated.body).toEqual({ status: 'applied' });
    expect(await portal.portal.users.bySub('auth0|abc')).toMatchObject({ name: 'Renamed', email: 'new@corp.example', profile: { team: 'Typed by user' } });
  });

  it('profile edits survive a webhook update of the same user', async () => {
    const ea = (await portal.portal.users.byEmail('ea@example.com'))[0]!;
    expect((await deliver(event('evt-ea', 'user.updated', { sub: ea.sub, name: 'Early Adopter II' }))).status).toBe(200);
    expect(await portal.portal.users.bySub(ea.sub)).toMatchObject({ name: 'Early Adopter II', profile: { team: 'Platform', location: 'Lisbon' } });
  });

  it('a deleted user is disabled and signed out, their profile kept', async () => {
    const agent = new Agent(portal.origin);
    await agent.login('nobody@example.com', DEMO_PASSWORD);
    const nobody = (await portal.portal.users.byEmail('nobody@example.com'))[0]!;
    expect((await deliver(event('evt-del', 'user.deleted', { sub: nobody.sub }))).body).toEqual({ status: 'applied' });
    expect((await portal.portal.users.bySub(nobody.sub))!.disabled).toBe(true);
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
    expect((await deliver(event('evt-del-ghost', 'user.deleted', { sub: 'never-seen' }))).body).toEqual({ status: 'ignored' });
  });

  it('answers every hostile delivery with a 4xx and writes nothing', async () => {
    const before = await countRows();
    const body = event('evt-hostile', 'user.created', { sub: 'attacker', email: 'attacker@evil.example' });
    const now = Math.floor(Date.now() / 1000);
    const cases: [Promise<{ status: number; body: Record<string, unknown> }>, number, string][] = [
      [deliver(body, { omit: 'signature' }), 401, 'signature_missing'],
      [deliver(body, { omit: 'timestamp' }), 401, 'signature_missing'],
      [deliver(body, { signature: 'sha256=' + '0'.repeat(64) }), 401, 'bad_signature'],
      [deliver(body, { signature: signWebhook('another secret, not ours, long enough', now, body) }), 401, 'bad_signature'],
      [deliver(body, { signature: 'garbage' }), 401, 'bad_signature'],
      [deliver(body, { timestamp: now - 600 }), 401, 'stale_signature'],
      [deliver(body, { timestamp: now + 600 }), 401, 'stale_signature'],
      [deliver(body, { timestamp: now, signature: signWebhook(SECRET, now - 1, body) }), 401, 'bad_signature'],
      [deliver(body.replace('attacker@', 'victim@'), { signature: signWebhook(SECRET, now, body), timestamp: now }), 401, 'bad_signature'],
      [deliver('{"id": "x", "type": ', {}), 400, 'malformed_json'],
      [deliver(event('evt-odd', 'user.exploded', { sub: 'x' })), 400, 'unknown_event'],
      [deliver(JSON.stringify({ id: 'evt-nouser', type: 'user.created' })), 400, 'unknown_event'],
      [deliver(JSON.stringify({ id: 'evt-bigsub', type: 'user.created', user: { sub: 'x'.repeat(300) } })), 400, 'unknown_event'],
      [deliver(JSON.stringify({ id: 'evt-type', type: 'user.created', user: { sub: 42 } })), 400, 'unknown_event'],
      [deliver(JSON.stringify({ id: 'evt-big', type: 'user.created', user: { sub: 'big' }, pad: 'x'.repeat(70_000) })), 413, 'payload_too_large'],
      [deliver(body, { contentType: 'text/plain' }), 415, 'unsupported_media_type'],
    ];
    for (const [pending, status, code] of cases) {
      const result = await pending;
      expect(result.status, code).toBe(status);
      expect(result.body.error, code).toBe(code);
    }
    expect(await countRows()).toEqual(before);
    expect(await portal.portal.users.bySub('attacker')).toBeUndefined();
  });

  it('is absent when IDP_HOOK_SECRET is not set', async () => {
    const other = await startTestPortal();
    try {
      const r = await fetch(`${other.origin}/hooks/idp`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      expect(r.status).toBe(404);
    } finally {
      await other.stopAll();
    }
  });
});
