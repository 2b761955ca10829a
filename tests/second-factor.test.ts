import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { ACR_PASSWORD, ACR_SECOND_FACTOR } from '../lib/factors/assurance.ts';
import { Agent, type AgentResponse } from './helpers/agent.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { stepOf, totpAt } from './helpers/totp-by-hand.ts';
import { createTestDatabase, DIALECTS } from './helpers/databases.ts';
import { openDatabase } from '../lib/db/database.ts';
import { migrateToLatest } from '../lib/db/migrate.ts';
import { AccessIndex } from '../lib/directory/access.ts';
import { AuditLog } from '../lib/directory/audit.ts';
import { FactorDirectory } from '../lib/factors/factor-directory.ts';

/**
 * Issue 14 item 3: a second factor in the embedded provider. Enrolment from /profile, sign-in with
 * a code the test computes (RFC 6238 by hand), wrong, reused and expired codes, recovery codes,
 * and what the ID token says (`amr`, `acr`), all through real code flows.
 */

let portal: TestPortal;
/** A fixed clock (Date only), so the TOTP steps a test uses are exact. */
const T0 = Date.UTC(2026, 11, 1, 12, 0, 0);
const at = (seconds: number) => vi.setSystemTime(T0 + seconds * 1000);

beforeAll(async () => {
  portal = await startTestPortal();
  await portal.portal.admin.addLocalUser('cli:test', { email: 'otp@example.com', password: 'amber kettle orbit 41' });
  await portal.portal.admin.addLocalUser('cli:test', { email: 'recover@example.com', password: 'amber kettle orbit 41' });
  await portal.portal.admin.addLocalUser('cli:test', { email: 'guess@example.com', password: 'amber kettle orbit 41' });
}, 120_000);
afterAll(async () => {
  await portal?.stopAll();
});
afterEach(() => {
  vi.useRealTimers();
});

const PASSWORD = 'amber kettle orbit 41';

/** The ID token of the agent's portal session, decoded (it was verified by the portal at sign-in). */
async function idTokenOf(agent: Agent): Promise<Record<string, unknown>> {
  const stored = await portal.portal.sessions.get(agent.cookie('atrium.sid')!.value);
  const tokens = (stored!.data as { tokens: { id: string } }).tokens;
  return decodeJwt(tokens.id);
}

const formAction = (page: AgentResponse) => /<form method="post" action="([^"]+)"/.exec(page.text)?.[1]?.replace(/&amp;/g, '&');

/** Password first; returns the second-factor page (the sign-in is not finished yet). */
async function passwordStep(agent: Agent, email: string): Promise<AgentResponse> {
  const page = await agent.login(email, PASSWORD, '/me');
  expect(page.status, page.text.slice(0, 300)).toBe(200);
  expect(page.text).toContain('data-testid="second-factor"');
  return page;
}

/** Posts a code on the second-factor page; on success follows the flow to its end. */
async function submitCode(agent: Agent, page: AgentResponse, code: string): Promise<AgentResponse> {
  const posted = await agent.request('POST', formAction(page)!, { form: { code } });
  if (posted.status !== 303) return posted;
  return (await agent.follow(posted.location!)).at(-1)!;
}

/** Enrols an authenticator app from /profile with a code for `step`; returns the secret and recovery codes. */
async function enrol(agent: Agent, step: number): Promise<{ secret: string; codes: string[] }> {
  const setup = await agent.get('/profile/factors/totp');
  expect(setup.status).toBe(200);
  expect(setup.text).toContain('<svg');
  const secret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(setup.text)![1]!;
  const csrf = /name="_csrf" value="([^"]+)"/.exec(setup.text)![1]!;
  const done = await agent.request('POST', '/profile/factors/totp', { form: { _csrf: csrf, current: PASSWORD, code: totpAt(secret, step), label: 'My phone' } });
  expect(done.status, done.text.slice(0, 300)).toBe(200);
  const codes = [...done.text.matchAll(/<li><code>([A-Z0-9-]+)<\/code><\/li>/g)].map((m) => m[1]!);
  return { secret, codes };
}

describe('TOTP in the embedded provider', () => {
  it('a password-only sign-in says so in the ID token: amr ["pwd"], acr password', async () => {
    const agent = new Agent(portal.origin);
    const me = await agent.login('stable@example.com', DEMO_PASSWORD, '/me');
    expect(me.status).toBe(200);
    const claims = await idTokenOf(agent);
    expect(claims.amr).toEqual(['pwd']);
    expect(claims.acr).toBe(ACR_PASSWORD);
  });

  it('enrols from /profile, then sign-in asks for the code; wrong, reused and expired codes are refused; amr/acr say otp', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 });
    const s0 = stepOf(T0);
    const owner = new Agent(portal.origin);
    expect((await owner.login('otp@example.com', PASSWORD, '/me')).status).toBe(200);
    // A code that does not match the secret sets nothing up.
    const setup = await owner.get('/profile/factors/totp');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(setup.text)![1]!;
    const mismatch = await owner.request('POST', '/profile/factors/totp', { form: { _csrf: csrf, current: PASSWORD, code: '12345x' } });
    expect(mismatch.status).toBe(400);
    expect(mismatch.text).toContain('That code does not match');
    // The session alone cannot add a factor: the current password is asked.
    const unconfirmed = await owner.request('POST', '/profile/factors/totp', { form: { _csrf: csrf, current: 'not it', code: totpAt(/data-testid="totp-secret">([A-Z2-7]+)</.exec(setup.text)![1]!, s0) } });
    expect(unconfirmed.status).toBe(400);
    expect(unconfirmed.text).toContain('Your current password is not right');
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').execute()).toEqual([]);

    const { secret, codes } = await enrol(owner, s0);
    expect(codes).toHaveLength(10);
    const profile = await owner.get('/profile');
    expect(profile.text).toContain('My phone');
    // The secret is never shown again, and the database keeps only hashes of the recovery codes.
    expect(profile.text).not.toContain(secret);
    const hashes = await portal.portal.database.db.selectFrom('recovery_codes').select('code_hash').execute();
    expect(hashes.map((h) => h.code_hash)).not.toContain(codes[0]);
    expect(hashes.every((h) => /^[0-9a-f]{64}$/.test(h.code_hash))).toBe(true);

    // The enrolment's own code cannot sign in (its step is used).
    const reusedAgent = new Agent(portal.origin);
    const reusedPage = await passwordStep(reusedAgent, 'otp@example.com');
    const reused = await submitCode(reusedAgent, reusedPage, totpAt(secret, s0));
    expect(reused.status).toBe(401);
    expect(reused.text).toContain('That code was used already');
    expect((await reusedAgent.get('/me', { Accept: 'application/json' })).status).toBe(401);

    // A wrong code.
    const wrong = await submitCode(reusedAgent, reusedPage, totpAt(secret, s0 + 7));
    expect(wrong.status).toBe(401);
    expect(wrong.text).toContain('That code is wrong or has expired');

    // Two steps later, the code of two steps ago has expired.
    at(60);
    const expired = await submitCode(reusedAgent, reusedPage, totpAt(secret, s0 + 0));
    expect(expired.status).toBe(401);
    const stale = await submitCode(reusedAgent, reusedPage, totpAt(secret, stepOf(T0 + 60_000) - 2));
    expect(stale.status).toBe(401);
    expect(stale.text).toContain('That code is wrong or has expired');

    // The current code signs in; the ID token says a second factor was used.
    const me = await submitCode(reusedAgent, reusedPage, totpAt(secret, stepOf(T0 + 60_000)));
    expect(me.status, me.text.slice(0, 300)).toBe(200);
    expect(me.json()).toMatchObject({ email: 'otp@example.com' });
    const claims = await idTokenOf(reusedAgent);
    expect(claims.amr).toEqual(['pwd', 'otp']);
    expect(claims.acr).toBe(ACR_SECOND_FACTOR);

    // The same code again, at another browser, within its window: reused.
    const again = new Agent(portal.origin);
    const againPage = await passwordStep(again, 'otp@example.com');
    const twice = await submitCode(again, againPage, totpAt(secret, stepOf(T0 + 60_000)));
    expect(twice.status).toBe(401);
    expect(twice.text).toContain('That code was used already');

    const audit = await portal.portal.database.db.selectFrom('audit_log').select(['action', 'after']).where('target', '=', 'user:otp@example.com').execute();
    const actions = audit.map((a) => a.action);
    expect(actions).toContain('factor.add');
    expect(actions).toContain('factor.recovery_codes');
    expect(actions).toContain('session.second_factor');
    expect(audit.filter((a) => a.action === 'session.second_factor_refused').map((a) => JSON.parse(a.after as string).reason)).toEqual(
      expect.arrayContaining(['code reused', 'wrong or expired code']),
    );
  });

  it('a recovery code signs in once', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 + 3_600_000 });
    const owner = new Agent(portal.origin);
    expect((await owner.login('recover@example.com', PASSWORD, '/me')).status).toBe(200);
    const { codes } = await enrol(owner, stepOf(T0 + 3_600_000));
    const code = codes[3]!;

    const first = new Agent(portal.origin);
    const me = await submitCode(first, await passwordStep(first, 'recover@example.com'), code.toLowerCase());
    expect(me.status).toBe(200);
    expect((await idTokenOf(first)).amr).toEqual(['pwd', 'otp']);

    const second = new Agent(portal.origin);
    const refused = await submitCode(second, await passwordStep(second, 'recover@example.com'), code);
    expect(refused.status).toBe(401);
    const left = await second.get('/profile', { Accept: 'application/json' });
    expect(left.status).toBe(401);
    const profile = await owner.get('/profile');
    expect(profile.text).toContain('9 recovery codes left');

    // Removing it: only by its owner; the last factor takes the recovery codes with it.
    const factorId = Number(/action="\/profile\/factors\/(\d+)\/remove"/.exec(profile.text)![1]);
    const other = new Agent(portal.origin);
    await other.login('stable@example.com', DEMO_PASSWORD);
    // Their own password right: still not theirs to remove.
    expect((await other.request('POST', `/profile/factors/${factorId}/remove`, { form: { _csrf: await other.csrfToken(), current: DEMO_PASSWORD } })).status).toBe(404);
    const ownerId = (await portal.portal.admin.resolveUser('recover@example.com')).id;
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', ownerId).execute()).toHaveLength(1);
    const removed = await owner.request('POST', `/profile/factors/${factorId}/remove`, { form: { _csrf: await owner.csrfToken(), current: PASSWORD } });
    expect(removed.status).toBe(303);
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', ownerId).execute()).toEqual([]);
    expect(await portal.portal.database.db.selectFrom('recovery_codes').select('id').where('user_id', '=', ownerId).execute()).toEqual([]);
    const [entry] = await portal.portal.database.db.selectFrom('audit_log').select(['actor', 'before']).where('action', '=', 'factor.remove').where('target', '=', 'user:recover@example.com').execute();
    expect(entry).toMatchObject({ actor: 'recover@example.com' });
  });

  it('wrong codes are counted by the login throttle: then even the right code waits', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 + 7_200_000 });
    const s = stepOf(T0 + 7_200_000);
    const owner = new Agent(portal.origin);
    expect((await owner.login('guess@example.com', PASSWORD, '/me')).status).toBe(200);
    const { secret } = await enrol(owner, s);
    const guesser = new Agent(portal.origin);
    const page = await passwordStep(guesser, 'guess@example.com');
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await submitCode(guesser, page, totpAt(secret, s + 20 + i))).status);
    expect(statuses.slice(0, 10)).toEqual(Array(10).fill(401));
    expect(statuses.slice(10)).toEqual([429, 429]);
    const right = await submitCode(guesser, page, totpAt(secret, s + 1));
    expect(right.status).toBe(429);
    expect(right.text).toContain('Too many failed attempts');
    // Knowing the password does not buy more guesses: a new, correct password still meets the wait.
    const again = new Agent(portal.origin);
    const secondPage = await passwordStep(again, 'guess@example.com');
    expect((await submitCode(again, secondPage, totpAt(secret, s + 1))).status).toBe(429);
  });

  it('refuses the second step without the first, and hostile input, with clear 4xx answers', async () => {
    const agent = new Agent(portal.origin);
    const hops = await agent.follow('/login?returnTo=/me');
    const action = formAction(hops.at(-1)!)!;
    const factor = action.replace(/\/login$/, '/factor');
    // No password yet: no second step to take.
    const skipped = await agent.request('POST', factor, { form: { code: '123456' } });
    expect(skipped.status).toBe(400);
    expect(skipped.text).toContain('This sign-in step has expired');
    // Another browser (no interaction cookie) and a malformed uid.
    expect((await new Agent(portal.origin).request('POST', factor, { form: { code: '123456' } })).status).toBe(400);
    expect((await agent.request('POST', '/idp/interaction/..%2F..%2Fx/factor', { form: { code: '1' } })).status).toBe(400);
    expect((await agent.request('POST', '/idp/interaction/not*valid/factor', { form: { code: '1' } })).status).toBe(400);
    // Odd bodies at /profile: not signed in is a 401, a signed-in bad label a 400.
    expect((await new Agent(portal.origin).request('POST', '/profile/factors/totp', { form: { code: '1' }, headers: { Accept: 'application/json' } })).status).toBe(401);
  });

  it('refuses hostile input on /profile’s sign-in security forms with clear 4xx answers', async () => {
    await portal.portal.admin.addLocalUser('cli:test', { email: 'hostile@example.com', password: PASSWORD });
    const agent = new Agent(portal.origin);
    await agent.login('hostile@example.com', PASSWORD, '/me');
    const csrf = await agent.csrfToken();
    const api = { Accept: 'application/json' };
    const post = (path: string, form: Record<string, string>) => agent.request('POST', path, { form, headers: api });
    expect((await post('/profile/factors/abc/remove', { _csrf: csrf })).status).toBe(400);
    expect((await post('/profile/factors/999999/remove', { _csrf: csrf, current: PASSWORD })).status).toBe(404);
    expect((await post('/profile/factors/1/remove', {})).status).toBe(403);
    expect((await post('/profile/factors/recovery-codes', { _csrf: csrf, current: PASSWORD })).json()).toMatchObject({ error: 'no_factor' });
    // A set-up never started, then a label that is not one.
    expect((await post('/profile/factors/totp', { _csrf: csrf, current: PASSWORD, code: '123456' })).json()).toMatchObject({ error: 'enrolment_expired' });
    await agent.get('/profile/factors/totp');
    expect((await post('/profile/factors/totp', { _csrf: csrf, current: PASSWORD, code: '123456', label: '<script>alert(1)</script>' })).json()).toMatchObject({ error: 'bad_factor_label' });
    // Passkeys: the password first; a forged registration is refused, and its challenge is spent.
    const json = (path: string, body: unknown) => agent.request('POST', path, { json: body, headers: { ...api, 'X-CSRF-Token': csrf } });
    expect((await json('/profile/factors/passkey/options', { current: 'wrong' })).json()).toMatchObject({ error: 'wrong_password' });
    const options = await json('/profile/factors/passkey/options', { current: PASSWORD });
    expect(options.status).toBe(200);
    expect(options.json()).toMatchObject({ rp: { id: '127.0.0.1' }, challenge: expect.any(String) });
    const forged = await json('/profile/factors/passkey', { credential: { id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: { clientDataJSON: 'e30', attestationObject: 'oA' } } });
    expect(forged.json()).toMatchObject({ error: 'passkey_refused' });
    expect((await json('/profile/factors/passkey', { credential: {} })).json()).toMatchObject({ error: 'enrolment_expired' });
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', (await portal.portal.admin.resolveUser('hostile@example.com')).id).execute()).toEqual([]);
  });
});

describe('admins: require a second factor for a group, reset a user’s factors', () => {
  const cli = async (...argv: string[]) => {
    const { runCli } = await import('../lib/cli.ts');
    let out = '';
    const code = await runCli(argv, portal.portal.database, { out: (t) => (out += `${t}\n`), err: (t) => (out += `${t}\n`) }, 'cli:test', undefined, portal.origin);
    return { code, out };
  };
  const auditOf = (action: string, target: string) =>
    portal.portal.database.db.selectFrom('audit_log').select(['actor', 'after', 'before']).where('action', '=', action).where('target', '=', target).execute();

  it('members of a group that requires one set up a factor at their next sign-in, before they get a session', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 + 10_800_000 });
    const s = stepOf(T0 + 10_800_000);
    await portal.portal.admin.createGroup('cli:test', { name: 'finance' });
    await portal.portal.admin.addLocalUser('cli:test', { email: 'req@example.com', password: PASSWORD });
    await portal.portal.admin.addMember('cli:test', 'finance', 'req@example.com');
    // A session from before the requirement, at the portal and at the provider.
    const early = new Agent(portal.origin);
    expect((await early.login('req@example.com', PASSWORD, '/me')).status).toBe(200);

    expect(await cli('groups', 'require-factor', 'finance')).toMatchObject({ code: 0 });
    expect(await auditOf('group.second_factor', 'group:finance')).toEqual([{ actor: 'cli:test', before: '{"required":false}', after: '{"required":true}' }]);

    // The provider session made with a password alone is not reused: the sign-in page is shown.
    early.cookies.delete('atrium.sid');
    early.cookies.delete('atrium.sid.sig');
    const again = (await early.follow('/login?returnTo=/me')).at(-1)!;
    expect(again.url).toContain('/idp/interaction/');
    expect(again.text).toContain('name="password"');

    const agent = new Agent(portal.origin);
    const enrolPage = await agent.login('req@example.com', PASSWORD, '/me');
    expect(enrolPage.text).toContain('Members of finance sign in with a second factor.');
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
    const secret = /data-testid="totp-secret">([A-Z2-7]+)</.exec(enrolPage.text)![1]!;
    const codes = await agent.request('POST', formAction(enrolPage)!, { form: { code: totpAt(secret, s) } });
    expect(codes.text).toContain('data-testid="recovery-codes"');
    expect((await agent.get('/me', { Accept: 'application/json' })).status).toBe(401);
    const posted = await agent.request('POST', formAction(codes)!, { form: {} });
    const me = (await agent.follow(posted.location!)).at(-1)!;
    expect(me.json()).toMatchObject({ email: 'req@example.com' });
    expect((await idTokenOf(agent)).amr).toEqual(['pwd', 'otp']);
  });

  it('the console and the CLI reset a user’s factors (audited); then the password alone signs in', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: T0 + 14_400_000 });
    await portal.portal.admin.addLocalUser('cli:test', { email: 'lost@example.com', password: PASSWORD });
    const owner = new Agent(portal.origin);
    await owner.login('lost@example.com', PASSWORD, '/me');
    await enrol(owner, stepOf(T0 + 14_400_000));
    const user = await portal.portal.admin.resolveUser('lost@example.com');

    // Only admins may.
    const stranger = new Agent(portal.origin);
    await stranger.login('stable@example.com', DEMO_PASSWORD);
    const refused = await stranger.request('POST', `/admin/users/${user.id}/factors/reset`, { form: { _csrf: await stranger.csrfToken() } });
    expect(refused.status).toBe(403);

    const admin = new Agent(portal.origin);
    await admin.login('admin@example.com', DEMO_PASSWORD);
    const page = await admin.get(`/admin/users/${user.id}`);
    expect(page.text).toContain('data-testid="user-factors"');
    const reset = await admin.request('POST', `/admin/users/${user.id}/factors/reset`, { form: { _csrf: await admin.csrfToken() } });
    expect(reset.status).toBe(303);
    expect(await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
    expect(await portal.portal.database.db.selectFrom('recovery_codes').select('id').where('user_id', '=', user.id).execute()).toEqual([]);
    const [entry] = await auditOf('factor.reset', 'user:lost@example.com');
    expect(entry?.actor).toBe('admin@example.com');
    expect(JSON.parse(entry!.before as string)).toEqual([expect.objectContaining({ kind: 'totp', label: 'My phone' })]);

    const back = new Agent(portal.origin);
    expect((await back.login('lost@example.com', PASSWORD, '/me')).json()).toMatchObject({ email: 'lost@example.com' });

    // The CLI, for the finance member of the test before.
    const before = await portal.portal.database.db.selectFrom('user_factors').select('id').where('user_id', '=', (await portal.portal.admin.resolveUser('req@example.com')).id).execute();
    expect(before).toHaveLength(1);
    const out = await cli('users', 'reset-factors', 'req@example.com');
    expect(out).toMatchObject({ code: 0 });
    expect(out.out).toContain('Removed 1 second factor');
    expect((await auditOf('factor.reset', 'user:req@example.com'))[0]?.actor).toBe('cli:test');
    expect(await cli('users', 'reset-factors', 'nobody-here@example.com')).toMatchObject({ code: 1 });

    // The console turns the group requirement off again.
    const off = await admin.request('POST', '/admin/groups/finance/second-factor', { form: { _csrf: await admin.csrfToken(), required: '0' } });
    expect(off.status).toBe(303);
    expect((await auditOf('group.second_factor', 'group:finance')).at(-1)).toMatchObject({ actor: 'admin@example.com', after: '{"required":false}' });
  });
});

describe.each(DIALECTS)('the factor store on %s', (dialect) => {
  it('accepts a time step once, even when two sign-ins race with the same code; a recovery code once too', async () => {
    const testDb = await createTestDatabase(dialect);
    const database = await openDatabase(testDb.target);
    try {
      await migrateToLatest(database);
      const inserted = await database.db
        .insertInto('users')
        .values({ sub: 'racer', email: 'racer@example.com', name: null, picture: null, created_at: 1, updated_at: 1, last_login_at: null, profile: '{}', password_hash: null, disabled_at: null })
        .executeTakeFirstOrThrow();
      const owner = { id: Number(inserted.insertId), email: 'racer@example.com', sub: 'racer' };
      const factors = new FactorDirectory({ database, access: await AccessIndex.load(database), audit: new AuditLog(database) });
      const secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
      const { recoveryCodes } = await factors.enrolTotp('test', owner, { secret, code: totpAt(secret, stepOf(T0)), label: 'Phone' }, T0);
      const next = totpAt(secret, stepOf(T0) + 1);
      const answers = await Promise.all([factors.checkTotp(owner.id, next, T0 + 30_000), factors.checkTotp(owner.id, next, T0 + 30_000), factors.checkTotp(owner.id, next, T0 + 30_000)]);
      expect(answers.sort()).toEqual(['accepted', 'reused', 'reused']);
      const spent = await Promise.all([factors.useRecoveryCode(owner.id, recoveryCodes[0]!), factors.useRecoveryCode(owner.id, recoveryCodes[0]!)]);
      expect(spent.sort()).toEqual([false, true]);
      expect(await factors.recoveryCodesLeft(owner.id)).toBe(9);
    } finally {
      await database.close();
      await testDb.drop();
    }
  });
});
