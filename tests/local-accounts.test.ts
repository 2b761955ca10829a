import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../lib/cli.ts';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { passwordProblem } from '../lib/directory/passwords.ts';
import { resetTokenHash } from '../lib/directory/reset-links.ts';
import { Agent } from './helpers/agent.ts';
import { startLoggedPortal, type LogLine } from './helpers/logged-portal.ts';
import type { TestPortal } from './helpers/portal.ts';

/**
 * Issue 14 item 5: local accounts fit for production. Password rules on every path that sets one,
 * password change on /profile, and one-time reset links from the CLI and the console, all through
 * real sign-ins at the embedded provider.
 */

let portal: TestPortal & { log: LogLine[] };
let admin: Agent;
let adminCsrf: string;
const JSON_ACCEPT = { Accept: 'application/json' };
const GOOD = 'amber kettle orbit 41';
const NEWER = 'velvet canyon drum 77';
const NEWEST = 'quiet lantern moss 19';

beforeAll(async () => {
  portal = await startLoggedPortal();
  admin = new Agent(portal.origin);
  await admin.login('admin@example.com', DEMO_PASSWORD);
  adminCsrf = await admin.csrfToken();
}, 120_000);
afterAll(async () => {
  await portal?.stopAll();
});

const cli = async (...argv: string[]) => {
  let out = '';
  let err = '';
  const code = await runCli(argv, portal.portal.database, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) }, 'cli:test', undefined, portal.origin);
  return { code, out, err };
};
const post = (agent: Agent, path: string, form: Record<string, string>) => agent.request('POST', path, { form, headers: { Origin: portal.origin } });
const userOf = async (email: string) => (await portal.portal.users.byEmail(email))[0]!;
const auditRows = async (action: string, email: string) =>
  portal.portal.database.db.selectFrom('audit_log').selectAll().where('action', '=', action).where('target', '=', `user:${email}`).execute();
const signIn = async (email: string, password: string) => {
  const agent = new Agent(portal.origin);
  const last = await agent.login(email, password, '/me');
  return { agent, status: last.status };
};
/** Where /login takes this browser now: straight back in (the provider remembers it) or to the password form. */
async function loginOutcome(agent: Agent): Promise<'signed in without a password' | 'asked for a password'> {
  const last = (await agent.follow('/login?returnTo=/me')).at(-1)!;
  if (last.status === 200 && last.url.includes('/idp/interaction/') && last.text.includes('name="password"')) return 'asked for a password';
  if (last.status === 200 && new URL(last.url).pathname === '/me') return 'signed in without a password';
  throw new Error(`unexpected end of /login: ${last.status} ${last.url}`);
}
async function createUser(email: string, password = GOOD) {
  await portal.portal.admin.addLocalUser('test', { email, password });
  return userOf(email);
}
/** Every value in every table, as one string: what "in the database" means below. */
async function wholeDatabase(): Promise<string> {
  const tables = await portal.portal.database.db.introspection.getTables();
  const dumps = await Promise.all(tables.map(async (t) => JSON.stringify(await portal.portal.database.db.selectFrom(t.name as 'users').selectAll().execute())));
  return dumps.join('\n');
}
const decode = (html: string) => html.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'");

describe('password rules', () => {
  it('refuses short, common and guessable passwords with a clear message, and keeps good ones', async () => {
    expect(await passwordProblem('short')).toMatch(/at least 12 characters/);
    for (const common of ['password1234', 'Password2024!', 'iloveyou12345', 'qwertyuiop123']) expect(await passwordProblem(common)).toMatch(/most common passwords/);
    expect(await passwordProblem('atrium-2026-!!')).toMatch(/name of this site/);
    expect(await passwordProblem('jdoe-1234567', { email: 'jdoe@example.com' })).toMatch(/e-mail address/);
    for (const pattern of ['aaaaaaaaaaaaaa', 'abcabcabcabc', 'asdfghjkl;lkjh', '1234567890123', 'trustno1trustno1']) expect(await passwordProblem(pattern)).toMatch(/repeated|keyboard walk|most common/);
    for (const good of [GOOD, 'correct horse battery staple', 'a long enough password']) expect(await passwordProblem(good)).toBeUndefined();
  });

  it('the CLI refuses a weak password for users add, and accepts a good one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrium-pw-'));
    const weak = join(dir, 'weak');
    writeFileSync(weak, 'Password2024!\n');
    const refused = await cli('users', 'add', 'weak-cli@example.com', '--password-file', weak);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/most common passwords/);
    expect(await portal.portal.users.byEmail('weak-cli@example.com')).toEqual([]);
    const good = join(dir, 'good');
    writeFileSync(good, `${GOOD}\n`);
    expect((await cli('users', 'add', 'weak-cli@example.com', '--password-file', good)).code).toBe(0);
  });

  it('the console refuses a weak password for a new user, beside the form', async () => {
    const refused = await post(admin, '/admin/users', { _csrf: adminCsrf, email: 'weak-console@example.com', password: 'short one' });
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('at least 12 characters');
    expect(refused.text).not.toContain('short one');
    const common = await post(admin, '/admin/users', { _csrf: adminCsrf, email: 'weak-console@example.com', password: 'football1234' });
    expect(common.status).toBe(400);
    expect(common.text).toContain('most common passwords');
    expect(await portal.portal.users.byEmail('weak-console@example.com')).toEqual([]);
  });
});

describe('password change on /profile', () => {
  it('shows the section for local accounts; refuses a wrong current password, a mismatch and a weak new one', async () => {
    await createUser('changer@example.com');
    const { agent } = await signIn('changer@example.com', GOOD);
    const page = await agent.get('/profile');
    expect(page.text).toContain('data-testid="password-section"');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.text)![1]!;
    const cases: [Record<string, string>, RegExp][] = [
      [{ current: 'not the password', password: NEWER, confirm: NEWER }, /current password is not right/],
      [{ current: GOOD, password: NEWER, confirm: NEWEST }, /differ/],
      [{ current: GOOD, password: 'tooshort', confirm: 'tooshort' }, /at least 12 characters/],
      [{ current: GOOD, password: 'sunshine2024!', confirm: 'sunshine2024!' }, /most common passwords/],
      [{ current: GOOD, password: 'changer123456', confirm: 'changer123456' }, /e-mail address/],
    ];
    for (const [form, message] of cases) {
      const refused = await post(agent, '/profile/password', { _csrf: csrf, ...form });
      expect(refused.status).toBe(400);
      expect(decode(refused.text)).toMatch(message);
      expect(refused.text).not.toContain(form.password!);
    }
    // Without the CSRF token nothing changes.
    expect((await post(agent, '/profile/password', { current: GOOD, password: NEWER, confirm: NEWER })).status).toBe(403);
    expect((await signIn('changer@example.com', GOOD)).status).toBe(200);
  });

  it('changes the password: the old one stops working, other browsers are signed out, this one stays; audited', async () => {
    await createUser('mover@example.com');
    const { agent: here } = await signIn('mover@example.com', GOOD);
    const { agent: elsewhere } = await signIn('mover@example.com', GOOD);
    expect(await loginOutcome(elsewhere)).toBe('signed in without a password');
    const csrf = /name="_csrf" value="([^"]+)"/.exec((await here.get('/profile')).text)![1]!;

    const changed = await post(here, '/profile/password', { _csrf: csrf, current: GOOD, password: NEWER, confirm: NEWER });
    expect(changed.status).toBe(303);
    expect(changed.location).toBe(`${portal.origin}/profile?password=changed`);
    expect((await here.get('/profile?password=changed')).text).toContain('Password changed');

    // This browser goes on, here and at the provider; the other one must sign in again, with the new password.
    expect((await here.get('/me', JSON_ACCEPT)).status).toBe(200);
    expect(await loginOutcome(here)).toBe('signed in without a password');
    expect((await elsewhere.get('/me', JSON_ACCEPT)).status).toBe(401);
    expect(await loginOutcome(elsewhere)).toBe('asked for a password');
    expect((await signIn('mover@example.com', GOOD)).status).toBe(401);
    expect((await signIn('mover@example.com', NEWER)).status).toBe(200);

    const rows = await auditRows('user.password_change', 'mover@example.com');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.actor).toBe('mover@example.com');
    expect(JSON.parse(rows[0]!.after!)).toEqual({ sessionsEnded: 1 });
    expect(JSON.stringify(rows)).not.toContain(NEWER);
    expect(JSON.stringify(rows)).not.toContain(GOOD);
    expect(JSON.stringify(portal.log)).not.toContain(NEWER);
  });
});

describe('reset links', () => {
  const pathOf = (link: string) => new URL(link).pathname;

  it('from the CLI: works once, refuses a weak password without using up the link, ends every session; never stored or logged', async () => {
    const user = await createUser('forgetful@example.com');
    const { agent: before } = await signIn('forgetful@example.com', GOOD);
    const issued = await cli('users', 'reset-link', 'forgetful@example.com', '--json');
    expect(issued.code).toBe(0);
    const { link, expiresAt } = JSON.parse(issued.out) as { link: string; expiresAt: string };
    expect(link).toMatch(new RegExp(`^${portal.origin}/reset/[A-Za-z0-9_-]{43}$`));
    expect(Date.parse(expiresAt) - Date.now()).toBeGreaterThan(23 * 3600_000);
    const token = pathOf(link).split('/')[2]!;

    const visitor = new Agent(portal.origin);
    const form = await visitor.get(pathOf(link));
    expect(form.status).toBe(200);
    expect(form.text).toContain('forgetful@example.com');
    expect(form.headers.get('referrer-policy')).toBe('no-referrer');

    const weak = await post(visitor, pathOf(link), { password: 'letmein12345', confirm: 'letmein12345' });
    expect(weak.status).toBe(400);
    expect(decode(weak.text)).toMatch(/most common passwords/);
    const mismatch = await post(visitor, pathOf(link), { password: NEWER, confirm: NEWEST });
    expect(mismatch.status).toBe(400);
    expect(mismatch.text).toContain('differ');

    const used = await post(visitor, pathOf(link), { password: NEWER, confirm: NEWER });
    expect(used.status).toBe(200);
    expect(used.text).toContain('Your password is set');
    expect((await before.get('/me', JSON_ACCEPT)).status).toBe(401);
    expect(await loginOutcome(before)).toBe('asked for a password');
    expect((await signIn('forgetful@example.com', GOOD)).status).toBe(401);
    expect((await signIn('forgetful@example.com', NEWER)).status).toBe(200);

    // Twice: refused, and the password stays.
    const again = await post(visitor, pathOf(link), { password: NEWEST, confirm: NEWEST });
    expect(again.status).toBe(400);
    expect(again.text).toContain('not valid');
    expect((await visitor.get(pathOf(link))).status).toBe(400);
    expect((await signIn('forgetful@example.com', NEWER)).status).toBe(200);

    const issuedRows = await auditRows('user.reset_link_issued', 'forgetful@example.com');
    expect(issuedRows.map((r) => r.actor)).toEqual(['cli:test']);
    const resetRows = await auditRows('user.password_reset', 'forgetful@example.com');
    expect(resetRows).toHaveLength(1);
    expect(JSON.parse(resetRows[0]!.after!)).toMatchObject({ sessionsEnded: 1 });

    const everything = await wholeDatabase();
    expect(everything).not.toContain(token);
    expect(everything).toContain(resetTokenHash(token));
    const stored = await portal.portal.database.db.selectFrom('password_resets' as 'users').selectAll().where('user_id' as 'id', '=', user.id).execute();
    expect(stored).toHaveLength(1);
    expect(portal.log.length).toBeGreaterThan(0);
    expect(JSON.stringify(portal.log)).not.toContain(token);
  });

  it('from the console: shown once on the user page; expires; a tampered token or a disabled account is refused', async () => {
    const user = await createUser('locked-out@example.com');
    const issue = async () => {
      const page = await post(admin, `/admin/users/${user.id}/reset-link`, { _csrf: adminCsrf });
      expect(page.status).toBe(200);
      const link = /<code>(http[^<]+\/reset\/[A-Za-z0-9_-]{43})<\/code>/.exec(page.text)?.[1];
      expect(link).toBeDefined();
      return pathOf(link!);
    };
    // The button is there for a local account; the link is not shown again on the next visit.
    expect((await admin.get(`/admin/users/${user.id}`)).text).toContain(`/admin/users/${user.id}/reset-link`);
    const first = await issue();
    expect((await admin.get(`/admin/users/${user.id}`)).text).not.toContain(first);
    expect((await auditRows('user.reset_link_issued', 'locked-out@example.com')).map((r) => r.actor)).toEqual(['admin@example.com']);

    // Expired: its expiry moved into the past.
    const token = first.split('/')[2]!;
    await portal.portal.database.db
      .updateTable('password_resets' as 'users')
      .set({ expires_at: Date.now() - 1000 } as never)
      .where('token_hash' as 'sub', '=', resetTokenHash(token))
      .execute();
    const visitor = new Agent(portal.origin);
    expect((await visitor.get(first)).status).toBe(400);
    expect((await post(visitor, first, { password: NEWER, confirm: NEWER })).status).toBe(400);

    // Tampered: one character changed.
    const second = await issue();
    const last = second.at(-1)!;
    const tampered = `${second.slice(0, -1)}${last === 'A' ? 'B' : 'A'}`;
    const refused = await post(visitor, tampered, { password: NEWER, confirm: NEWER });
    expect(refused.status).toBe(400);
    expect(refused.text).toContain('not valid');
    expect((await visitor.get('/reset/not-a-token')).status).toBe(400);

    // Disabled after the link was issued: the link no longer works.
    await portal.portal.admin.setDisabled('test', user.id, true);
    expect((await post(visitor, second, { password: NEWER, confirm: NEWER })).status).toBe(400);
    await portal.portal.admin.setDisabled('test', user.id, false);
    expect((await signIn('locked-out@example.com', GOOD)).status).toBe(200);

    // The untampered second link still works (now enabled again), once.
    expect((await post(visitor, second, { password: NEWER, confirm: NEWER })).status).toBe(200);
    expect((await signIn('locked-out@example.com', NEWER)).status).toBe(200);
    expect(JSON.stringify(portal.log)).not.toContain(second.split('/')[2]!);
  });

  it('the CLI refuses bad hours, unknown and disabled users', async () => {
    await createUser('gone@example.com');
    await portal.portal.admin.setDisabled('test', (await userOf('gone@example.com')).id, true);
    expect((await cli('users', 'reset-link', 'gone@example.com')).err).toMatch(/disabled/);
    expect((await cli('users', 'reset-link', 'ghost@example.com')).code).toBe(1);
    expect((await cli('users', 'reset-link', 'mover@example.com', '--hours', '0')).code).toBe(2);
    expect((await cli('users', 'reset-link', 'mover@example.com', '--hours', '1000')).err).toMatch(/at most 168 hours/);
    // A fixed clock: --hours 2 means exactly two hours from now.
    const now = Date.parse('2026-12-01T12:00:00Z');
    vi.useFakeTimers({ toFake: ['Date'], now });
    try {
      const short = JSON.parse((await cli('users', 'reset-link', 'mover@example.com', '--hours', '2', '--json')).out) as { expiresAt: string };
      expect(Date.parse(short.expiresAt)).toBe(now + 2 * 3600_000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('the sign-in page links to "Forgot password?", which says to ask an administrator and names none', async () => {
    const visitor = new Agent(portal.origin);
    const form = (await visitor.follow('/login')).at(-1)!;
    expect(form.text).toContain('href="/reset"');
    const forgot = await visitor.get('/reset');
    expect(forgot.status).toBe(200);
    expect(forgot.text).toContain('Ask an administrator');
    expect(forgot.text).not.toContain('admin@example.com');
  });
});
