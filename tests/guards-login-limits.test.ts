import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { DEMO_PASSWORD } from '../lib/directory/demo.ts';
import { Agent } from './helpers/agent.ts';
import { createTestDatabase, type TestDatabase } from './helpers/databases.ts';
import { startTestPortal, type TestPortal } from './helpers/portal.ts';
import { claimRedisDatabase, SHARED_REDIS, type ClaimedRedisDatabase } from './helpers/redis-database.ts';
import { openSignInForm, type SignInForm } from './helpers/sign-in-form.ts';

/**
 * The sign-in form's limits as README states them: 10 failed attempts per account and 50 per
 * client address in 15 minutes, then 429; with REDIS_URL the counts are shared by every instance,
 * so a guesser gains nothing by spreading attempts over them. Every request here comes from
 * 127.0.0.1, which is the point: one address, many accounts.
 */
const PER_ACCOUNT = 10;
const PER_ADDRESS = 50;
const WRONG = 'not-the-password';

/** `count` failed guesses, each at another made-up account, spread over the forms in turn. */
async function guessManyAccounts(forms: SignInForm[], count: number, tag: string): Promise<void> {
  for (let i = 0; i < count; i++) expect(await forms[i % forms.length]!.submit(`${tag}-${i}@example.com`, WRONG), `guess ${i}`).toBe('refused');
}

describe('one portal: the per-address limit', () => {
  let portal: TestPortal;
  beforeAll(async () => {
    portal = await startTestPortal();
  });
  afterAll(async () => {
    await portal?.stopAll();
  });

  it('stops an address that tried many accounts, even for an account it never tried, with the right password', async () => {
    await guessManyAccounts([await openSignInForm(new Agent(portal.origin))], PER_ADDRESS, 'spray');
    // A new browser (new cookies, new sign-in request) from the same address is stopped too.
    const fresh = await openSignInForm(new Agent(portal.origin));
    expect(await fresh.submit('ea@example.com', DEMO_PASSWORD)).toBe('throttled');
    expect(fresh.last?.headers.get('retry-after')).toMatch(/^\d+$/);
  });
});

describe('two portals sharing Redis: one set of counts', () => {
  let database: TestDatabase;
  let claimed: ClaimedRedisDatabase;
  let a: TestPortal;
  let b: TestPortal;

  beforeAll(async () => {
    claimed = await claimRedisDatabase();
    database = await createTestDatabase('mysql');
    const env = { REDIS_URL: claimed.url };
    a = await startTestPortal({ database, env });
    b = await startTestPortal({ database, env });
  });
  afterAll(async () => {
    await a?.stopAll();
    await b?.stopAll();
    await database?.drop();
    await claimed?.release();
  });
  // Each test starts with no counts, whatever the one before it used up.
  beforeEach(async () => {
    await claimed.deleteKeys('atrium:login-*');
  });

  const formsOnBoth = async () => [await openSignInForm(new Agent(a.origin)), await openSignInForm(new Agent(b.origin))];

  it('failures for one account on either instance add up to one limit', async () => {
    const [onA, onB] = await formsOnBoth();
    for (let i = 0; i < PER_ACCOUNT; i++) expect(await (i % 2 ? onB! : onA!).submit('devel@example.com', WRONG)).toBe('refused');
    expect(await onB!.submit('devel@example.com', DEMO_PASSWORD)).toBe('throttled');
    expect(await onA!.submit('devel@example.com', DEMO_PASSWORD)).toBe('throttled');
    // Another account from the same address still signs in: the address has used 12 of its 50.
    expect(await onA!.submit('ea@example.com', DEMO_PASSWORD)).toBe('signed-in');
  });

  it('attempts from one address on either instance add up to one limit', async () => {
    const forms = await formsOnBoth();
    await guessManyAccounts(forms, PER_ADDRESS, 'spread');
    for (const form of forms) expect(await form.submit('ea@example.com', DEMO_PASSWORD)).toBe('throttled');
  });

  it('keeps its counts in its own Redis database, not in database 0 that other tests use', async () => {
    const [onA] = await formsOnBoth();
    expect(await onA!.submit('counted-here@example.com', WRONG)).toBe('refused');
    expect(await claimed.redis.keys('atrium:login-account:*counted-here*')).toHaveLength(1);
    const zero = new Redis(SHARED_REDIS, { maxRetriesPerRequest: 1 });
    try {
      expect(await zero.keys('atrium:login-account:*counted-here*')).toEqual([]);
    } finally {
      await zero.quit();
    }
  });
});
